"""Source pixels (uint8 or uint16) as an HDF5 ``images`` dataset, for ``invert``; labels
beside it in the file."""

from __future__ import annotations

from typing import Any

import h5py
import numpy.typing as npt

from pixscale.store.backends.hdf5.handles import close_safely
from pixscale.store.pixels import NPY_DESCR, PixelArray, PixelWriter


class Hdf5PixelWriter(PixelWriter):
    """``images`` chunked as h5py chooses, ``labels`` beside; times are not tracked."""

    file: h5py.File | None = None

    def create(self) -> None:
        self.file = h5py.File(self.temp, "w")
        self.images = self.file.create_dataset(
            "images",
            shape=self.shape,
            dtype=NPY_DESCR[self.dtype],
            chunks=True,
            track_times=False,
        )

    def write_pixels(self, chunk: PixelArray) -> None:
        self.images[self.position : self.position + chunk.shape[0]] = chunk

    def store_labels(self, labels: npt.NDArray[Any]) -> None:
        if self.file is not None:
            self.file.create_dataset("labels", data=labels, track_times=False)

    def close_file(self) -> None:
        """Close the file (also after a failure, without HDF5 writing again)."""
        if self.file is not None:
            close_safely(self.file, abandon=self.failed)
