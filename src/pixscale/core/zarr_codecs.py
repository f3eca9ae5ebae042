"""How much a stored Zarr v3 chunk decodes to, found before zarr-python decodes it.

zarr-python allocates whatever a compressed chunk says it holds, so a chunk of a few bytes
can ask for gigabytes. For the codecs inputs may use, the decoded size is bounded from the
stored bytes alone: a zstd frame declares its content size in its header (a frame that does
not is bounded by its blocks), blosc's header carries its size, and gzip is inflated
incrementally, never past one byte more than the chunk's own size.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The codecs a Zarr input may use (their decoded size is bounded before decoding).
SUPPORTED = "bytes, transpose, zstd, gzip, blosc, crc32c and sharding_indexed"
ZSTD_MAGIC = 0xFD2FB528
#: Skippable zstd frames: magic numbers 0x184D2A50 to 0x184D2A5F.
SKIPPABLE = range(0x184D2A50, 0x184D2A60)
#: The most bytes one compressed zstd block may regenerate.
ZSTD_BLOCK_MAX = 128 << 10
#: Bytes of the zstd frame header at most (magic, descriptor, window, dictionary, size).
ZSTD_HEADER_MAX = 18
BLOSC_HEADER = 16
CRC_BYTES = 4


class Refused(Exception):
    """A chunk whose decoded size is not bounded by its own size (the reason)."""


#: ``read(at, count)``: up to ``count`` stored bytes of a chunk from byte ``at`` of it.
Reader = Callable[[int, int], bytes]


def codec_name(codec: Any) -> str:
    """The name zarr.json gives ``codec``."""
    return str(codec.to_dict().get("name", type(codec).__name__))


def unsupported(codecs: list[Any]) -> str | None:
    """Why the chunk codec chain ``codecs`` (inner chunks' chain, when sharded) cannot be
    read with its decoded size bounded, or None."""
    from zarr.codecs import (
        BloscCodec,
        BytesCodec,
        Crc32cCodec,
        GzipCodec,
        TransposeCodec,
        ZstdCodec,
    )

    known = (BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, TransposeCodec, ZstdCodec)
    names = [codec_name(c) for c in codecs if not isinstance(c, known)]
    if names:
        return f"codec {names[0]!r} is not supported (supported: {SUPPORTED})"
    compressors = [c for c in codecs if isinstance(c, BloscCodec | GzipCodec | ZstdCodec)]
    if len(compressors) > 1:
        listed = ", ".join(codec_name(c) for c in compressors)
        return f"chunks compressed twice ({listed}) are not supported"
    return None


@dataclass(frozen=True)
class ChunkBound:
    """Checks that stored chunks of one codec chain decode to at most ``size`` bytes."""

    size: int
    #: ``zstd``, ``gzip``, ``blosc`` or ``""`` (stored as they are).
    compressor: str
    #: CRC-32C checksums inside the compressed bytes (each adds 4 bytes to the decoded ones).
    inner_crcs: int
    #: CRC-32C checksums around them (each ends the stored bytes).
    outer_crcs: int

    @classmethod
    def of(cls, codecs: list[Any], size: int) -> ChunkBound:
        """The bound for chunks of ``size`` bytes stored through ``codecs`` (a chain
        ``unsupported`` accepts)."""
        from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

        names = {BloscCodec: "blosc", GzipCodec: "gzip", ZstdCodec: "zstd"}
        compressor, inner, outer = "", 0, 0
        for codec in codecs:
            if isinstance(codec, Crc32cCodec):
                inner, outer = (inner, outer + 1) if compressor else (inner + 1, outer)
            elif type(codec) in names:
                compressor = names[type(codec)]
        return cls(size, compressor, inner, outer)

    @property
    def largest_stored(self) -> int:
        """The most bytes a chunk can take stored: its decoded bytes, plus what compressing
        incompressible bytes may add (well under an eighth for these codecs)."""
        plain = self.size + CRC_BYTES * (self.inner_crcs + self.outer_crcs)
        return plain + (plain // 8 + (64 << 10) if self.compressor else 0)

    def check_length(self, length: int) -> None:
        """Raise ``Refused`` when a stored chunk of ``length`` bytes is larger than any chunk
        of ``size`` bytes could be (checked before its bytes are fetched)."""
        if length > self.largest_stored:
            raise Refused(
                f"is {length:,} bytes stored, more than its {self.size:,} bytes could need "
                "(a decompression bomb?)"
            )

    def check(self, read: Reader, length: int) -> None:
        """Raise ``Refused`` unless the stored chunk of ``length`` bytes read by ``read``
        decodes to no more than ``size`` bytes."""
        self.check_length(length)
        if not self.compressor:
            return
        inside = length - CRC_BYTES * self.outer_crcs
        limit = self.size + CRC_BYTES * self.inner_crcs
        measure = {"zstd": zstd_size, "gzip": gzip_size, "blosc": blosc_size}[self.compressor]
        if measure(read, inside, limit) > limit:
            raise Refused(
                f"would decode to more than its {self.size:,} bytes (a decompression bomb?)"
            )


def file_reader(fd: int, start: int, length: int) -> Reader:
    """A ``Reader`` of the ``length`` bytes at ``start`` of the open file ``fd``."""

    def read(at: int, count: int) -> bytes:
        count = max(0, min(count, length - at))
        return os.pread(fd, count, start + at) if count else b""

    return read


def zstd_size(read: Reader, length: int, limit: int) -> int:
    """What the zstd frames of ``length`` bytes decode to at most: each frame's declared
    content size, else the most its blocks can regenerate; counting stops past ``limit``."""
    at = total = 0
    while at < length and total <= limit:
        head = read(at, ZSTD_HEADER_MAX)
        if len(head) < 8:
            raise Refused(f"ends inside a zstd frame header at byte {at:,}")
        magic = int.from_bytes(head[:4], "little")
        if magic in SKIPPABLE:
            at += 8 + int.from_bytes(head[4:8], "little")
            continue
        if magic != ZSTD_MAGIC:
            raise Refused(f"is not zstd data (byte {at:,})")
        declared, window, header, checksum = zstd_header(head)
        at, most = zstd_blocks(read, at + header, length, window)
        at += CRC_BYTES if checksum else 0
        if declared is None and total + most > limit:
            raise Refused(
                f"holds a zstd frame that declares no size and could decode to more than "
                f"its {limit:,} bytes"
            )
        total += most if declared is None else declared
    if at > length:
        raise Refused(f"ends inside a zstd frame ({length:,} bytes)")
    return total


def zstd_header(head: bytes) -> tuple[int | None, int, int, bool]:
    """The declared content size (None: not declared), window size, header length and
    whether a checksum ends the frame, from a frame header's first bytes."""
    descriptor = head[4]
    size_flag, single, checksum, dictionary = (
        descriptor >> 6,
        descriptor >> 5 & 1,
        bool(descriptor >> 2 & 1),
        descriptor & 3,
    )
    at, window = 5, ZSTD_BLOCK_MAX
    if not single:
        exponent, mantissa = head[at] >> 3, head[at] & 7
        base = 1 << (10 + exponent)
        window = base + base // 8 * mantissa
        at += 1
    at += (0, 1, 2, 4)[dictionary]
    width = (1 if single else 0, 2, 4, 8)[size_flag]
    if at + width > len(head):
        raise Refused("ends inside a zstd frame header")
    declared = None
    if width:
        declared = int.from_bytes(head[at : at + width], "little") + (256 if width == 2 else 0)
    return declared, window, at + width, checksum


def zstd_blocks(read: Reader, at: int, length: int, window: int) -> tuple[int, int]:
    """Where the blocks of a frame starting at ``at`` end, and the most they regenerate."""
    most = 0
    while True:
        raw = read(at, 3)
        if len(raw) < 3:
            raise Refused(f"ends inside a zstd frame ({length:,} bytes)")
        header = int.from_bytes(raw, "little")
        last, kind, size = header & 1, header >> 1 & 3, header >> 3
        if kind == 3:
            raise Refused(f"holds a reserved zstd block type (byte {at:,})")
        most += min(ZSTD_BLOCK_MAX, window) if kind == 2 else size
        at += 3 + (1 if kind == 1 else size)
        if last:
            return at, most


def gzip_size(read: Reader, length: int, limit: int) -> int:
    """What the gzip members of ``length`` bytes decode to, inflated no further than one
    byte past ``limit`` (zero padding after a member is ignored, as gzip does)."""
    data = read(0, length)
    total = 0
    while data and total <= limit:
        inflater = zlib.decompressobj(31)
        try:
            total += len(inflater.decompress(data, limit + 1 - total))
        except zlib.error as exc:
            raise Refused(f"is not valid gzip data ({exc})") from exc
        if not inflater.eof:
            if total <= limit:
                raise Refused("ends inside a gzip stream (truncated?)")
            break
        data = inflater.unused_data.lstrip(b"\0")
    return total


def blosc_size(read: Reader, length: int, limit: int) -> int:
    """The decoded size blosc's header declares."""
    head = read(0, BLOSC_HEADER)
    if len(head) < BLOSC_HEADER:
        raise Refused(f"holds {length:,} bytes, less than a blosc header")
    return int.from_bytes(head[4:8], "little")


def bytes_reader(data: bytes) -> Reader:
    """A ``Reader`` of a stored chunk already fetched whole."""

    def read(at: int, count: int) -> bytes:
        return data[at : at + max(0, count)]

    return read
