"""Reading exact byte counts from plain or gzip files, with clean errors."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pixscale.errors import InputError
from pixscale.sources.base import UInt8Array

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


def read_exact(handle: BinaryIO, size: int, path: Path, what: str) -> bytes:
    """Read exactly ``size`` bytes or raise an InputError naming the shortfall."""
    data = handle.read(size)
    if len(data) != size:
        raise InputError(f"{path}: truncated: {what} needs {size} bytes, found {len(data)}")
    return data


def read_images(
    handle: BinaryIO, path: Path, count: int, image_shape: tuple[int, ...]
) -> UInt8Array:
    """Read ``count`` images of ``image_shape`` uint8 pixels into a new array."""
    chunk = np.empty((count, *image_shape), dtype=np.uint8)
    view = memoryview(chunk.reshape(-1))  # type: ignore[arg-type]
    filled = 0
    while filled < len(view):
        got = handle.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            raise InputError(
                f"{path}: truncated: header promises more image data than the file holds"
            )
        filled += got
    return chunk
