"""Pixel outputs for ``invert``: uint8 to .npy, IDX (raw or .gz) and HDF5; uint16 to .npy
and HDF5 (IDX has no unsigned 16-bit type: refused)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np
import numpy.typing as npt

from pixscale.errors import OutputError
from pixscale.store.base import write_failed
from pixscale.store.hdf5 import close_safely
from pixscale.store.io.atomic import StagedOutputs
from pixscale.store.naming import labels_path, uint8_format
from pixscale.store.npy import write_npy_header

IDX_UINT8 = 0x08
#: .npy descriptions of the pixel dtypes written (little-endian, as numpy writes them).
NPY_DESCR = {"uint8": "|u1", "uint16": "<u2"}


class Uint8Writer:
    """Streams uint8 (or uint16) images into .npy, IDX or HDF5; labels where the format
    holds them.

    Parameters
    ----------
    target, shape, staged
        The output file, the array's shape, and the staging that commits it.
    dtype
        ``"uint8"`` (default) or ``"uint16"``; IDX targets take uint8 only.

    Raises
    ------
    OutputError
        For uint16 to an IDX name, before anything is staged.
    """

    def __init__(
        self, target: Path, shape: tuple[int, ...], staged: StagedOutputs, dtype: str = "uint8"
    ) -> None:
        self.target, self.shape, self.staged = target, shape, staged
        self.format = uint8_format(target)
        if dtype not in NPY_DESCR:
            raise OutputError(f"{target}: cannot write {dtype} pixels")
        if self.format == "idx" and dtype != "uint8":
            raise OutputError(
                f"{target}: IDX has no unsigned 16-bit type, so it cannot hold {dtype} pixels; "
                "write .npy or .h5"
            )
        self.dtype = dtype
        self.temp = staged.stage(target, main=True)
        if self.format == "npy":
            staged.own([labels_path(target)])
        self.position = 0
        self.failed = False
        self.file: h5py.File | None = None
        self.handle: BinaryIO | None = None
        try:
            self._create()
        except (OSError, RuntimeError) as exc:
            self.failed = True
            self.close()
            raise write_failed(target, exc) from exc

    def _create(self) -> None:
        if self.format == "h5":
            self.file = h5py.File(self.temp, "w")
            self.images = self.file.create_dataset(
                "images",
                shape=self.shape,
                dtype=NPY_DESCR[self.dtype],
                chunks=True,
                track_times=False,
            )
            return
        raw: BinaryIO = self.temp.open("wb")
        if self.format == "idx" and self.target.name.endswith(".gz"):
            raw = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="")  # type: ignore[assignment]
        self.handle = raw
        shape = self.shape
        if self.format == "npy":
            write_npy_header(raw, shape, NPY_DESCR[self.dtype])
        else:
            raw.write(struct.pack(f">BBBB{len(shape)}I", 0, 0, IDX_UINT8, len(shape), *shape))

    def write(self, chunk: npt.NDArray[np.unsignedinteger[Any]]) -> None:
        stop = self.position + chunk.shape[0]
        chunk = np.asarray(chunk, NPY_DESCR[self.dtype])
        try:
            if self.file is not None:
                self.images[self.position : stop] = chunk
            elif self.handle is not None:
                self.handle.write(np.ascontiguousarray(chunk).data.cast("B"))
        except (OSError, RuntimeError) as exc:
            self.failed = True
            raise write_failed(self.target, exc) from exc
        self.position = stop

    def finish(self, labels: npt.NDArray[Any] | None) -> None:
        """Store the labels (in the file, or beside a .npy) and close."""
        try:
            if labels is not None and self.file is not None:
                self.file.create_dataset("labels", data=labels, track_times=False)
            elif labels is not None and self.format == "npy":
                path = labels_path(self.target)
                with self.staged.stage(path).open("wb") as handle:
                    np.save(handle, labels, allow_pickle=False)
        except (OSError, RuntimeError) as exc:
            self.failed = True
            raise write_failed(self.target, exc) from exc
        self.close()

    def close(self) -> None:
        """Close the file (also after a failure, without HDF5 writing again)."""
        try:
            if self.file is not None:
                close_safely(self.file, abandon=self.failed)
            if self.handle is not None and not self.handle.closed:
                close_stream(self.handle)
        except (OSError, RuntimeError) as exc:
            self.failed = True
            raise write_failed(self.target, exc) from exc


def close_stream(handle: BinaryIO) -> None:
    """Close ``handle`` and, for gzip, the file beneath it, even when the first close fails."""
    fileobj = getattr(handle, "fileobj", None)
    try:
        handle.close()
    finally:
        if fileobj is not None:
            fileobj.close()


#: The writer by what it writes: the source pixels, uint8 or uint16.
PixelWriter = Uint8Writer
