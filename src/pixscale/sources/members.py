"""One way to walk the members of an archive, shared by every reader of tars and zips.

Every member is checked as it is listed, whatever a reader then does with it: a name that
is absolute or climbs out with ``..`` is refused (such an archive was made to attack
whoever extracts it), and so is any member that is not a regular file or a folder: links
are never followed, devices and FIFOs are no data. A tar must also end as tars end: after
its last member, the end-of-archive marker (a block of zeros) and nothing but zeros. Python's
``tarfile`` takes a truncated or unreadable header after the first member for the end of
the archive, which would drop every member after it without a word; here that is refused,
naming the last member read. A compressed tar is read to the end of its stream, which checks
the compression's own trailer (gzip's CRC and length). A zip is listed from its central
directory, where a name held twice is refused too, and a member is read in bounded pieces,
never past the size it declares.

Archives on an object store (``s3://…``) are read the same way, through a seekable file of
the object (``open_bytes``): a tar streamed front to back, a zip by its central directory
and the byte ranges of its members; nothing is downloaded whole first. A failing storage
call is refused in one line naming the URL and why (``read_failure``), not as damage.
"""

from __future__ import annotations

import gzip
import lzma
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from pixscale.core.location import (
    Location,
    is_remote,
    open_bytes,
    shown,
    storage_exceptions,
    storage_reason,
)
from pixscale.errors import InputError

#: Exceptions by which tarfile and its decompressors report a damaged archive.
TAR_ERRORS = (
    tarfile.TarError,
    OSError,
    EOFError,
    KeyError,
    zlib.error,
    lzma.LZMAError,
    ValueError,
)
#: What tarfile raises on a header block of zeros, and on a header cut short (not in its
#: type stubs).
ZERO_BLOCK: type[tarfile.HeaderError] = vars(tarfile)["EOFHeaderError"]
CUT_SHORT: tuple[type[tarfile.HeaderError], ...] = (
    vars(tarfile)["EmptyHeaderError"],
    vars(tarfile)["TruncatedHeaderError"],
)
#: Bytes read at a time past a tar's end, and of a zip member.
PIECE = 1 << 20
#: Longest deflate stream a member of ``n`` bytes can need: stored blocks (5 bytes of
#: header per 65,535 bytes), with room to spare for any encoder.
DEFLATE_SLACK = 8
DEFLATE_HEADROOM = 64
#: What non-regular members are, by their type.
SPECIAL_TAR_TYPES = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}
SPECIAL_MODES = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}
LINK_REFUSED = "member is a link; links are not followed"
#: ``OSError``s by which a decompressor reports damaged data (they carry no ``errno``).
DATA_ERRORS = (gzip.BadGzipFile,)
#: ``OSError``s that are the storage's whatever they carry (fsspec's may carry no ``errno``).
STORAGE_OS_ERRORS = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    ConnectionError,
    TimeoutError,
)


# --------------------------------------------------------------------------- storage


def remote_errors(path: Location) -> tuple[type[BaseException], ...]:
    """The storage libraries' exceptions when ``path`` is remote; none for a local path
    (importing them would cost every local run)."""
    return storage_exceptions() if is_remote(path) else ()


def is_storage_failure(path: Location, exc: BaseException) -> bool:
    """Whether ``exc`` is the storage of a remote ``path`` failing (a missing object, denied
    access, no endpoint) rather than damage in the bytes read: other ``OSError``s are the
    storage's when they carry an ``errno`` (fsspec's do, the decompressors' do not)."""
    if not is_remote(path) or not isinstance(exc, storage_exceptions()):
        return False
    if isinstance(exc, STORAGE_OS_ERRORS):
        return True
    if isinstance(exc, OSError):
        return exc.errno is not None and not isinstance(exc, DATA_ERRORS)
    return True


def read_failure(path: Location, exc: BaseException, damaged: str) -> InputError:
    """The error for ``exc`` met reading ``path``: the URL and the storage's reason when its
    storage failed, else ``damaged`` (what the reader says of damaged bytes)."""
    if is_storage_failure(path, exc):
        return InputError(f"{shown(path)}: {storage_reason(exc)}")
    return InputError(damaged)


@contextmanager
def storage_errors(path: Location) -> Iterator[None]:
    """Within the block, a failing storage call on a remote ``path`` becomes a one-line
    ``InputError`` naming the URL and why, without a traceback or a credential."""
    try:
        yield
    except remote_errors(path) as exc:
        if not is_storage_failure(path, exc):
            raise
        raise read_failure(path, exc, "") from exc


