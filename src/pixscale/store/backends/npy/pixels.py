"""Source pixels (uint8 or uint16) as a .npy, for ``invert``; labels beside it."""

from __future__ import annotations

from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from pixscale.core.location import Location
from pixscale.store.backends.npy.header import write_npy_header
from pixscale.store.naming import labels_path
from pixscale.store.pixels import NPY_DESCR, StreamPixelWriter


class NpyPixelWriter(StreamPixelWriter):
    """A version 2.0 .npy header, then the pixels; labels in ``<stem>.labels.npy``."""

    def companions(self) -> list[Location]:
        return [labels_path(self.target)]

    def write_header(self, handle: BinaryIO) -> None:
        write_npy_header(handle, self.shape, NPY_DESCR[self.dtype])

    def store_labels(self, labels: npt.NDArray[Any]) -> None:
        with self.staged.stage(labels_path(self.target)).open("wb") as handle:
            np.save(handle, labels, allow_pickle=False)
