"""Read pixscale outputs back: the record, the parameters and the float32 data in chunks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from pixscale.core.layouts import restore_layout
from pixscale.core.params import Params
from pixscale.errors import InputError
from pixscale.sources.npy import read_npy_header
from pixscale.sources.rawio import read_images
from pixscale.store.naming import IMAGES_DATASET, is_hdf5
from pixscale.store.records import read_record

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


class Dataset:
    """A pixscale output opened for reading, as a training loop wants it.

    ``len(d)``, ``d[i]``, ``d[a:b]`` and ``d[[i, j, …]]`` give the stored float32 values
    (in the output's layout); ``labels``, ``record`` and ``params`` come from the record.
    The data file is opened on first use in each process, so a ``Dataset`` made in a
    parent survives ``fork`` and ``DataLoader`` workers; .npy data is memory-mapped.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._converted = open_converted(self.path)
        self._images: Any = None
        self._handle: Any = None
        self._pid = -1

    @property
    def record(self) -> dict[str, Any]:
        """The parameter record (``pixscale.params/1``)."""
        return self._converted.record

    @property
    def params(self) -> Params:
        """The parameters the data was scaled with."""
        return self._converted.params

    @property
    def labels(self) -> npt.NDArray[Any] | None:
        """The labels stored with the images, or None."""
        return self._converted.labels

    @property
    def shape(self) -> tuple[int, ...]:
        """The stored shape (output layout)."""
        return self._converted.stored_shape

    @property
    def scaler(self) -> Any:
        """A ``pixscale.Scaler`` applying these parameters to new uint8 arrays."""
        from pixscale.engine.scaler import Scaler  # the engine sits above the store

        return Scaler.from_params(self.params)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> Any:
        return self._data()[index]

    def _data(self) -> Any:
        if self._images is None or self._pid != os.getpid():
            self._handle = None
            if is_hdf5(self.path):
                self._handle = h5py.File(self.path, "r")
                self._images = self._handle[IMAGES_DATASET]
            else:
                self._images = np.load(self.path, mmap_mode="r", allow_pickle=False)
            self._pid = os.getpid()
        return self._images

    def close(self) -> None:
        """Close the data file (it reopens on the next access)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = self._images = None

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(path: str | os.PathLike[str]) -> Dataset:  # noqa: A001 (the package face's verb)
    """Open a pixscale output (.h5, or .npy with its sidecar) for reading.

    Parameters
    ----------
    path
        The output file.

    Returns
    -------
    Dataset
        Lazy, fork-safe access to the values, labels and record.
    """
    return Dataset(path)
