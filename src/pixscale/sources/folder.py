"""Folders of PNG/JPEG/BMP/TIFF images; one sub-folder per class gives labels.

Only 8-bit images are read, and nothing is converted silently: 16-bit, 32-bit and float
images are refused (converting them to 8 bits would clip or wrap their values), images with
an alpha channel and folders mixing greyscale and colour need ``--mode`` to say what to do.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np

from pixscale.errors import InputError, PixscaleError
from pixscale.sources.base import MAX_IMAGE_VALUES, Labels, Source, UInt8Array

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MODES = ("L", "RGB")
#: 8-bit Pillow modes read as greyscale, and as colour.
GREY_MODES = ("L", "1")
COLOUR_MODES = ("RGB", "RGBX", "P")
#: Modes with an alpha channel, and the --mode that drops it without changing the rest.
ALPHA_MODES = {"LA": "L", "La": "L", "RGBA": "RGB", "RGBa": "RGB", "PA": "RGB"}
#: What the wide modes are, for the message that refuses them.
WIDE_MODES = {"I": "32-bit integer", "F": "32-bit float"}


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


def has_alpha(image: Any) -> bool:
    return image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)


def kind_of(path: Path, image: Any) -> str:
    """``grey`` or ``colour`` for an 8-bit image; anything wider or stranger is refused."""
    mode = image.mode
    if mode.startswith("I;16"):
        raise InputError(f"{path}: 16-bit image (mode {mode}): only 8-bit images are read")
    if mode in WIDE_MODES:
        raise InputError(
            f"{path}: {WIDE_MODES[mode]} image (mode {mode}): only 8-bit images are read"
        )
    if mode in GREY_MODES or ALPHA_MODES.get(mode) == "L":
        return "grey"
    if mode in COLOUR_MODES or mode in ALPHA_MODES:
        return "colour"
    raise InputError(
        f"{path}: image mode {mode} is neither greyscale nor RGB; only 8-bit L, 1, P and RGB "
        "images are read (RGBA and LA with --mode)"
    )


def refuse_alpha(path: Path, mode: str) -> None:
    """An alpha channel is dropped only when --mode says so."""
    drop = ALPHA_MODES.get(mode, "RGB")
    other, into = ("RGB", "colour") if drop == "L" else ("L", "greyscale")
    what = "transparency" if mode == "P" else "an alpha channel"
    raise InputError(
        f"{path}: has {what} (mode {mode}); use --mode {drop} to drop it, or --mode {other} "
        f"to convert to {into}"
    )


def check_declared_size(path: Path, image: Any) -> None:
    width, height = image.size
    if width * height > MAX_IMAGE_VALUES:
        raise InputError(
            f"{path}: declares a {width}×{height} image ({width * height:,} pixels), over the "
            f"limit of {MAX_IMAGE_VALUES:,} per image"
        )


def open_header(image_module: Any, handle: BinaryIO, path: Path) -> Any:
    """Open the image in ``handle``, reading its header only; a declared size past Pillow's
    decompression-bomb threshold (a warning or an error there) is an InputError here."""
    bomb_warning = image_module.DecompressionBombWarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", bomb_warning)
            image = image_module.open(handle)
    except (image_module.DecompressionBombError, bomb_warning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "a huge size"
        raise InputError(
            f"{path}: declares an image of {size}, over the limit of {MAX_IMAGE_VALUES:,} per "
            "image (decompression bomb?)"
        ) from exc
    check_declared_size(path, image)
    return image


def decode(image: Any, mode: str) -> Any:
    """The pixels of ``image`` in ``mode`` (L or RGB), alpha dropped."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # palette transparency, as Pillow recommends
    return np.asarray(image.convert(mode))


@contextmanager
def pillow_errors(path: Path, action: str) -> Iterator[None]:
    """Any exception from Pillow's decoders (they raise many kinds on damaged files)
    becomes an InputError naming ``path``; pixscale's own errors pass through."""
    try:
        yield
    except PixscaleError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot {action} image ({exc})") from exc


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
                chunk[row] = self.read(image_module, path)
            yield chunk

    def read(self, image_module: Any, path: Path) -> Any:
        with pillow_errors(path, "decode"), path.open("rb") as handle:
            image = image_module.open(handle)
            if image.size != self.size:
                raise InputError(
                    f"{path}: image is {image.size[0]}×{image.size[1]}, "
                    f"the others {self.size[0]}×{self.size[1]} (no silent resize)"
                )
            kind_of(path, image)  # the file may have changed since it was opened
            return decode(image, self.mode)


@dataclass
class Scan:
    """What the headers of a folder's images say: sizes and kinds, first file of each."""

    sizes: dict[tuple[int, int], Path]
    kinds: dict[str, Path]
    alpha: tuple[Path, str] | None = None


def scan(image_module: Any, files: list[Path]) -> Scan:
    """Read every header (Pillow decodes pixels lazily), refusing the first bad image."""
    found = Scan({}, {})
    for path in files:
        with pillow_errors(path, "read"), path.open("rb") as handle:
            image = open_header(image_module, handle, path)
            found.sizes.setdefault(image.size, path)
            found.kinds.setdefault(kind_of(path, image), path)
            if found.alpha is None and has_alpha(image):
                found.alpha = (path, image.mode)
        if len(found.sizes) > 1:
            (first_size, first), (size, _) = list(found.sizes.items())[:2]
            raise InputError(
                f"{path}: image is {size[0]}×{size[1]}, {first.name} is "
                f"{first_size[0]}×{first_size[1]} (no silent resize)"
            )
    return found


def choose_mode(folder: Path, found: Scan) -> str:
    """The mode the images say, when they agree and hold no alpha; else an error."""
    if found.alpha is not None:
        refuse_alpha(*found.alpha)
    if len(found.kinds) > 1:
        grey, colour = found.kinds["grey"], found.kinds["colour"]
        raise InputError(
            f"{folder}: mixes greyscale ({grey.name}) and colour ({colour.name}) images; "
            "choose one with --mode L or --mode RGB"
        )
    return "L" if "grey" in found.kinds else "RGB"


def open_folder(folder: Path, mode: str | None = None) -> FolderSource:
    image_module = require_pillow()
    if mode is not None and mode not in MODES:
        raise InputError(f"--mode {mode}: choose L or RGB")
    files, labels, classes = list_images(folder)
    if not files:
        raise InputError(f"{folder}: holds no PNG, JPEG, BMP or TIFF images")
    found = scan(image_module, files)
    mode = choose_mode(folder, found) if mode is None else mode
    width, height = next(iter(found.sizes))
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
