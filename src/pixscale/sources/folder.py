"""Folders of PNG/JPEG/BMP/TIFF images; one sub-folder per class gives labels.

A folder reads as the archive of it does (``tree``): folders every image shares
(``photos/train/<class>/``) are looked through, and images at mixed depths are refused.

A folder may be a prefix of an object store (``s3://bucket/photos``), its sub-prefixes the
class folders: there are no links there to contain, so the prefix is listed once
(``list_remote_images``), sorted and planned as a local folder is, and its images fetched
in concurrent batches.

Every header is read when the folder is opened, so that sizes and kinds are known (and the
first offender named) before anything is converted; the checks themselves are the ones all
image sources share (``pictures``), and pixels are decoded on every core (``parallel``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pixscale.core.containment import Root
from pixscale.core.location import Location, is_remote, shown
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array
from pixscale.sources.members import storage_errors
from pixscale.sources.parallel import choose_backend, decode_chunks
from pixscale.sources.pictures import (
    GREY16,
    IMAGE_SUFFIXES,
    MODES,
    Encoded,
    Expect,
    check_encoded_size,
    choose_mode,
    fetched,
    is_image_name,
    refuse_mode_for_16_bits,
    require_pillow,
    scan,
)
from pixscale.sources.resize import Resize
from pixscale.sources.tree import is_hidden, is_hidden_part, labels_of, parents, parts_of, plan_tree

__all__ = [
    "IMAGE_SUFFIXES",
    "MODES",
    "FolderSource",
    "list_images",
    "open_folder",
    "require_pillow",
]


#: How a folder of images names the one to read, when its images lie at mixed depths.
FOLDER_HINT = "name the one folder to read, as in photos/train"


def list_images(folder: Path) -> tuple[list[Path], Labels | None]:
    """The images under ``folder`` in a deterministic order (names sorted, folder by
    folder), with labels when class folders hold them: the rule archives follow too
    (``tree``), so that a folder and the archive of it read alike.

    Only files inside ``folder`` are listed: a folder or an image that is a link leading
    out of it is refused, naming the link (``containment``).
    """
    root = Root(folder)
    images: list[str] = []
    folders: list[str] = []
    walk(root, images, folders)
    if not images:
        return [], None
    plan = plan_tree(folder, images, folders, hint=FOLDER_HINT)
    return [folder / name for name in images], labels_of(plan, folder)


def list_remote_images(folder: Location) -> tuple[list[Location], Labels | None]:
    """``list_images`` of a prefix of an object store: its objects listed once, recursively
    (``find``), in the order a local folder is read (names sorted, folder by folder), with
    labels when class sub-prefixes hold them. An image larger than ``MAX_ENCODED_BYTES`` is
    refused from the listing, before anything is fetched."""
    with storage_errors(folder):
        listing = remote_listing(folder)
    images: list[str] = []
    folders: set[str] = set()
    for name, info in listing.items():
        if not name or is_hidden(name):
            continue
        if info.get("type") == "directory" or name.endswith("/"):
            folders.add(name.rstrip("/"))
        elif is_image_name(name):
            check_encoded_size(f"{shown(folder)}/{name}", int(info.get("size") or 0))
            images.append(name)
    if not images:
        return [], None
    images.sort(key=parts_of)  # depth first, as ``walk`` visits a folder
    plan = plan_tree(folder, images, folders | parents(images), hint=FOLDER_HINT)
    return [folder.joinpath(*parts_of(name)) for name in images], labels_of(plan, folder)


def remote_listing(folder: Location) -> dict[str, dict[str, Any]]:
    """Every object and folder under the prefix ``folder``, by name relative to it."""
    filesystem = folder.fs  # type: ignore[union-attr]
    root = str(folder.path).rstrip("/")  # type: ignore[union-attr]
    found = filesystem.find(root, withdirs=True, detail=True)
    start = len(root) + 1
    return {key[start:]: info for key, info in found.items() if key.startswith(root + "/")}


def walk(root: Root, images: list[str], folders: list[str]) -> None:
    """Add the images and folders under ``root`` (names relative to it), depth first with
    names sorted. A link back to a folder it lies in is refused rather than followed for
    ever (its target is inside the root, so containment allows it)."""
    # (name, is a folder, real paths of the folders it lies in), next to visit on top
    stack: list[tuple[str, bool, frozenset[str]]] = [("", True, frozenset())]
    while stack:
        name, is_folder, above = stack.pop()
        if not is_folder:
            images.append(name)
            continue
        real = str(root.resolve(name))
        if real in above:
            raise InputError(
                f"{root.path / name}: is a link to a folder holding it; refusing to follow a loop"
            )
        if name:
            folders.append(name)
        within = above | {real}
        inside = [
            (found, entry.is_dir(), within)
            for found, entry in root.entries(name, wanted)
            if readable(root, found, entry)
        ]
        stack += sorted(inside, reverse=True)


def readable(root: Root, name: str, entry: os.DirEntry[str]) -> bool:
    """True for a folder or a regular file; anything else an image name or a class folder
    could be is refused rather than skipped (a class or an image would go missing)."""
    if entry.is_dir() or entry.is_file():
        return True
    if entry.is_symlink():
        raise InputError(f"{root.path / name}: is a link to nothing (dangling)")
    raise InputError(f"{root.path / name}: not a regular file (a FIFO, socket or device)")


def wanted(entry: os.DirEntry[str]) -> bool:
    """Folders and images (by their suffix), hidden ones aside, and links to nothing (which
    may have been a class folder: refused, not skipped)."""
    if is_hidden_part(entry.name):
        return False
    dangling = entry.is_symlink() and not entry.is_file() and not entry.is_dir()
    return is_image_name(entry.name) or entry.is_dir() or dangling


@dataclass
class FolderSource(Source):
    random_access: ClassVar[bool] = True
    mode: str = "L"
    size: tuple[int, int] = (0, 0)
    #: Whether the images are objects of an object store (fetched in batches).
    remote: bool = False

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.window(0, self.n_images, max_images)

    def read_window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        # The folder was scanned whole: every image has this size and a kind --mode fits
        # (the checks run again, in case a file changed since).
        expect = Expect(self.size, self.mode, strict=False, resize=self.resize)
        files = self.files[start:stop]
        items = fetched(files) if self.remote else (Encoded(str(path)) for path in files)
        backend = choose_backend(expect, stop - start)
        return decode_chunks(items, expect, max_images, backend=backend)


def open_folder(
    folder: Location, mode: str | None = None, resize: Resize | None = None
) -> FolderSource:
    """A folder of images, or a prefix of an object store holding them."""
    image_module = require_pillow()
    if mode is not None and mode not in MODES:
        raise InputError(f"--mode {mode}: choose L or RGB")
    remote = is_remote(folder)
    files, labels = list_remote_images(folder) if remote else list_images(folder)  # type: ignore[arg-type]
    if not files:
        raise InputError(f"{folder}: holds no PNG, JPEG, BMP or TIFF images")
    found = scan(image_module, files, one_size=resize is None, remote=remote)
    if mode is not None and "grey16" in found.kinds:
        refuse_mode_for_16_bits(found.kinds["grey16"])
    mode = choose_mode(folder, found) if mode is None else mode
    width, height = next(iter(found.sizes)) if resize is None else resize.size
    shape = (len(files), height, width) + ((3,) if mode == "RGB" else ())
    return FolderSource(
        name=folder.name,
        format="folder",
        shape=shape,
        layout="nhwc" if mode == "RGB" else "nhw",
        files=tuple(files),
        labels=labels,
        mode=mode,
        size=(width, height),
        resize=resize,
        dtype="uint16" if mode == GREY16 else "uint8",
        remote=remote,
    )
