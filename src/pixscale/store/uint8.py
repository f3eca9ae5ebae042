"""uint8 outputs for ``invert``: .npy, IDX (raw or .gz) and HDF5."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np
import numpy.typing as npt

from pixscale.errors import OutputError
from pixscale.store.io.atomic import StagedOutputs
from pixscale.store.naming import labels_path, uint8_format
from pixscale.store.npy import write_npy_header

IDX_UINT8 = 0x08


class Uint8Writer:
    """Streams uint8 images into .npy, IDX or HDF5; labels where the format holds them."""

    def __init__(self, target: Path, shape: tuple[int, ...], staged: StagedOutputs) -> None:
        self.target, self.shape, self.staged = target, shape, staged
        self.format = uint8_format(target)
        self.temp = staged.stage(target)
        self.position = 0
        self.file: h5py.File | None = None
        self.handle: BinaryIO | None = None
        if self.format == "h5":
            self.file = h5py.File(self.temp, "w")
            self.images = self.file.create_dataset(
                "images", shape=shape, dtype="u1", chunks=True, track_times=False
            )
            return
        raw: BinaryIO = self.temp.open("wb")
        if self.format == "idx" and target.name.endswith(".gz"):
            raw = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="")  # type: ignore[assignment]
        self.handle = raw
        if self.format == "npy":
            write_npy_header(raw, shape, "|u1")
        else:
            raw.write(struct.pack(f">BBBB{len(shape)}I", 0, 0, IDX_UINT8, len(shape), *shape))

    def write(self, chunk: npt.NDArray[np.uint8]) -> None:
        stop = self.position + chunk.shape[0]
        try:
            if self.file is not None:
                self.images[self.position : stop] = chunk
            elif self.handle is not None:
                self.handle.write(np.ascontiguousarray(chunk).data.cast("B"))
        except OSError as exc:
            raise OutputError(f"{self.target}: write failed: {exc}") from exc
        self.position = stop

    def finish(self, labels: npt.NDArray[Any] | None) -> None:
        if labels is not None and self.file is not None:
            self.file.create_dataset("labels", data=labels, track_times=False)
        elif labels is not None and self.format == "npy":
            path = labels_path(self.target)
            with self.staged.stage(path).open("wb") as handle:
                np.save(handle, labels, allow_pickle=False)
        self.close()

    def close(self) -> None:
        try:
            if self.file is not None and self.file.id.valid:
                self.file.close()
            if self.handle is not None and not self.handle.closed:
                fileobj = getattr(self.handle, "fileobj", None)
                self.handle.close()
                if fileobj is not None:
                    fileobj.close()
        except OSError as exc:
            raise OutputError(f"{self.target}: write failed: {exc}") from exc
