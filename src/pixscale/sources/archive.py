"""Images inside a .zip or a .tar (.tar.gz): read member by member, never extracted.

Nothing is ever written to the disk, yet a member whose path is absolute or climbs out with
``..`` is refused outright, naming it: such an archive was made to attack whoever extracts
it. Zip members are read through the central directory (any window of images, without
reading the ones before); tar members are streamed in archive order, the only order a
compressed tar can be read in. Images are checked as they are decoded (``pictures``): the
first image sets the size and kind, and an error names the archive and the member.

What an archive holds is told by content, never by member names alone: the first bytes of
a few members say whether they are images, ``.npy`` arrays or pickled CIFAR batches
(``zip_kind``, ``tar_kind``); an archive holding two of these kinds is refused, naming one
member of each, unless ``--key`` says which to read.
"""

from __future__ import annotations

import fnmatch
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import ClassVar

from pixscale.core.formats import NPY_MAGIC
from pixscale.core.location import Location
from pixscale.core.rawio import check_deflate_ratio
from pixscale.errors import InputError
from pixscale.sources.base import Source, UInt8Array
from pixscale.sources.cifar import looks_like_pickle
from pixscale.sources.members import (
    TAR_ERRORS,
    open_zip,
    read_failure,
    read_zip_bytes,
    remote_errors,
    tar_members,
    zip_listing,
)
from pixscale.sources.npz import METHODS, ZIP_ERRORS, arrays, refuse_unread_member
from pixscale.sources.parallel import choose_backend, decode_chunks
from pixscale.sources.pictures import (
    Encoded,
    Expect,
    check_encoded_size,
    first_expect,
    image_fields,
    is_image_name,
    require_pillow,
)
from pixscale.sources.resize import Resize
from pixscale.sources.tree import Plan, labels_of, parents, plan_tree
from pixscale.sources.tree import is_hidden as is_hidden  # webdataset's rule too

PILLOW_PURPOSE = "reading images in archives"
#: How far format detection looks into a tar: members, and bytes of the stream.
SNIFF_MEMBERS = 64
SNIFF_BYTES = 64 << 20
#: Zip members (beyond the first named as an array and as an image) whose first bytes are
#: read to tell an .npz from images.
SNIFF_ZIP_MEMBERS = 8
#: Bytes of a member read to tell what it holds.
HEAD_BYTES = 16
#: How encoded images begin: PNG, JPEG, BMP, TIFF (little- and big-endian).
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")


def content_kind(head: bytes) -> str | None:
    """``npy``, ``pickle`` or ``image`` from a member's first bytes, or None."""
    if head.startswith(NPY_MAGIC):
        return "npy"
    if looks_like_pickle(head):
        return "pickle"
    if head.startswith(IMAGE_SIGNATURES):
        return "image"
    return None


def mixed_kinds(path: Location, first: tuple[str, str], second: tuple[str, str]) -> InputError:
    """The error for an archive holding two kinds of members, one of each named."""
    return InputError(
        f"{path}: holds both {first[0]} ({first[1]}) and {second[0]} ({second[1]}); "
        "choose with --key which members to read"
    )


def matches(name: str, key: str | None) -> bool:
    """Whether ``--key`` (a pattern, or a folder) selects member ``name``."""
    if key is None:
        return True
    normal, wanted = PurePosixPath(name).as_posix(), key.strip("/")
    return fnmatch.fnmatchcase(normal, wanted) or normal.startswith(wanted + "/")


def plan_members(path: Location, images: list[tuple[int, str]], folders: set[str]) -> Plan:
    """The rule of trees (``tree.plan_tree``), shared with image folders, on an archive's
    image members (positions and names, in archive order) and its ``folders`` (folder
    members, and the folders any member lies in)."""
    return plan_tree(path, [name for _, name in images], folders, hint="--key picks a folder")


def member_folders(name: str, is_dir: bool) -> set[str]:
    """The folders a member shows: those it lies in, and itself if it is one."""
    found = parents([name])
    if is_dir:
        found.add(name.rstrip("/"))
    return found


def no_images(path: Location, key: str | None) -> InputError:
    chosen = f" under --key {key}" if key else ""
    return InputError(f"{path}: holds no PNG, JPEG, BMP or TIFF images{chosen}")


# --------------------------------------------------------------------------- zip


@contextmanager
def zip_errors(path: Location) -> Iterator[None]:
    try:
        yield
    except ZIP_ERRORS + remote_errors(path) as exc:
        raise read_failure(path, exc, f"{path}: damaged zip archive ({exc})") from exc


def read_zip_member(archive: zipfile.ZipFile, path: Location, info: zipfile.ZipInfo) -> bytes:
    """The bytes of one image member, after checking what its header promises."""
    origin = f"{path}:{info.filename}"
    refuse_unread_member(f"{origin}: member", info)
    check_encoded_size(origin, info.file_size)
    if info.compress_type == zipfile.ZIP_DEFLATED:
        check_deflate_ratio(path, info.file_size, info.compress_size, f"member {info.filename!r}")
    try:
        return read_zip_bytes(archive, info, origin)
    except ZIP_ERRORS as exc:
        raise InputError(f"{origin}: damaged member ({exc})") from exc


