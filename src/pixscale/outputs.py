"""Read pixscale outputs back: the record, the parameters and the float32 data in chunks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from pixscale.errors import InputError
from pixscale.layouts import restore_layout
from pixscale.params import Params
from pixscale.records import is_hdf5, read_record
from pixscale.sources.npy import read_npy_header
from pixscale.sources.rawio import read_images

Float32Array = npt.NDArray[np.float32]

#: Bytes of float32 values read back at a time (invert, verify, info, preview).
CHUNK_BYTES = 4 << 20


@dataclass
class ConvertedFile:
    """A pixscale output: its record and parameters, the stored shape, dtype and layout."""

    path: Path
    record: dict[str, Any]
    params: Params
    stored_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    labels: npt.NDArray[Any] | None

    @property
    def layout(self) -> str:
        return str(self.record.get("output", {}).get("layout", self.params.layout))

    @property
    def chunk_rows(self) -> int:
        """Images per chunk of about ``CHUNK_BYTES`` of float32 values."""
        return max(1, CHUNK_BYTES // (4 * int(np.prod(self.stored_shape[1:]))))

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape in the source's layout, which the parameters refer to."""
        return (self.stored_shape[0], *self.params.image_shape)

    def chunks(self, max_images: int) -> Iterator[Float32Array]:
        """The stored values in the source's layout, ``max_images`` images at a time."""
        for chunk in self._stored_chunks(max_images):
            yield restore_layout(chunk, self.params.layout, self.layout)

    def _stored_chunks(self, max_images: int) -> Iterator[Float32Array]:
        count_all = self.stored_shape[0]
        if is_hdf5(self.path):
            with h5py.File(self.path, "r") as handle:
                images = handle["images"]
                for start in range(0, count_all, max_images):
                    yield images[start : start + max_images]
            return
        with self.path.open("rb") as handle:
            read_npy_header(handle, self.path)
            for start in range(0, count_all, max_images):
                count = min(max_images, count_all - start)
                yield read_images(handle, self.path, count, self.stored_shape[1:], self.dtype)


def open_converted(path: Path) -> ConvertedFile:
    """Open an HDF5 or .npy file written by ``pixscale convert``."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    record, arrays = read_record(path)
    params = Params.from_record(record, arrays)
    labels = None
    if is_hdf5(path):
        with h5py.File(path, "r") as handle:
            if "images" not in handle:
                raise InputError(f"{path}: no 'images' dataset")
            shape, dtype = tuple(handle["images"].shape), handle["images"].dtype
            if "labels" in handle:
                labels = handle["labels"][()]
    else:
        with path.open("rb") as handle:
            shape, fortran, dtype = read_npy_header(handle, path)
        labels_name = record.get("output", {}).get("labels")
        if labels_name and (path.parent / labels_name).is_file():
            labels = np.load(path.parent / labels_name, allow_pickle=False)
    return ConvertedFile(path, record, params, tuple(shape), np.dtype(dtype), labels)
