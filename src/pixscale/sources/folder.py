"""Folders of PNG/JPEG/BMP/TIFF images; one sub-folder per class gives labels.

A folder reads as the archive of it does (``tree``): folders every image shares
(``photos/train/<class>/``) are looked through, and images at mixed depths are refused.

Every header is read when the folder is opened, so that sizes and kinds are known (and the
first offender named) before anything is converted; the checks themselves are the ones all
image sources share (``pictures``), and pixels are decoded on every core (``parallel``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pixscale.core.containment import Root
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array
from pixscale.sources.parallel import choose_backend, decode_chunks
from pixscale.sources.pictures import (
    GREY16,
    IMAGE_SUFFIXES,
    MODES,
    Encoded,
    Expect,
    choose_mode,
    is_image_name,
    refuse_mode_for_16_bits,
    require_pillow,
    scan,
)
from pixscale.sources.resize import Resize
from pixscale.sources.tree import is_hidden_part, labels_of, plan_tree

__all__ = [
    "IMAGE_SUFFIXES",
    "MODES",
    "FolderSource",
    "list_images",
    "open_folder",
    "require_pillow",
]


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
    plan = plan_tree(
        folder, images, folders, hint="name the one folder to read, as in photos/train"
    )
    return [folder / name for name in images], labels_of(plan, folder)


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

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.window(0, self.n_images, max_images)

    def read_window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        # The folder was scanned whole: every image has this size and a kind --mode fits
        # (the checks run again, in case a file changed since).
        expect = Expect(self.size, self.mode, strict=False, resize=self.resize)
        items = (Encoded(str(path)) for path in self.files[start:stop])
        backend = choose_backend(expect, stop - start)
        return decode_chunks(items, expect, max_images, backend=backend)


def open_folder(
    folder: Path, mode: str | None = None, resize: Resize | None = None
) -> FolderSource:
    image_module = require_pillow()
    if mode is not None and mode not in MODES:
        raise InputError(f"--mode {mode}: choose L or RGB")
    files, labels = list_images(folder)
    if not files:
        raise InputError(f"{folder}: holds no PNG, JPEG, BMP or TIFF images")
    found = scan(image_module, files, one_size=resize is None)
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
    )
