"""Standard input as a source: spooled to a temporary file so it can be read twice.

The stream's header is read first: anything but an IDX or ``.npy`` stream (gzip IDX too) is
refused before a byte is written, a header declaring more than the temporary folder can hold
is refused at once, and spooling stops as soon as more bytes arrive than the header declares
(for gzip, than the most its compressed form can take). The spooled copy is then read as any
file is, so it too must end where its header says.
Errors about the spooled file name ``<stdin>``, never the temporary path.
"""

from __future__ import annotations

import io
import math
import os
import select
import shutil
import stat
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pixscale.core.formats import HDF5_SIGNATURE, NPY_MAGIC
from pixscale.core.rawio import GZIP_MAGIC, MAX_DEFLATE_RATIO, read_npy_header
from pixscale.errors import InputError, PixscaleError
from pixscale.sources.idx import IDX_DTYPES, looks_like_idx
from pixscale.sources.npz import ZIP_MAGIC

#: Name that stands for standard input on the command line and in the record.
STDIN = "-"
#: How standard input is named in messages.
STDIN_NAME = "<stdin>"
#: Bytes read from standard input at most to find its header (a gzip header may carry a
#: file name and a comment first; numpy's own limit for a .npy header is 10,000 bytes).
HEAD_LIMIT = 1 << 20
#: Bytes past the declared size accepted from a gzip stream: its framing (header,
#: trailer, block headers). A raw stream must be exactly its declared size, as a file must.
SLACK = 1 << 16
#: deflate's worst expansion of incompressible data, as a fraction (zlib's deflateBound
#: adds about 1/4096 + 1/16384 of the input).
GZIP_EXPANSION = 1 / 2048
BLOCK = 1 << 20
#: Seconds between polls of a pipe for data, at most the delay before a signal is handled.
POLL_SECONDS = 0.1


@contextmanager
def spooled(stream: BinaryIO) -> Iterator[Path]:
    """Copy ``stream`` to a private temporary file (fitting needs two passes, sha256 one).

    The stream's header is checked before anything is written (see the module docstring).
    Every pixscale error raised inside the ``with`` block, or OS error about the file,
    names ``<stdin>`` instead of the temporary path, so callers may open and read the
    yielded path as any input.

    Parameters
    ----------
    stream
        A binary stream, usually ``sys.stdin.buffer``.

    Yields
    ------
    Path
        The temporary file, removed on exit.
    """
    with tempfile.TemporaryDirectory(prefix="pixscale-stdin-") as folder:
        path = Path(folder) / "stdin"
        with named_as_stdin(path):
            spool(stream, path)
            yield path


@contextmanager
def named_as_stdin(path: Path) -> Iterator[None]:
    """Errors that name ``path`` name ``<stdin>`` instead."""
    try:
        yield
    except PixscaleError as exc:
        if str(path) not in str(exc):
            raise
        raise rename_error(exc, str(path)) from exc
    except OSError as exc:
        if exc.filename is None or str(path) not in str(exc.filename):
            raise
        raise InputError(f"{STDIN_NAME}: {exc.strerror or exc}") from exc


def rename_error(exc: PixscaleError, path: str) -> PixscaleError:
    message = str(exc).replace(path, STDIN_NAME)
    try:
        return type(exc)(message)
    except TypeError:  # a subclass with another signature
        return InputError(message)