@dataclass
class ZipImages(Source):
    """Images of a zip archive, in the order of its central directory."""

    random_access: ClassVar[bool] = True
    #: Positions of the image members in ``ZipFile.infolist()``.
    members: tuple[int, ...] = ()
    expect: Expect = field(default_factory=lambda: Expect((0, 0), "L", False))

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.read_window(0, self.n_images, max_images)

    def read_window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        backend = choose_backend(self.expect, stop - start)
        items = self.encoded(start, stop)
        return decode_chunks(
            items, self.expect, max_images, purpose=PILLOW_PURPOSE, backend=backend
        )

    def encoded(self, start: int, stop: int) -> Iterator[Encoded]:
        path = self.files[0]
        with zip_errors(path), open_zip(path) as archive:
            infos = archive.infolist()
            for position in self.members[start:stop]:
                info = infos[position]
                yield Encoded(f"{path}:{info.filename}", read_zip_member(archive, path, info))


def zip_kind(path: Location, key: str | None = None) -> str:
    """``npz`` or ``image-zip``, by what the members are.

    The first bytes of a few members are read: the first ``SNIFF_ZIP_MEMBERS``, and the
    first named as an array (``*.npy``) and as an image, since those are what the two
    readers would read. ``.npy`` arrays only: ``npz``; images only: ``image-zip``. A zip
    holding both (images with a stray ``.npy``) is refused, naming one of each, unless
    ``--key`` says which: an array's name reads that array, anything else (a folder, a
    pattern) the images. Members that are neither (or unreadable: the reader says why)
    leave the names to decide, as before.
    """
    try:
        with open_zip(path) as archive:
            listed = zip_listing(archive, path)
            infos = [i for i in listed if not i.is_dir() and not is_hidden(i.filename)]
            kinds = {info.filename: zip_member_kind(archive, info) for info in zip_sample(infos)}
            array_names = set(arrays(archive))
    except ZIP_ERRORS + remote_errors(path):
        return "npz"  # the .npz reader says what is wrong
    npys = [name for name, kind in kinds.items() if kind == "npy"]
    images = [name for name, kind in kinds.items() if kind == "image"]
    if npys and images:
        if key is None:
            raise mixed_kinds(path, (".npy arrays", npys[0]), ("images", images[0]))
        return "npz" if key in array_names else "image-zip"
    if npys or images:
        return "npz" if npys else "image-zip"
    names = [info.filename for info in infos]
    if array_names or not any(map(is_image_name, names)):
        return "npz"
    return "image-zip"


