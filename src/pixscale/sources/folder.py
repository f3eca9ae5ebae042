"""Folders of PNG/JPEG/BMP/TIFF images; one sub-folder per class gives labels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MODES = ("L", "RGB")
GREY_MODES = ("L", "1")


def require_pillow(purpose: str = "reading image folders") -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise InputError(f"{purpose} needs Pillow: pip install 'pixscale[images]'") from exc
    return Image


def list_images(folder: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """Files in a deterministic order, with class indices when sub-folders name classes."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def images_in(where: Path) -> list[Path]:
        return sorted(
            p
            for p in where.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )

    if not classes:
        return images_in(folder), None, None
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = images_in(folder / name)
        files += found
        labels += [index] * len(found)
    return files, labels, classes


@dataclass
class FolderSource(Source):
    random_access: ClassVar[bool] = True
    mode: str = "L"
    size: tuple[int, int] = (0, 0)

    def chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.window(0, self.n_images, max_images)

    def window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        image_module = require_pillow()
        for first in range(start, stop, max_images):
            batch = self.files[first : min(first + max_images, stop)]
            chunk = np.empty((len(batch), *self.image_shape), np.uint8)
            for row, path in enumerate(batch):
                try:
                    with image_module.open(path) as image:
                        if image.size != self.size:
                            raise InputError(
                                f"{path}: image is {image.size[0]}×{image.size[1]}, "
                                f"the others {self.size[0]}×{self.size[1]} (no silent resize)"
                            )
                        chunk[row] = np.asarray(image.convert(self.mode))
                except OSError as exc:
                    raise InputError(f"{path}: cannot decode image ({exc})") from exc
            yield chunk


def open_folder(folder: Path, mode: str | None = None) -> FolderSource:
    image_module = require_pillow()
    files, labels, classes = list_images(folder)
    if not files:
        raise InputError(f"{folder}: holds no PNG, JPEG, BMP or TIFF images")
    sizes: dict[tuple[int, int], Path] = {}
    modes: set[str] = set()
    for path in files:  # headers only: Pillow decodes pixels lazily
        try:
            with image_module.open(path) as image:
                sizes.setdefault(image.size, path)
                modes.add(image.mode)
        except OSError as exc:
            raise InputError(f"{path}: cannot read image ({exc})") from exc
        if len(sizes) > 1:
            (first_size, first), (size, _) = list(sizes.items())[:2]
            raise InputError(
                f"{path}: image is {size[0]}×{size[1]}, {first.name} is "
                f"{first_size[0]}×{first_size[1]} (no silent resize)"
            )
    if mode is None:
        mode = "L" if modes <= set(GREY_MODES) else "RGB"
    if mode not in MODES:
        raise InputError(f"--mode {mode}: choose L or RGB")
    width, height = next(iter(sizes))
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
    )
