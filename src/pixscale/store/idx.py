"""IDX pixel output for ``invert`` (raw or ``.gz``): uint8 only, as IDX has no unsigned
16-bit type. IDX is no output format of ``convert``, so it is no backend."""

from __future__ import annotations

import gzip
import struct
from typing import Any, BinaryIO

import numpy.typing as npt

from pixscale.errors import OutputError
from pixscale.store.pixels import StreamPixelWriter

IDX_UINT8 = 0x08


class IdxWriter(StreamPixelWriter):
    """The IDX header (big-endian sizes), then the uint8 pixels; gzip with no time or name
    in its header when the target ends in ``.gz``."""

    def refuse_dtype(self, dtype: str) -> None:
        if dtype != "uint8":
            raise OutputError(
                f"{self.target}: IDX has no unsigned 16-bit type, so it cannot hold {dtype} "
                "pixels; write .npy or .h5"
            )

    def open_stream(self) -> BinaryIO:
        raw: BinaryIO = self.temp.open("wb")
        if self.target.name.endswith(".gz"):
            return gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="")  # type: ignore[return-value]
        return raw

    def store_labels(self, labels: npt.NDArray[Any]) -> None:
        """IDX keeps labels in a file of their own, which ``invert`` does not write."""

    def write_header(self, handle: BinaryIO) -> None:
        shape = self.shape
        handle.write(struct.pack(f">BBBB{len(shape)}I", 0, 0, IDX_UINT8, len(shape), *shape))