def spool(stream: BinaryIO, path: Path) -> None:
    """Write ``stream`` to ``path``, refusing it as soon as it is known to be bad."""
    head = read_head(stream)
    declared, compressed = declared_size(head)
    limit = declared
    if compressed:
        limit += SLACK + math.ceil(declared * GZIP_EXPANSION)
    # a gzip stream is at least 1/1032 of what it declares, a raw one all of it
    check_room(path.parent, declared // MAX_DEFLATE_RATIO if compressed else declared, declared)
    try:
        with path.open("wb") as handle:
            copy(stream, handle, head, limit, declared)
    except OSError as exc:
        raise InputError(
            f"{STDIN_NAME}: cannot keep a copy in the temporary folder ({exc.strerror or exc})"
        ) from exc


def copy(stream: BinaryIO, handle: BinaryIO, head: bytes, limit: int, declared: int) -> None:
    handle.write(head)
    written = len(head)
    for block in arriving(stream):
        written += len(block)
        if written > limit:
            raise InputError(
                f"{STDIN_NAME}: more data than its header declares ({declared:,} bytes)"
            )
        handle.write(block)


def read_head(stream: BinaryIO) -> bytes:
    """The first bytes of ``stream``: enough to hold its header, or all there is."""
    head = b""
    for block in arriving(stream):
        head += block
        if len(head) >= HEAD_LIMIT or parse_head(head) is not None:
            break
    if not head:
        raise InputError(f"{STDIN_NAME}: no data on standard input")
    return head


def arriving(stream: BinaryIO) -> Iterator[bytes]:
    """The bytes of ``stream`` as they arrive (``read1``), so that a bad stream is refused
    without waiting for more of it.

    A pipe is polled before each read: a signal (SIGTERM, Ctrl-C) delivered to another
    thread (numpy's) does not interrupt a blocking read in this one, and would otherwise
    wait for the next bytes to be handled.
    """
    read = getattr(stream, "read1", stream.read)
    fd = pipe_descriptor(stream)
    while True:
        if fd is not None:
            while not select.select([fd], [], [], POLL_SECONDS)[0]:
                pass  # back in Python between polls: pending signal handlers run
        block = read(BLOCK)
        if not block:
            return
        yield block


def pipe_descriptor(stream: BinaryIO) -> int | None:
    """The file descriptor of ``stream`` when reading it may block (pipe, socket, terminal)."""
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return None
    blocking = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)
    return fd if blocking and os.name == "posix" else None


def declared_size(head: bytes) -> tuple[int, bool]:
    """The total size the stream's header declares, and whether the stream is gzip."""
    found = parse_head(head)
    if found is not None:
        return found
    if len(head) >= HEAD_LIMIT:
        raise InputError(f"{STDIN_NAME}: no complete header in its first {HEAD_LIMIT:,} bytes")
    raise InputError(f"{STDIN_NAME}: truncated: the stream ends inside its header")


def parse_head(head: bytes) -> tuple[int, bool] | None:
    """As ``declared_size``; None when ``head`` is too short to tell."""
    compressed = head.startswith(GZIP_MAGIC)
    size = raw_declared_size(gunzip_head(head) if compressed else head, compressed)
    return None if size is None else (size, compressed)


def gunzip_head(head: bytes) -> bytes:
    """The first decompressed bytes of a gzip stream (at most ``HEAD_LIMIT``)."""
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, HEAD_LIMIT)
    except zlib.error as exc:
        raise InputError(f"{STDIN_NAME}: corrupt gzip data ({exc})") from exc


def raw_declared_size(head: bytes, compressed: bool) -> int | None:
    """The size an uncompressed IDX or .npy header declares; None when it is incomplete."""
    if len(head) < 8:
        return None
    if head.startswith(NPY_MAGIC):
        if compressed:
            raise InputError(f"{STDIN_NAME}: is a gzip-compressed .npy; gunzip it first")
        return npy_size(head)
    if looks_like_idx(head):
        return idx_size(head)
    if head.startswith((HDF5_SIGNATURE, ZIP_MAGIC)):
        raise InputError(f"{STDIN_NAME}: HDF5 and .npz inputs must be files, not standard input")
    raise InputError(
        f"{STDIN_NAME}: not an IDX or .npy stream (it starts with 0x{head[:8].hex()}); "
        "standard input takes IDX, gzip IDX or .npy"
    )


def npy_size(head: bytes) -> int | None:
    """Header and data bytes of a .npy stream; None until the whole header is there."""
    major = head[len(NPY_MAGIC)]
    length_bytes = 2 if major == 1 else 4
    start = len(NPY_MAGIC) + 2 + length_bytes
    if len(head) < start:
        return None
    if len(head) < start + int.from_bytes(head[start - length_bytes : start], "little"):
        return None
    buffer = io.BytesIO(head)
    shape, _, dtype = read_npy_header(buffer, Path(STDIN_NAME))
    return buffer.tell() + math.prod(shape) * dtype.itemsize


def idx_size(head: bytes) -> int | None:
    """Header and data bytes of an IDX stream; None until the whole header is there."""
    ndim = head[3]
    header = 4 + 4 * ndim
    if len(head) < header:
        return None
    shape = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return header + math.prod(shape) * np.dtype(IDX_DTYPES[head[2]]).itemsize


def check_room(folder: Path, needed: int, declared: int) -> None:
    """Refuse a stream whose copy cannot fit in ``folder``, before copying it."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise InputError(
            f"{STDIN_NAME}: header declares {declared:,} bytes; the temporary folder "
            f"{folder.parent} has {free:,} free for its copy"
        )
