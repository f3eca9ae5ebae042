"""Reading exact byte counts from plain or gzip files, with clean errors."""

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
        handle.seek(-4, 2)
        return int.from_bytes(handle.read(4), "little")


def check_size(path: Path, expected: int) -> None:
    """Refuse up front a file that holds fewer bytes than its header promises."""
    stored = gzip_size(path)
    if stored is None:
        actual = path.stat().st_size
    elif expected < 2**32:
        actual = stored  # the trailer is exact for streams under 4 GiB
    else:
        return  # only reading to the end can tell; short reads are caught then
    if actual < expected:
        raise InputError(
            f"{path}: truncated: header promises {expected:,} bytes, file holds {actual:,}"
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
