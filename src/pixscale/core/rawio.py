"""Reading exact byte counts from plain or gzip files, and .npy headers, with clean errors:
the raw reads both the readers of inputs and the readers of outputs rely on."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pixscale.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
#: Exceptions by which gzip reports a damaged stream.
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)
#: The most deflate can expand: a 258-byte match costs at least 2 bits, so 1032:1. A header
#: promising more than this many bytes per compressed byte is forged or truncated.
MAX_DEFLATE_RATIO = 1032
#: The smallest gzip file: a 10-byte header, an empty block and an 8-byte trailer.
GZIP_MIN_SIZE = 20


def is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == GZIP_MAGIC


@contextmanager
def open_maybe_gzip(path: Path) -> Iterator[BinaryIO]:
    """Open ``path`` for reading, decompressing transparently when it is gzip."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from exc
    with raw:
        if raw.read(2) == GZIP_MAGIC:
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                try:
                    yield unzipped  # type: ignore[misc]
                except GZIP_ERRORS as exc:
                    raise InputError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
        else:
            raw.seek(0)
            yield raw


def gzip_size(path: Path) -> int | None:
    """The uncompressed size modulo 2**32 from the gzip trailer, or None when not gzip."""
    with path.open("rb") as handle:
        if handle.read(2) != GZIP_MAGIC:
            return None
        if path.stat().st_size < GZIP_MIN_SIZE:
            raise InputError(f"{path}: corrupt or truncated gzip data (no trailer)")
        handle.seek(-4, 2)
        return int.from_bytes(handle.read(4), "little")


def check_size(path: Path, expected: int) -> None:
    """Refuse up front a file that holds fewer bytes than its header promises.

    For gzip files the promise is checked against the trailer's size (exact below 4 GiB)
    and against the most that the compressed bytes can expand to, so that a tiny file
    claiming a huge array is refused before anything is allocated or read.
    """
    stored = gzip_size(path)
    if stored is None:
        actual = path.stat().st_size
    else:
        check_deflate_ratio(path, expected, path.stat().st_size, "file")
        if expected >= 2**32:
            return  # the trailer is the size modulo 2**32; short reads are caught later
        actual = stored
    if actual < expected:
        raise InputError(
            f"{path}: truncated: header promises {expected:,} bytes, file holds {actual:,}"
        )


def check_deflate_ratio(path: Path, expected: int, compressed: int, what: str) -> None:
    """Refuse a promise of ``expected`` bytes that ``compressed`` deflate bytes cannot keep."""
    if expected > MAX_DEFLATE_RATIO * compressed:
        raise InputError(
            f"{path}: header promises {expected:,} bytes, more than the {compressed:,} "
            f"compressed bytes of the {what} can hold (deflate expands at most "
            f"{MAX_DEFLATE_RATIO}:1)"
        )


def read_exact(handle: BinaryIO, size: int, path: Path, what: str) -> bytes:
    """Read exactly ``size`` bytes or raise an InputError naming the shortfall."""
    data = handle.read(size)
    if len(data) != size:
        raise InputError(f"{path}: truncated: {what} needs {size} bytes, found {len(data)}")
    return data


def read_images(
    handle: BinaryIO,
    path: Path,
    count: int,
    image_shape: tuple[int, ...],
    dtype: np.dtype[Any] | type = np.uint8,
) -> Any:
    """Read ``count`` images of ``image_shape`` (uint8 unless ``dtype``) into a new array."""
    try:
        chunk = np.empty((count, *image_shape), dtype=dtype)
    except (MemoryError, ValueError) as exc:
        raise InputError(
            f"{path}: header promises images of shape {image_shape}: too large"
        ) from exc
    view = chunk.reshape(-1).data.cast("B")
    filled = 0
    while filled < len(view):
        got = handle.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            raise InputError(
                f"{path}: truncated: header promises more image data than the file holds"
            )
        filled += got
    return chunk


def read_npy_header(handle: BinaryIO, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Return (shape, fortran_order, dtype) and leave ``handle`` at the data."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    except Exception as exc:  # numpy's header parser raises many kinds on damaged input
        raise InputError(f"{path}: not a valid .npy file (damaged header)") from exc
    if any(n < 0 for n in shape):
        raise InputError(f"{path}: not a valid .npy file (shape {shape} in the header)")
    return shape, fortran, dtype
