"""Arrays inside ``.npz`` archives (e.g. Keras' mnist.npz), streamed from the zip member.

Only what numpy writes is read: ``.npy`` members, stored or deflated (``np.savez``,
``np.savez_compressed``), unencrypted. bzip2 and lzma members are refused: zipfile
decompresses them without a bound on the output of one read, so a small member could
expand to gigabytes in memory at once.
"""

from __future__ import annotations

import lzma
import math
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import numpy as np
import numpy.typing as npt

from pixscale.core.layouts import default_layout
from pixscale.core.location import Location
from pixscale.core.pixels import native
from pixscale.core.rawio import (
    check_deflate_ratio,
    check_end,
    raise_extra,
    read_chunked,
    read_images,
    read_npy_header,
)
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array
from pixscale.sources.members import open_zip, read_failure, remote_errors
from pixscale.sources.npy import require_labels, require_pixels

ZIP_MAGIC = b"PK\x03\x04"
#: Compression methods read (numpy writes these two).
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
OTHER_METHODS = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
#: Exceptions by which zipfile and its decompressors report a damaged archive.
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
)
#: Errors of a member's stream, not of the .npy header it holds.
MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError)


def label_key(key: str) -> str | None:
    """Keras naming: ``x_train`` ↔ ``y_train``, ``x_test`` ↔ ``y_test``, ``x`` ↔ ``y``."""
    if key == "x" or key.startswith("x_"):
        return "y" + key[1:]
    return None


@contextmanager
def member_errors(path: Location, info: zipfile.ZipInfo) -> Iterator[None]:
    """A member whose data fails its CRC is refused as damaged, naming the member."""
    try:
        yield
    except zipfile.BadZipFile as exc:
        # zipfile tells a failed CRC from other damage only by its message
        if not str(exc).startswith("Bad CRC-32"):
            raise
        raise InputError(f"{path}: member {info.filename!r}: CRC check failed (damaged)") from exc


@contextmanager
def zip_errors(path: Location) -> Iterator[None]:
    """Any error from zipfile or a decompressor becomes an InputError naming ``path`` (a
    remote object's storage failing is said as such: ``read_failure``)."""
    try:
        yield
    except ZIP_ERRORS + remote_errors(path) as exc:
        raise read_failure(path, exc, f"{path}: damaged .npz archive ({exc})") from exc


def check_member(path: Location, info: zipfile.ZipInfo) -> None:
    """Refuse a member that is encrypted or compressed in a way not read."""
    refuse_unread_member(f"{path}: member {info.filename!r}", info, " (what numpy writes)")


def refuse_unread_member(subject: str, info: zipfile.ZipInfo, note: str = "") -> None:
    """Refuse a zip member that is encrypted or compressed other than stored or deflate;
    the error begins with ``subject`` (the archive and member)."""
    if info.flag_bits & 0x1:
        raise InputError(f"{subject} is encrypted")
    if info.compress_type not in METHODS:
        method = OTHER_METHODS.get(info.compress_type, f"method {info.compress_type}")
        raise InputError(
            f"{subject} is compressed with {method}; only stored and deflate members{note} are read"
        )


def check_member_size(path: Location, info: zipfile.ZipInfo, needed: int) -> None:
    """Refuse a member that does not hold exactly the ``needed`` bytes its header
    promises, or that promises more than its compressed bytes can expand to.

    zipfile then reads exactly that many bytes and checks their CRC at the end.
    """
    if info.compress_type == zipfile.ZIP_DEFLATED:
        check_deflate_ratio(path, info.file_size, info.compress_size, f"member {info.filename!r}")
    if info.file_size < needed:
        raise InputError(
            f"{path}: truncated: member {info.filename!r} holds {info.file_size:,} bytes, "
            f"its header promises {needed:,}"
        )
    if info.file_size > needed:
        raise_extra(f"{path}: member {info.filename!r}", info.file_size - needed)


