"""The pixels of plain 8-bit PNGs decoded by libpng, through imagecodecs (the ``fast`` extra).

For a 28×28 PNG, Pillow's decoding is mostly Python (about 14 µs of the 22 µs an image
takes); libpng through imagecodecs decodes the same image in about 6 µs. Pillow still opens
every image and every check reads its header as before; only the pixels of a *plain* PNG
come from libpng: 8-bit greyscale or RGB, stored as such (no palette, no alpha, no other
bit depth), not interlaced, no transparency chunk, no animation, and kept at its size. For
these the PNG format fixes every pixel value (zlib and the row filters, no colour
conversion; gamma and colour-space chunks are recorded, not applied, by both), so both
decoders give the same bytes. Anything else, or a file libpng refuses (a damaged chunk
Pillow would tolerate), is decoded by Pillow as before: which images are read, and how, does
not depend on whether the extra is installed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache
from typing import Any

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
    """Whether opened ``image`` is a plain 8-bit PNG stored in ``mode`` (L or RGB)."""
    if image.format != "PNG" or image.mode != mode or mode not in PLAIN_MODES:
        return False
    tiles: list[Any] = list(getattr(image, "tile", None) or [])
    if len(tiles) != 1:
        return False
    args: Any = tiles[0].args  # the raw mode; a tuple starting with it in older Pillows
    raw_mode = args if isinstance(args, str) else args[0] if args else None
    return raw_mode == mode and not NOT_PLAIN.intersection(image.info)


def plain_png_pixels(image: Any, mode: str, max_bytes: int) -> npt.NDArray[np.uint8] | None:
    """The pixels of ``image`` (opened, not yet loaded) by libpng, if it is a plain PNG in
    ``mode`` of at most ``max_bytes``; None where Pillow is to decode it (reading the file
    a block at a time, whatever its size)."""
    decode = png_decoder()
    if decode is None or not is_plain_png(image, mode) or image.fp is None:
        return None
    handle = image.fp
    start = handle.tell()
    try:
        if handle.seek(0, io.SEEK_END) > max_bytes:
            handle.seek(start)
            return None
        handle.seek(0)
        pixels = decode(handle.read())
    except Exception:  # libpng refuses what Pillow may tolerate: Pillow decides
        handle.seek(start)
        return None
    width, height = image.size
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    if pixels.dtype != np.uint8 or pixels.shape != shape:
        handle.seek(start)
        return None
    return pixels