def member_problem(name: str) -> str | None:
    """Why a member name could write outside an extraction folder, or None."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        return "an absolute path"
    if ".." in unified.split("/"):
        return "'..' in its path"
    return None


def check_member_name(path: Location, name: str) -> None:
    """Refuse an archive holding a member that would land outside a folder extracted to."""
    problem = member_problem(name)
    if problem is not None:
        raise InputError(
            f"{path}:{name}: member has {problem}; an archive holding it is refused "
            "(nothing is ever extracted)"
        )


# --------------------------------------------------------------------------- tar


class Header(tarfile.TarInfo):
    """A tar header that, when it cannot be read, leaves why on its archive: tarfile then
    ends the listing, and ``check_end`` tells a true end from a damaged one."""

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> Header:
        try:
            return super().fromtarfile(archive)
        except tarfile.HeaderError as exc:
            if isinstance(archive, Tar):
                archive.stopped_by = exc
            raise


class Tar(tarfile.TarFile):
    """A tar whose listing knows why it stopped (see ``Header``)."""

    tarinfo = Header
    stopped_by: tarfile.HeaderError | None = None
    #: The headers read so far (set by ``TarFile``; not in its type stubs).
    members: list[tarfile.TarInfo]


@contextmanager
def open_tar(path: Location) -> Iterator[Tar]:
    """A tar (plain, gzip, bzip2 or xz) open for reading, a local file or a remote object
    streamed; its damage is an ``InputError`` naming it (``read_failure``)."""
    try:
        with open_bytes(path) as raw, Tar.open(fileobj=raw, mode="r:*") as archive:
            yield archive
    except TAR_ERRORS + remote_errors(path) as exc:
        raise read_failure(path, exc, f"{path}: damaged tar archive ({exc})") from exc


def tar_entries(archive: Tar, path: Location) -> Iterator[tuple[int, tarfile.TarInfo]]:
    """Every member of an open tar in archive order, with its position: regular files and
    folders only (anything else is refused by name), then a check that the archive ends
    properly (``check_end``). Errors of the archive itself propagate (``open_tar`` names
    them)."""
    last: str | None = None
    for position, member in enumerate(archive):
        # the listing would keep every header read otherwise
        archive.members = []
        check_member_name(path, member.name)
        refuse_special(path, member)
        yield position, member
        last = member.name
    check_end(archive, path, last)


def tar_members(path: Location) -> Iterator[tuple[int, tarfile.TarFile, tarfile.TarInfo]]:
    """Every member of a tar, in archive order, with its position and the open archive to
    read it from (``tar_entries``); the archive is read once, front to back."""
    with open_tar(path) as archive:
        for position, member in tar_entries(archive, path):
            yield position, archive, member


def refuse_special(path: Location, member: tarfile.TarInfo) -> None:
    """Refuse a member that is neither a regular file nor a folder, naming it."""
    if member.isfile() or member.isdir():
        return
    origin = f"{path}:{member.name}"
    if member.issym() or member.islnk():
        raise InputError(f"{origin}: {LINK_REFUSED}")
    what = SPECIAL_TAR_TYPES.get(member.type, f"of type {member.type!r}")
    raise InputError(f"{origin}: member is {what}, not a regular file")


def check_end(archive: Tar, path: Location, last: str | None) -> None:
    """Refuse a tar whose listing stopped anywhere but at its end-of-archive marker, or
    that holds anything but zeros after it."""
    after = f"after member {last}" if last is not None else "before its first member"
    stopped = archive.stopped_by
    if stopped is None or isinstance(stopped, CUT_SHORT):
        raise InputError(f"{path}: truncated {after} (no end-of-archive marker)")
    if not isinstance(stopped, ZERO_BLOCK):
        raise InputError(f"{path}: unreadable header {after} ({stopped})")
    read = archive.fileobj.read
    while piece := read(PIECE):
        if piece.count(0) != len(piece):
            raise InputError(f"{path}: data after the end-of-archive marker ({after})")


# --------------------------------------------------------------------------- zip


@contextmanager
def open_zip(path: Location) -> Iterator[zipfile.ZipFile]:
    """A zip open for reading: a local file, or a remote object read by byte ranges (its
    central directory, then the members read). Errors are the caller's to name."""
    with open_bytes(path) as raw, zipfile.ZipFile(raw) as archive:
        yield archive


def zip_listing(archive: zipfile.ZipFile, path: Location) -> list[zipfile.ZipInfo]:
    """The members of a zip, in central-directory order, each checked: its name
    (``check_member_name``), held once, a regular file or a folder."""
    infos = archive.infolist()
    seen: set[str] = set()
    for info in infos:
        check_member_name(path, info.filename)
        if info.filename in seen:
            raise InputError(f"{path}:{info.filename}: member appears twice in the archive")
        seen.add(info.filename)
        refuse_special_zip(path, info)
    return infos


def refuse_special_zip(path: Location, info: zipfile.ZipInfo) -> None:
    """Refuse a member whose Unix mode (the high half of ``external_attr``) makes it a link,
    device, FIFO or socket; zips written elsewhere leave the mode zero."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind in (0, stat.S_IFREG, stat.S_IFDIR):
        return
    origin = f"{path}:{info.filename}"
    if kind == stat.S_IFLNK:
        raise InputError(f"{origin}: {LINK_REFUSED}")
    what = SPECIAL_MODES.get(kind, f"of file type {kind:#o}")
    raise InputError(f"{origin}: member is {what}, not a regular file")


def check_compressed_size(origin: str, info: zipfile.ZipInfo) -> None:
    """Refuse a member holding more compressed bytes than its declared size can take:
    the bytes past it would be dropped unread (or inflated for nothing)."""
    size = info.file_size
    if info.compress_type == zipfile.ZIP_STORED:
        most = size
    else:
        most = size + size // DEFLATE_SLACK + DEFLATE_HEADROOM
    if info.compress_size > most:
        raise InputError(
            f"{origin}: member holds {info.compress_size:,} compressed bytes, more than the "
            f"{size:,} bytes it declares can take"
        )


def read_zip_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo, origin: str) -> bytes:
    """The bytes of one member, read in bounded pieces up to one byte past its declared
    size; more than declared is refused (``zipfile`` checks the CRC at the end)."""
    check_compressed_size(origin, info)
    pieces: list[bytes] = []
    left = info.file_size + 1
    with archive.open(info) as handle:
        while left > 0 and (piece := handle.read(min(PIECE, left))):
            pieces.append(piece)
            left -= len(piece)
    if left <= 0:
        raise InputError(f"{origin}: member inflates past the {info.file_size:,} bytes it declares")
    return b"".join(pieces)
