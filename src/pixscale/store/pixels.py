"""What a writer of source pixels (``invert``'s uint8 or uint16 images) offers, and the
share of it every format has: the dtype checks, staging, and one-line write failures."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from pixscale.core.location import Location
from pixscale.errors import OutputError
from pixscale.store.base import write_failed
from pixscale.store.io.atomic import StagedOutputs

#: .npy descriptions of the pixel dtypes written (little-endian, as numpy writes them).
NPY_DESCR = {"uint8": "|u1", "uint16": "<u2"}
PixelArray = npt.NDArray[np.unsignedinteger[Any]]


class PixelWriter(ABC):
    """Streams uint8 (or uint16) images into one output file, then stores the labels
    where the format holds them.

    Parameters
    ----------
    target, shape, staged
        The output file, the array's shape, and the staging that commits it.
    dtype
        ``"uint8"`` (default) or ``"uint16"``.

    Raises
    ------
    OutputError
        For a dtype the format cannot hold, before anything is staged; when the file
        cannot be created.
    """

    def __init__(
        self, target: Location, shape: tuple[int, ...], staged: StagedOutputs, dtype: str = "uint8"
    ) -> None:
        self.target, self.shape, self.staged = target, shape, staged
        if dtype not in NPY_DESCR:
            raise OutputError(f"{target}: cannot write {dtype} pixels")
        self.refuse_dtype(dtype)
        self.dtype = dtype
        self.temp = staged.stage(target, main=True)
        staged.own(self.companions())
        self.position = 0
        self.failed = False
        try:
            self.create()
        except (OSError, RuntimeError) as exc:
            self.failed = True
            self.close()
            raise write_failed(target, exc) from exc

    def refuse_dtype(self, dtype: str) -> None:
        """Refuse a pixel dtype the format has no type for (default: it has both)."""
        return None

    def companions(self) -> list[Location]:
        """Files written beside the target."""
        return []

    @abstractmethod
    def create(self) -> None:
        """Create the staged file and whatever precedes the pixels."""

    @abstractmethod
    def write_pixels(self, chunk: PixelArray) -> None:
        """Append ``chunk`` (already of the written dtype) at ``self.position``."""

    @abstractmethod
    def store_labels(self, labels: npt.NDArray[Any]) -> None:
        """Keep the labels where the format holds them."""

    @abstractmethod
    def close_file(self) -> None:
        """Close what is open (also after a failure)."""

    def write(self, chunk: PixelArray) -> None:
        """Append the next images."""
        stop = self.position + chunk.shape[0]
        chunk = np.asarray(chunk, NPY_DESCR[self.dtype])
        try:
            self.write_pixels(chunk)
        except (OSError, RuntimeError) as exc:
            self.failed = True
            raise write_failed(self.target, exc) from exc
        self.position = stop

    def finish(self, labels: npt.NDArray[Any] | None) -> None:
        """Store the labels (where the format holds them) and close."""
        try:
            if labels is not None:
                self.store_labels(labels)
        except (OSError, RuntimeError) as exc:
            self.failed = True
            raise write_failed(self.target, exc) from exc
        self.close()

    def close(self) -> None:
        """Close the file (also after a failure)."""
        try:
            self.close_file()
        except (OSError, RuntimeError) as exc:
            self.failed = True
            raise write_failed(self.target, exc) from exc


class StreamPixelWriter(PixelWriter):
    """A pixel writer of one byte stream: a header, then the pixels' bytes in order."""

    handle: BinaryIO | None = None

    def create(self) -> None:
        self.handle = self.open_stream()
        self.write_header(self.handle)

    def open_stream(self) -> BinaryIO:
        """The stream the file's bytes go to."""
        return self.temp.open("wb")

    @abstractmethod
    def write_header(self, handle: BinaryIO) -> None:
        """Write what precedes the pixels."""

    def write_pixels(self, chunk: PixelArray) -> None:
        assert self.handle is not None  # open from create() until close()
        self.handle.write(np.ascontiguousarray(chunk).data.cast("B"))

    def close_file(self) -> None:
        if self.handle is not None and not self.handle.closed:
            close_stream(self.handle)


def close_stream(handle: BinaryIO) -> None:
    """Close ``handle`` and, for gzip, the file beneath it, even when the first close fails."""
    fileobj = getattr(handle, "fileobj", None)
    try:
        handle.close()
    finally:
        if fileobj is not None:
            fileobj.close()
