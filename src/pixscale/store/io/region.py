"""Regions of a file being built that other processes write: the contiguous values of a
.npy, or of an uncompressed HDF5 dataset allocated up front. Each Dask task writes its own
byte range, with the CRC-32 of what it wrote summed beside the writes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixscale.store.base import Float32Array, PartWriter, Writer, close_written, write_failed
from pixscale.store.io.checksum import StreamChecksum
from pixscale.store.io.direct import ALIGN, DirectFile


def rows_per_block(shape: tuple[int, ...]) -> int:
    """Images per whole number of ``ALIGN`` blocks: where a region may start so that its
    writes stay block-aligned (``O_DIRECT``)."""
    row_bytes = 4 * math.prod(shape[1:])
    return ALIGN // math.gcd(row_bytes, ALIGN)


@dataclass(frozen=True)
class RawRegion:
    """The contiguous float32 values of a file being built (a .npy, or an uncompressed
    HDF5 dataset allocated up front): ``offset`` is where image 0 starts."""

    path: Path
    offset: int
    shape: tuple[int, ...]
    direct: bool = False

    @property
    def row_bytes(self) -> int:
        return 4 * math.prod(self.shape[1:])

    def region(self, start: int, count: int) -> Writer:
        return RawRegionWriter(self, start, count)


class RawRegionWriter(PartWriter):
    """Writes images ``start``… of a ``RawRegion`` front to back (``O_DIRECT`` where the
    region starts on a block boundary and ``direct`` is set), with the CRC-32 of the
    bytes written summed beside the writes."""

    def __init__(self, raw: RawRegion, start: int, count: int) -> None:
        self.target, self.shape = raw.path, (count, *raw.shape[1:])
        self.expected = count * raw.row_bytes
        self.written = 0
        self.checksum = StreamChecksum()
        self.handle = DirectFile(
            raw.path, raw.direct, offset=raw.offset + start * raw.row_bytes, create=False
        )

    def write(self, chunk: Float32Array) -> None:
        data = np.ascontiguousarray(chunk, "<f4")
        try:
            with self.checksum.during(data):
                self.handle.write(data)
        except OSError as exc:
            raise write_failed(self.target, exc) from exc
        self.written += chunk.nbytes

    def close(self) -> None:
        close_written(self.checksum, self.handle, self.target)