def zip_sample(infos: list[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """The members whose first bytes tell what a zip holds (see ``zip_kind``)."""
    named_array = next((i for i in infos if i.filename.endswith(".npy")), None)
    named_image = next((i for i in infos if is_image_name(i.filename)), None)
    sample = infos[:SNIFF_ZIP_MEMBERS]
    return sample + [i for i in (named_array, named_image) if i is not None and i not in sample]


def zip_member_kind(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """What one member holds, from its first bytes; None when it cannot be read here."""
    if info.flag_bits & 0x1 or info.compress_type not in METHODS:
        return None
    try:
        with archive.open(info) as handle:
            return content_kind(handle.read(HEAD_BYTES))
    except ZIP_ERRORS:
        return None


def open_zip_images(
    path: Location, key: str | None, mode: str | None, resize: Resize | None = None
) -> ZipImages:
    """The images of a zip archive: flat, or one folder per class."""
    image_module = require_pillow(PILLOW_PURPOSE)
    with zip_errors(path), open_zip(path) as archive:
        infos = zip_listing(archive, path)
        chosen = [(n, i) for n, i in enumerate(infos) if matches(i.filename, key)]
        images = [
            (position, info.filename)
            for position, info in chosen
            if not info.is_dir() and is_image_name(info.filename) and not is_hidden(info.filename)
        ]
        if not images:
            raise no_images(path, key)
        folders: set[str] = set()
        for _, info in chosen:
            folders |= member_folders(info.filename, info.is_dir())
        plan = plan_members(path, images, folders)
        first = infos[images[0][0]]
        item = Encoded(f"{path}:{first.filename}", read_zip_member(archive, path, first))
    expect = first_expect(image_module, item, mode, resize)
    return ZipImages(
        name=path.name if key is None else f"{path.name}:{key}",
        format="image-zip",
        files=(path,),
        labels=labels_of(plan, path),
        members=tuple(position for position, _ in images),
        **image_fields(expect, len(images)),
    )


# --------------------------------------------------------------------------- tar


def read_tar_member(archive: tarfile.TarFile, origin: str, member: tarfile.TarInfo) -> bytes:
    """The bytes of a regular member (``tar_members`` lists no other)."""
    check_encoded_size(origin, member.size)
    try:
        handle = archive.extractfile(member)
        assert handle is not None
        data = handle.read()
    except TAR_ERRORS as exc:
        raise InputError(f"{origin}: damaged member ({exc})") from exc
    if len(data) != member.size:
        raise InputError(f"{origin}: truncated: {len(data):,} of {member.size:,} bytes")
    return data


@dataclass
class TarImages(Source):
    """Images of a tar archive, streamed in archive order."""

    #: Positions of the image members among all members, increasing.
    members: tuple[int, ...] = ()
    expect: Expect = field(default_factory=lambda: Expect((0, 0), "L", False))

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        backend = choose_backend(self.expect, self.n_images)
        return decode_chunks(
            self.encoded(), self.expect, max_images, purpose=PILLOW_PURPOSE, backend=backend
        )

    def encoded(self) -> Iterator[Encoded]:
        path = self.files[0]
        wanted = iter(self.members)
        following = next(wanted, None)
        for position, archive, member in tar_members(path):
            if position == following:
                origin = f"{path}:{member.name}"
                yield Encoded(origin, read_tar_member(archive, origin, member))
                following = next(wanted, None)
                if following is None:
                    return
        if following is not None:
            raise InputError(f"{path}: archive changed since it was opened (fewer members)")


def tar_kind(path: Location, key: str | None = None) -> str:
    """``cifar-archive``, ``webdataset`` or ``image-tar``, by what the first members are.

    The first bytes of each of the first ``SNIFF_MEMBERS`` members say whether it is a
    pickled CIFAR batch or an image; names say only how images are grouped (WebDataset
    samples share a key). Both batches and images are refused, naming one of each, unless
    ``--key`` says which: a batch's name reads the batches, anything else the images. When
    no member tells, image names choose the image reader, else the CIFAR one (each says
    what is wrong).
    """
    seen: dict[str, list[str]] = {"pickle": [], "image": []}
    image_names = 0
    previous: tuple[str, str] | None = None
    for position, archive, member in tar_members(path):
        if position >= SNIFF_MEMBERS or archive.offset > SNIFF_BYTES:
            break
        if not member.isfile() or is_hidden(member.name):
            continue
        kind = content_kind(tar_head(archive, path, member))
        if kind in seen:
            seen[kind].append(member.name)
        name = PurePosixPath(member.name)
        key_part, _, suffix = name.name.partition(".")
        sample = (str(name.parent / key_part), suffix.lower())
        if suffix.lower() == "cls":
            return "webdataset"
        if previous is not None and previous[0] == sample[0]:
            # two members of one sample (KEY.jpg, KEY.json): WebDataset, unless both are
            # images named like cat.1.jpg, cat.2.jpg
            if not (is_image_name(member.name) and is_image_name("." + previous[1])):
                return "webdataset"
        # a WebDataset member is KEY.EXTENSION: one without an extension is no sample's
        previous = sample if suffix else None
        image_names += is_image_name(member.name)
    return tar_decision(path, key, seen["pickle"], seen["image"], image_names > 0)


def tar_decision(
    path: Location, key: str | None, pickles: list[str], images: list[str], image_names: bool
) -> str:
    """The kind of a tar from the pickles and images its first members are (``tar_kind``)."""
    if pickles and images:
        if key is None:
            raise mixed_kinds(path, ("pickled batches", pickles[0]), ("images", images[0]))
        picks_batches = any(fnmatch.fnmatchcase(PurePosixPath(n).name, key) for n in pickles)
        return "cifar-archive" if picks_batches else "image-tar"
    if pickles or images:
        return "cifar-archive" if pickles else "image-tar"
    return "image-tar" if image_names else "cifar-archive"


def tar_head(archive: tarfile.TarFile, path: Location, member: tarfile.TarInfo) -> bytes:
    """The first bytes of the member the stream is at."""
    try:
        handle = archive.extractfile(member)
        return handle.read(HEAD_BYTES) if handle is not None else b""
    except TAR_ERRORS as exc:
        raise InputError(f"{path}:{member.name}: damaged member ({exc})") from exc


def open_tar_images(
    path: Location, key: str | None, mode: str | None, resize: Resize | None = None
) -> TarImages:
    """The images of a tar archive: flat, or one folder per class (one pass over it)."""
    image_module = require_pillow(PILLOW_PURPOSE)
    images: list[tuple[int, str]] = []
    folders: set[str] = set()
    first: Encoded | None = None
    for position, archive, member in tar_members(path):
        if not matches(member.name, key):
            continue
        folders |= member_folders(member.name, member.isdir())
        if member.isdir() or not is_image_name(member.name) or is_hidden(member.name):
            continue
        origin = f"{path}:{member.name}"
        if first is None:
            first = Encoded(origin, read_tar_member(archive, origin, member))
        images.append((position, member.name))
    if first is None:
        raise no_images(path, key)
    plan = plan_members(path, images, folders)
    expect = first_expect(image_module, first, mode, resize)
    return TarImages(
        name=path.name if key is None else f"{path.name}:{key}",
        format="image-tar",
        files=(path,),
        labels=labels_of(plan, path),
        members=tuple(position for position, _ in images),
        **image_fields(expect, len(images)),
    )
