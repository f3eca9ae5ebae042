"""Reading Zarr v3 shard indexes without zarr-python's private code: which inner chunks a
shard stores and where, each entry checked against the shard file's bytes. Readers of Zarr
inputs (every chunk must be stored) and of pixscale's Zarr outputs (samples read by byte
range) share it."""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.location import Location, shown
from pixscale.errors import InputError

#: Chunks an input array may have: counting the stored ones costs time per chunk.
MAX_CHUNKS = 1 << 24
#: An absent entry of a shard index: offset and length both 2**64 - 1.
ABSENT = np.uint64(2**64 - 1)


def native_bytes_only(codecs: list[Any], itemsize: int) -> bool:
    """True for a codec chain that is only the ``bytes`` codec in this machine's order
    (any order for one-byte values)."""
    from zarr.codecs import BytesCodec

    if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
        return False
    endian = codecs[0].endian
    return itemsize == 1 or (endian is not None and endian.value == sys.byteorder)


class Shards:
    """The shards of one array: their grid, which inner chunks hold images, and how to read
    a shard's index (the ``bytes`` codec, optionally followed by ``crc32c``)."""

    def __init__(self, array: Any, codec: Any, path: Location) -> None:
        from zarr.codecs import BytesCodec, Crc32cCodec

        self.path = path
        self.shape = tuple(int(n) for n in array.shape)
        self.shard = tuple(int(n) for n in array.shards)
        self.inner = tuple(int(n) for n in codec.chunk_shape)
        self.per_shard = tuple(s // c for s, c in zip(self.shard, self.inner, strict=True))
        self.grid = tuple(-(-n // s) for n, s in zip(self.shape, self.shard, strict=True))
        count = math.prod(self.per_shard)
        if count > MAX_CHUNKS:
            raise InputError(
                f"{shown(path)}: declares {count:,} chunks per shard; at most {MAX_CHUNKS:,} "
                "are read"
            )
        codecs = list(codec.index_codecs)
        kinds = [type(c).__name__ for c in codecs]
        if (
            not 1 <= len(codecs) <= 2
            or not isinstance(codecs[0], BytesCodec)
            or not all(isinstance(c, Crc32cCodec) for c in codecs[1:])
        ):
            raise InputError(
                f"{shown(path)}: shard index codecs {kinds} are not supported (bytes, then "
                "optionally crc32c)"
            )
        big = codecs[0].endian is not None and codecs[0].endian.value == "big"
        self.order = ">" if big else "<"
        self.crc = len(codecs) == 2
        self.index_bytes = 16 * count + (4 if self.crc else 0)
        self.at_start = codec.index_location.value == "start"

    def needed(self, coords: tuple[int, ...]) -> npt.NDArray[np.bool_]:
        """Which inner chunks of shard ``coords`` hold array elements (an edge shard's
        others lie past the array's end and are never stored)."""
        axes = [
            c * s + np.arange(n) * i < extent
            for c, s, n, i, extent in zip(
                coords, self.shard, self.per_shard, self.inner, self.shape, strict=True
            )
        ]
        needed: npt.NDArray[np.bool_] = functools.reduce(np.logical_and.outer, axes)
        return needed

    def absent(self, file: Path, name: str) -> npt.NDArray[np.bool_]:
        """Which inner chunks the index of the shard ``file`` lists as not stored, its
        entries checked against the bytes the file has."""
        offsets, lengths = self.table(file, name)
        absent: npt.NDArray[np.bool_] = (offsets == ABSENT) & (lengths == ABSENT)
        return absent

    def table(self, file: Path, name: str) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """The offsets and lengths of the inner chunks the index of the shard ``file``
        lists (``ABSENT`` both for one not stored), each entry checked against the bytes
        the file has."""
        with file.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            self.check_size(size, name)
            handle.seek(self.index_at(size))
            raw = handle.read(self.index_bytes)
        return self.table_of(raw, size, name)

    def check_size(self, size: int, name: str) -> None:
        """Refuse a shard of ``size`` bytes too small to hold its index."""
        if size < self.index_bytes:
            raise InputError(
                f"{shown(self.path)}: shard {name} holds {size:,} bytes, less than its "
                f"{self.index_bytes:,}-byte index (truncated?)"
            )

    def index_at(self, size: int) -> int:
        """Where the index of a shard of ``size`` bytes starts."""
        return 0 if self.at_start else size - self.index_bytes

    def table_of(
        self, raw: bytes, size: int, name: str
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """The offsets and lengths the index ``raw`` of the ``size``-byte shard ``name``
        lists (see ``table``)."""
        if len(raw) != self.index_bytes:
            raise InputError(f"{shown(self.path)}: shard {name} changed while its index was read")
        if self.crc:
            raw = self.checked(raw, name)
        table: npt.NDArray[np.uint64] = np.frombuffer(raw, np.dtype(f"{self.order}u8"))
        table = table.reshape(*self.per_shard, 2)
        offsets, lengths = table[..., 0], table[..., 1]
        absent = (offsets == ABSENT) & (lengths == ABSENT)
        start, end = (self.index_bytes, size) if self.at_start else (0, size - self.index_bytes)
        room = np.uint64(end) - np.minimum(offsets, np.uint64(end))
        wrong = ~absent & ((offsets < start) | (offsets > end) | (lengths > room))
        if wrong.any():
            at = tuple(int(i) for i in np.argwhere(wrong)[0])
            raise InputError(
                f"{shown(self.path)}: shard {name}: its index places inner chunk {at} at bytes "
                f"{int(offsets[at]):,}+{int(lengths[at]):,}, outside the data of the "
                f"{size:,}-byte file"
            )
        return offsets, lengths

    def checked(self, raw: bytes, name: str) -> bytes:
        """The index without its CRC-32C, which must match."""
        import google_crc32c  # zarr-python's own dependency, as its crc32c codec uses

        body, stored = raw[:-4], int.from_bytes(raw[-4:], "little")
        if google_crc32c.value(body) != stored:
            raise InputError(f"{shown(self.path)}: shard {name}: its index fails its CRC-32C check")
        return body
