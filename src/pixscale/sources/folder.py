"""Folders of PNG/JPEG/BMP/TIFF images; one sub-folder per class gives labels.

Every header is read when the folder is opened, so that sizes and kinds are known (and the
first offender named) before anything is converted; the checks themselves are the ones all
image sources share (``pictures``), and pixels are decoded on every core (``parallel``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

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
    refuse_mode_for_16_bits,
    require_pillow,
    scan,
)
from pixscale.sources.resize import Resize

__all__ = [
    "IMAGE_SUFFIXES",
    "MODES",
    "FolderSource",
    "list_images",
    "open_folder",
    "require_pillow",
]


def list_images(folder: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """Files in a deterministic order, with class indices when sub-folders name classes.

    Only files inside ``folder`` are listed: a class folder or an image that is a link
    leading out of it is refused, naming the link (``containment``).
    """
    root = Root(folder)
    classes = sorted(
        name for name, _ in root.entries("", lambda e: e.is_dir() and not is_hidden(e.name))
    )

    def images_in(where: str) -> list[Path]:
        found = root.entries(where, lambda e: is_image(e.name) and not e.is_dir())
        return sorted(folder / name for name, entry in found if entry.is_file())

    if not classes:
        return images_in(""), None, None
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = images_in(name)
        files += found
        labels += [index] * len(found)
    return files, labels, classes


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def is_image(name: str) -> bool:
    """An image's name: a known suffix, not hidden."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not is_hidden(name)


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
    files, labels, classes = list_images(folder)
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
        labels=None if labels is None else Labels(np.asarray(labels), "sub-folders", classes),
        mode=mode,
        size=(width, height),
        resize=resize,
        dtype="uint16" if mode == GREY16 else "uint8",
    )