def open_member(
    archive: zipfile.ZipFile, path: Location, info: zipfile.ZipInfo
) -> tuple[IO[bytes], tuple[int, ...], np.dtype]:
    """Open a .npy member at its data; returns the handle, shape and dtype.

    The caller checks the dtype and shape, then ``check_member_size``, before reading.
    """
    check_member(path, info)
    handle = archive.open(info)
    try:
        with member_errors(path, info):
            shape, fortran, dtype = read_npy_header(handle, path, MEMBER_ERRORS)  # type: ignore[arg-type]
        if fortran and len(shape) > 1:
            raise InputError(
                f"{path}: array {info.filename!r} has shape {shape} in Fortran order; "
                "expected C-ordered images"
            )
    except BaseException:
        handle.close()
        raise
    return handle, shape, dtype


def data_size(handle: IO[bytes], shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Bytes of the member from its start to the end of the array, the header promises."""
    return handle.tell() + math.prod(shape) * dtype.itemsize


@dataclass
class NpzSource(Source):
    """One uint8 or uint16 array of an .npz archive, read in windows (compressed members
    too)."""

    member: str = ""
    #: The dtype as stored (``>u2`` is read, then swapped to native order).
    stored: str = "|u1"

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        """The images in chunks; the member must end with the last (see ``read_chunked``)."""
        path = self.files[0]
        stored = np.dtype(self.stored)
        with zip_errors(path), open_zip(path) as archive:
            info = archive.getinfo(self.member)
            handle, _, _ = open_member(archive, path, info)
            with handle, member_errors(path, info):
                chunks = read_chunked(
                    handle,  # type: ignore[arg-type]
                    path,
                    self.n_images,
                    self.image_shape,
                    max_images,
                    stored,
                )
                for chunk in chunks:
                    yield native(chunk, self.dtype)


def arrays(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's .npy members by array name (``x_train.npy`` → ``x_train``)."""
    return {
        info.filename.removesuffix(".npy"): info
        for info in archive.infolist()
        if info.filename.endswith(".npy") and not info.is_dir()
    }


def choose(path: Location, found: dict[str, zipfile.ZipInfo], key: str | None) -> str:
    names = ", ".join(found) or "no .npy arrays"
    if key is None:
        if len(found) != 1:
            raise InputError(f"{path}: holds {names}; choose one with --key")
        return next(iter(found))
    if key not in found:
        raise InputError(f"{path}: no array {key!r}; it holds {names}")
    return key


def read_labels_member(
    archive: zipfile.ZipFile, path: Location, info: zipfile.ZipInfo, expected: int
) -> npt.NDArray[np.integer]:
    """A 1-D integer labels member of ``expected`` entries, checked before it is read."""
    handle, shape, dtype = open_member(archive, path, info)
    with handle, member_errors(path, info):
        require_labels(path, shape, dtype, expected)
        check_member_size(path, info, data_size(handle, shape, dtype))
        values: npt.NDArray[np.integer] = read_images(handle, path, expected, (), dtype)  # type: ignore[arg-type]
        check_end(handle, path)  # type: ignore[arg-type]
    return values


def open_npz(path: Location, key: str | None) -> NpzSource:
    with zip_errors(path), open_zip(path) as archive:
        found = arrays(archive)
        key = choose(path, found, key)
        handle, shape, dtype = open_member(archive, path, found[key])
        with handle:
            pixels = require_pixels(path, dtype)
            if len(shape) < 2:
                raise InputError(f"{path}: array {key!r} has shape {shape}; expected images")
            check_member_size(path, found[key], data_size(handle, shape, dtype))
        labels = None
        partner = label_key(key)
        if partner in found:
            values = read_labels_member(archive, path, found[partner], shape[0])
            labels = Labels(values, f"{path.name}:{partner}")
    return NpzSource(
        name=f"{path.name}:{key}",
        format="npz",
        shape=tuple(shape),
        layout=default_layout(len(shape)),
        files=(path,),
        labels=labels,
        member=found[key].filename,
        stored=dtype.str,
        dtype=pixels,
    )
