"""The pixels of plain 8-bit PNGs decoded by libpng, through imagecodecs (the ``fast`` extra).

For a 28×28 PNG, Pillow's decoding is mostly Python (about 14 µs of the 22 µs an image
takes); libpng through imagecodecs decodes the same image in about 6 µs. Pillow still opens
every image and every check reads its header as before; only the pixels of a *plain* PNG
come from libpng: 8-bit greyscale or RGB, stored as such (no palette, no alpha, no other bit
depth), not interlaced, no transparency chunk, no animation, its one tile the whole image,
kept at its size, and nothing between its image data and IEND, whose image data is no longer
than its rows stored uncompressed (no zlib bomb). Only the bytes up to IEND are read. For
these the PNG format fixes every pixel value (zlib and the row filters, no colour
conversion; gamma and colour-space chunks are recorded, not applied, by both), so both
decoders give the same bytes. Anything else, or a file libpng refuses (a damaged chunk
Pillow would tolerate), is decoded by Pillow as before: which images are read, and how, does
not depend on whether the extra is installed.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from functools import cache
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

#: Modes whose PNGs libpng decodes here, each stored under the same raw mode.
PLAIN_MODES = ("L", "RGB")
#: ``info`` keys Pillow sets for PNGs that are not plain (see the module's docstring).
NOT_PLAIN = frozenset({"transparency", "interlace", "default_image"})


@cache
def png_decoder() -> Callable[[bytes], npt.NDArray[Any]] | None:
    """imagecodecs' PNG decoder, or None where it is not installed."""
    try:
        from imagecodecs import png_decode
    except ImportError:
        return None
    decode: Callable[[bytes], npt.NDArray[Any]] = png_decode
    return decode


def is_plain_png(image: Any, mode: str) -> bool:
    """Whether opened ``image`` is a plain 8-bit PNG stored in ``mode`` (L or RGB), its one
    tile the whole image (an APNG frame control can make Pillow place it elsewhere)."""
    if image.format != "PNG" or image.mode != mode or mode not in PLAIN_MODES:
        return False
    tiles: list[Any] = list(getattr(image, "tile", None) or [])
    if len(tiles) != 1:
        return False
    _, extents, _, args = tiles[0]
    raw_mode = args if isinstance(args, str) else args[0] if args else None
    whole = tuple(extents) == (0, 0, *image.size)
    return whole and raw_mode == mode and not NOT_PLAIN.intersection(image.info)


def deflate_limit(width: int, height: int, channels: int) -> int:
    """The most bytes a plain PNG's zlib stream needs for its rows: the rows stored
    uncompressed (a filter byte each), with the stored blocks' headers and zlib's own."""
    rows = height * (1 + width * channels)
    return rows + 5 * (rows // 1024 + 1) + 64


def image_data_end(handle: BinaryIO, data_start: int, limit: int) -> int | None:
    """Where the file ends, after IEND, if the image data at ``data_start`` is a run of
    IDAT chunks of at most ``limit`` bytes followed directly by an empty IEND; None for
    anything else (chunks after the image data, which Pillow reads and may refuse; more
    data than the rows can need, a zlib bomb), which Pillow is left to decode."""
    handle.seek(data_start - 8)
    total = 0
    for _ in range(16 + limit // 4096):  # no file of countless empty IDAT chunks
        header = handle.read(8)
        if len(header) < 8:
            return None
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return handle.tell() + 4 if length == 0 else None
        total += length
        if kind != b"IDAT" or total > limit:
            return None
        handle.seek(length + 4, io.SEEK_CUR)
    return None


def plain_png_pixels(image: Any, mode: str, max_bytes: int) -> npt.NDArray[np.uint8] | None:
    """The pixels of ``image`` (opened, not yet loaded) by libpng, if it is a plain PNG in
    ``mode`` whose bytes up to IEND are at most ``max_bytes``; None where Pillow is to
    decode it."""
    decode = png_decoder()
    if decode is None or not is_plain_png(image, mode) or image.fp is None:
        return None
    handle = image.fp
    start = handle.tell()
    width, height = image.size
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    try:
        end = image_data_end(handle, image.tile[0][2], deflate_limit(width, height, len(mode)))
        if end is None or end > max_bytes:
            handle.seek(start)
            return None
        handle.seek(0)
        pixels = decode(handle.read(end))
    except Exception:  # libpng refuses what Pillow may tolerate: Pillow decides
        handle.seek(start)
        return None
    if pixels.dtype != np.uint8 or pixels.shape != shape:
        handle.seek(start)
        return None
    return pixels
