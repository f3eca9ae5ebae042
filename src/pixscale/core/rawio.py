"""Reading exact byte counts from plain or gzip files, and .npy headers, with clean errors:
the raw reads both the readers of inputs and the readers of outputs rely on."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, NoReturn

import numpy as np

from pixscale.core.location import Location, open_bytes, size_of
from pixscale.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
#: Exceptions by which gzip reports a damaged stream.
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)
#: The most deflate can expand: a 258-byte match costs at least 2 bits, so 1032:1. A header
#: promising more than this many bytes per compressed byte is forged or truncated.
MAX_DEFLATE_RATIO = 1032
#: Bytes read past the declared data at most to tell how many there are.
EXTRA_SHOWN = 1 << 20


def is_gzip(path: Location) -> bool:
    with open_bytes(path) as handle:
        return handle.read(2) == GZIP_MAGIC


@contextmanager
def open_maybe_gzip(path: Location) -> Iterator[BinaryIO]:
    """Open ``path`` for reading, decompressing transparently when it is gzip.

    Every member of a multi-member gzip file is read, and zero padding after the last one
    is skipped, as gzip itself does; a damaged stream raises an InputError naming ``path``
    and the check that failed.
    """
    try:
        raw = open_bytes(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from exc
    with raw:
        if raw.read(2) == GZIP_MAGIC:
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                try:
                    yield unzipped  # type: ignore[misc]
                except GZIP_ERRORS as exc:
                    raise gzip_error(path, exc) from exc
        else:
            raw.seek(0)
            yield raw


def gzip_error(path: Location, exc: Exception) -> InputError:
    """The reason, in words, for which the gzip module refused ``path``.

    The module tells its checks apart only by message, so the messages are matched.
    """
    text = str(exc)
    if text.startswith("CRC check failed"):
        return InputError(f"{path}: gzip CRC check failed: the file is damaged")
    if text.startswith("Incorrect length"):
        return InputError(
            f"{path}: corrupt or truncated gzip data (length check failed: the file is damaged)"
        )
    if text.startswith("Not a gzipped file"):
        # only after a member: the file's own first bytes were the gzip magic
        return InputError(f"{path}: bytes after its gzip data are neither gzip nor zero padding")
    return InputError(f"{path}: corrupt or truncated gzip data ({exc})")


def check_size(path: Location, expected: int) -> None:
    """Refuse up front a file that cannot hold exactly the ``expected`` bytes its header
    declares.

    A plain file must be exactly that size. A gzip file must not promise more than its
    compressed bytes can expand to, so that a tiny file claiming a huge array is refused
    before anything is allocated or read; its true size is known only by reading it, which
    ``check_end`` completes.
    """
    actual = size_of(path)
    if is_gzip(path):
        check_deflate_ratio(path, expected, actual, "file")
    elif actual < expected:
        raise InputError(
            f"{path}: truncated: header promises {expected:,} bytes, file holds {actual:,}"
        )
    elif actual > expected:
        raise_extra(path, actual - expected)


def check_end(handle: BinaryIO, path: Location) -> None:
    """Refuse a stream that goes on after the data its header declares.

    Call it once the declared data is read: it reads to the end of the stream, which for a
    gzip file runs gzip's CRC and length checks (at the end of each member), and requires
    nothing more there.
    """
    extra = handle.read(EXTRA_SHOWN + 1)
    if len(extra) > EXTRA_SHOWN:
        raise_extra(path, len(extra), at_least=True)
    if extra:
        raise_extra(path, len(extra))


def raise_extra(subject: Location | str, extra: int, at_least: bool = False) -> NoReturn:
    """Refuse ``subject`` (a file, or a file and its member) for holding ``extra`` bytes
    more than its header declares (at least that many with ``at_least``)."""
    more = f"over {extra - 1:,}" if at_least else f"{extra:,}"
    raise InputError(f"{subject}: holds {more} bytes more than its header declares")


def check_deflate_ratio(path: Location, expected: int, compressed: int, what: str) -> None:
    """Refuse a promise of ``expected`` bytes that ``compressed`` deflate bytes cannot keep."""
    if expected > MAX_DEFLATE_RATIO * compressed:
        raise InputError(
            f"{path}: header promises {expected:,} bytes, more than the {compressed:,} "
            f"compressed bytes of the {what} can hold (deflate expands at most "
            f"{MAX_DEFLATE_RATIO}:1)"
        )


def read_exact(handle: BinaryIO, size: int, path: Location, what: str) -> bytes:
    """Read exactly ``size`` bytes or raise an InputError naming the shortfall."""
    data = handle.read(size)
    if len(data) != size:
        raise InputError(f"{path}: truncated: {what} needs {size} bytes, found {len(data)}")
    return data


def read_images(
    handle: BinaryIO,
    path: Location,
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


def read_chunked(
    handle: BinaryIO,
    path: Location,
    count: int,
    image_shape: tuple[int, ...],
    max_images: int,
    dtype: np.dtype[Any] | type = np.uint8,
    ends: bool = True,
) -> Iterator[Any]:
    """``count`` images from ``handle`` in arrays of at most ``max_images`` each.

    With ``ends``, the stream must end after them: ``check_end`` runs before the last array
    is handed out, so a reader that stops once it has every image still sees a damaged or
    overlong stream refused.
    """
    for first in range(0, count, max_images):
        size = min(max_images, count - first)
        chunk = read_images(handle, path, size, image_shape, dtype)
        if ends and first + size == count:
            check_end(handle, path)
        yield chunk
    if ends and count == 0:
        check_end(handle, path)


def read_npy_header(
    handle: BinaryIO, path: Location, stream_errors: tuple[type[Exception], ...] = ()
) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Return (shape, fortran_order, dtype) and leave ``handle`` at the data.

    Parameters
    ----------
    handle
        The stream, at the start of the .npy data.
    path
        The file named in errors.
    stream_errors
        Errors of ``handle`` itself (a failed checksum, say), raised as they are for the
        caller to report: they are not damage to the header.
    """
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    except stream_errors:
        raise
    except Exception as exc:  # numpy's header parser raises many kinds on damaged input
        raise InputError(f"{path}: not a valid .npy file (damaged header)") from exc
    if any(n < 0 for n in shape):
        raise InputError(f"{path}: not a valid .npy file (shape {shape} in the header)")
    return shape, fortran, dtype
