"""Encoded images (PNG/JPEG/BMP/TIFF) through Pillow: the checks every image source shares.

8-bit images are read as uint8 and 16-bit greyscale images (PNG, TIFF) as uint16, and
nothing is converted silently: 16-bit colour images (which Pillow would read at 8 bits),
32-bit and float images are refused, a dataset mixing 8- and 16-bit images is refused, and
images with an alpha channel and datasets mixing greyscale and colour need ``--mode`` to
say what to do. CMYK images (print JPEGs) need ``--mode`` too: it converts them with
Pillow's ``convert``, a fixed formula that is not colour-managed (an embedded ICC profile
is ignored).
Images on an object store are fetched whole, a batch of objects at a time and concurrently
(``fetched``): one request per image, none waiting for the one before.
A declared size over ``MAX_IMAGE_VALUES`` (or Pillow's decompression-bomb threshold), and
an image of more than one frame (a multi-page TIFF, an animated PNG, GIF or WebP, whose
other frames would be lost), are refused from the header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from pixscale.core.location import (
    Location,
    open_bytes,
    shown,
    storage_exceptions,
    storage_reason,
)
from pixscale.core.pixels import PILLOW_16BIT_MODES
from pixscale.errors import InputError, PixscaleError
from pixscale.sources.base import MAX_IMAGE_VALUES
from pixscale.sources.plain_png import plain_png_pixels
from pixscale.sources.resize import Resize
from pixscale.sources.resize import apply as resized

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MODES = ("L", "RGB")
#: 8-bit Pillow modes read as greyscale, and as colour.
GREY_MODES = ("L", "1")
COLOUR_MODES = ("RGB", "RGBX", "P")
#: Modes with an alpha channel, and the --mode that drops it without changing the rest.
ALPHA_MODES = {"LA": "L", "La": "L", "RGBA": "RGB", "RGBa": "RGB", "PA": "RGB"}
#: Printers' colours: converted to ``--mode`` by Pillow, refused without one.
CMYK_MODE = "CMYK"
#: What the wide modes are, for the message that refuses them.
WIDE_MODES = {"I": "32-bit integer", "F": "32-bit float"}
#: The mode 16-bit greyscale images are read in (``I;16B`` and ``I`` are brought to it).
GREY16 = "I;16"
#: Largest encoded image read into memory whole (an archive member, a Parquet cell): far
#: more than any 8-bit image of ``MAX_IMAGE_VALUES`` needs, even stored uncompressed.
MAX_ENCODED_BYTES = 256 << 20
#: Objects fetched at once from an object store, concurrently (``fetched``).
FETCH_BATCH = 64


def require_pillow(purpose: str = "reading image folders") -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise InputError(f"{purpose} needs Pillow: pip install 'pixscale[images]'") from exc
    return Image


def is_image_name(name: str) -> bool:
    """Whether a file or member name has one of the image suffixes (any case)."""
    return name.lower().endswith(IMAGE_SUFFIXES)


@dataclass(frozen=True)
class Encoded:
    """One encoded image: its bytes, or the file holding them, and the name errors give.

    ``origin`` is a path (``photos/cats/001.png``), a URL or an archive and member
    (``photos.zip:cats/001.png``); without ``data`` the image is read from ``location``
    (a local path or a URL, which pickles with its storage options), else from the file
    ``origin`` names.
    """

    origin: str
    data: bytes | None = None
    location: Location | None = None

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.location is not None:
            return open_bytes(self.location)
        return Path(self.origin).open("rb")


def fetched(files: Sequence[Location]) -> Iterator[Encoded]:
    """Remote images with their bytes, in the order given: ``FETCH_BATCH`` objects at a time
    fetched concurrently (fsspec's ``cat_ranges``). An object that cannot be fetched is
    refused, naming its URL and why.

    All ``files`` are on one filesystem (one folder's), and each within
    ``MAX_ENCODED_BYTES`` (its listing checked the sizes).
    """
    for start in range(0, len(files), FETCH_BATCH):
        batch = files[start : start + FETCH_BATCH]
        filesystem = batch[0].fs  # type: ignore[union-attr]
        paths = [location.path for location in batch]  # type: ignore[union-attr]
        try:
            found = filesystem.cat_ranges(paths, None, None, on_error="return")
        except storage_exceptions() as exc:
            raise InputError(f"{shown(batch[0])}: cannot open: {storage_reason(exc)}") from exc
        for location, data in zip(batch, found, strict=True):
            if isinstance(data, BaseException):
                raise InputError(f"{shown(location)}: cannot open: {storage_reason(data)}")
            yield Encoded(shown(location), bytes(data), location)


@dataclass(frozen=True)
class Expect:
    """What every image of a dataset must be: its size and kind, and the mode to decode to.

    ``strict`` (no ``--mode`` given) also refuses images of another kind and images with
    alpha; with a ``--mode`` both are converted to it.
    """

    size: tuple[int, int]
    mode: str
    strict: bool
    #: ``--resize``: images of any size are brought to ``size``.
    resize: Resize | None = None

    @property
    def kind(self) -> str:
        return {"L": "grey", GREY16: "grey16"}.get(self.mode, "colour")

    @property
    def dtype(self) -> str:
        """``uint16`` for 16-bit greyscale images, else ``uint8``."""
        return "uint16" if self.mode == GREY16 else "uint8"

    @property
    def shape(self) -> tuple[int, ...]:
        width, height = self.size
        return (height, width, 3) if self.mode == "RGB" else (height, width)


def has_alpha(image: Any) -> bool:
    return image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)


def kind_of(origin: str | Location, image: Any) -> str:
    """``grey`` or ``colour`` for an 8-bit image; anything wider or stranger is refused."""
    mode = image.mode
    if mode in PILLOW_16BIT_MODES and mode not in WIDE_MODES:
        return "grey16"
    if mode in WIDE_MODES:
        raise InputError(
            f"{origin}: {WIDE_MODES[mode]} image (mode {mode}): only 8-bit images and 16-bit "
            "greyscale images are read"
        )
    if any(";16" in str(tile.args) for tile in getattr(image, "tile", None) or ()):
        raise InputError(
            f"{origin}: 16-bit colour image: Pillow would read it at 8 bits; only 16-bit "
            "greyscale images are read at 16 bits"
        )
    if mode in GREY_MODES or ALPHA_MODES.get(mode) == "L":
        return "grey"
    if mode in COLOUR_MODES or mode in ALPHA_MODES:
        return "colour"
    if mode == CMYK_MODE:
        return "cmyk"
    raise InputError(
        f"{origin}: image mode {mode} is neither greyscale nor RGB; only 8-bit L, 1, P and RGB "
        "images are read (RGBA, LA and CMYK with --mode)"
    )


def refuse_cmyk(origin: str | Location) -> None:
    """A CMYK image is converted only when --mode says so."""
    raise InputError(
        f"{origin}: CMYK image; use --mode RGB to convert it (Pillow's conversion, not "
        "colour-managed)"
    )


def refuse_alpha(origin: str | Location, mode: str) -> None:
    """An alpha channel is dropped only when --mode says so."""
    drop = ALPHA_MODES.get(mode, "RGB")
    other, into = ("RGB", "colour") if drop == "L" else ("L", "greyscale")
    what = "transparency" if mode == "P" else "an alpha channel"
    raise InputError(
        f"{origin}: has {what} (mode {mode}); use --mode {drop} to drop it, or --mode {other} "
        f"to convert to {into}"
    )


def check_declared_size(origin: str | Location, image: Any) -> None:
    width, height = image.size
    if width * height > MAX_IMAGE_VALUES:
        raise InputError(
            f"{origin}: declares a {width}×{height} image ({width * height:,} pixels), over the "
            f"limit of {MAX_IMAGE_VALUES:,} per image"
        )


def check_frames(origin: str | Location, image: Any) -> None:
    """Refuse an image of more than one frame: only the first would be read."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise InputError(
            f"{origin}: holds {frames} frames (a multi-page or animated image); only "
            "single-frame images are read, the other frames would be lost"
        )


def check_encoded_size(origin: str, size: int) -> None:
    """Refuse an encoded image too large to be read into memory whole."""
    if size > MAX_ENCODED_BYTES:
        raise InputError(
            f"{origin}: {size:,} bytes, over the limit of {MAX_ENCODED_BYTES:,} bytes for one "
            "encoded image"
        )


@contextmanager
def bomb_guard(image_module: Any) -> Iterator[None]:
    """Within the block, Pillow's decompression-bomb warning is an error (which
    ``read_header`` turns into an InputError): one guard for a whole batch of headers.

    Enter it from one thread at a time: ``warnings.catch_warnings`` is process-wide.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", image_module.DecompressionBombWarning)
        yield


def open_header(image_module: Any, handle: BinaryIO, origin: str | Location) -> Any:
    """Open the image in ``handle``, reading its header only; a declared size past Pillow's
    decompression-bomb threshold (a warning or an error there) is an InputError here.

    Call it from one thread at a time: ``warnings.catch_warnings`` is process-wide.
    """
    with bomb_guard(image_module):
        return read_header(image_module, handle, origin)


def read_header(image_module: Any, handle: BinaryIO, origin: str | Location) -> Any:
    """``open_header`` inside a ``bomb_guard`` the caller holds: the header read and the
    checks it allows (declared size, frames), no pixel decoded."""
    try:
        image = image_module.open(handle)
    except (image_module.DecompressionBombError, image_module.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "a huge size"
        raise InputError(
            f"{origin}: declares an image of {size}, over the limit of {MAX_IMAGE_VALUES:,} per "
            "image (decompression bomb?)"
        ) from exc
    check_declared_size(origin, image)
    check_frames(origin, image)
    return image


def to_pixels(image: Any, mode: str, resize: Resize | None = None) -> npt.NDArray[Any]:
    """The pixels of ``image`` in ``mode`` (L or RGB), alpha dropped, resized if asked:
    libpng's for a plain PNG where the ``fast`` extra is installed (``plain_png``), else
    Pillow's."""
    if resize is None and (pixels := plain_png_pixels(image, mode, MAX_ENCODED_BYTES)) is not None:
        return pixels
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # palette transparency, as Pillow recommends
    if mode == GREY16:
        return grey16_pixels(image, resize)
    if image.mode != mode:
        image = image.convert(mode)
    image = resized(image, resize)
    # the packed bytes as an array: what ``np.asarray(image)`` gives, without building
    # the array interface for each small image
    width, height = image.size
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    return np.frombuffer(image.tobytes(), np.uint8).reshape(shape)


def grey16_pixels(image: Any, resize: Resize | None) -> npt.NDArray[np.uint16]:
    """A 16-bit greyscale image's pixels as native uint16 (resized in ``I;16``)."""
    if image.mode != GREY16:  # big-endian I;16B, or 32-bit I holding 16-bit values
        values = np.asarray(image)
        if values.size and (int(values.min()) < 0 or int(values.max()) > 65535):
            raise ValueError(f"values {values.min()}..{values.max()} are not 16-bit")
        from PIL import Image

        image = Image.fromarray(values.astype(np.uint16))
    return np.asarray(resized(image, resize)).astype(np.uint16, copy=False)


@contextmanager
def pillow_errors(origin: str | Location, action: str) -> Iterator[None]:
    """Any exception from Pillow's decoders (they raise many kinds on damaged files)
    becomes an InputError naming ``origin``; pixscale's own errors pass through."""
    try:
        yield
    except PixscaleError:
        raise
    except Exception as exc:
        raise InputError(f"{origin}: cannot {action} image ({exc})") from exc


def resize_advice(size: tuple[int, int]) -> str:
    """How to convert images of several sizes: ``--resize`` to one of them."""
    return f"give --resize {size[0]}x{size[1]} (WxH) to bring every image to one size"


def check_image(origin: str, image: Any, expect: Expect) -> None:
    """Refuse an opened image that does not fit the dataset ``expect`` describes."""
    if expect.resize is None and image.size != expect.size:
        raise InputError(
            f"{origin}: image is {image.size[0]}×{image.size[1]}, "
            f"the others {expect.size[0]}×{expect.size[1]} (no silent resize); "
            f"{resize_advice(expect.size)}"
        )
    kind = kind_of(origin, image)
    if (kind == "grey16") != (expect.kind == "grey16"):
        this, others = ("16-bit", "8-bit") if kind == "grey16" else ("8-bit", "16-bit")
        raise InputError(f"{origin}: {this} image, the others are {others}")
    if not expect.strict:
        return
    if kind == "cmyk":
        refuse_cmyk(origin)
    if has_alpha(image):
        refuse_alpha(origin, image.mode)
    if kind != expect.kind:
        this, others = ("colour", "greyscale") if kind == "colour" else ("greyscale", "colour")
        raise InputError(
            f"{origin}: {this} image, the others are {others}; choose one with --mode L or "
            "--mode RGB"
        )


def expect_of(origin: str, image: Any, mode: str | None, resize: Resize | None = None) -> Expect:
    """What the rest of a dataset must be, from its first image (opened), ``--mode`` and
    ``--resize``."""
    if mode is not None and mode not in MODES:
        raise InputError(f"--mode {mode}: choose L or RGB")
    kind = kind_of(origin, image)
    if kind == "grey16" and mode is not None:
        refuse_mode_for_16_bits(origin)
    if mode is None and kind == "cmyk":
        refuse_cmyk(origin)
    if mode is None and has_alpha(image):
        refuse_alpha(origin, image.mode)
    chosen = mode or {"grey": "L", "grey16": GREY16}.get(kind, "RGB")
    size = image.size if resize is None else resize.size
    return Expect(size, chosen, strict=mode is None, resize=resize)


def image_fields(expect: Expect, count: int) -> dict[str, Any]:
    """The ``Source`` fields an image source of ``count`` images takes from its ``expect``."""
    return {
        "shape": (count, *expect.shape),
        "layout": "nhwc" if expect.mode == "RGB" else "nhw",
        "expect": expect,
        "resize": expect.resize,
        "dtype": expect.dtype,
    }


def first_expect(
    image_module: Any, item: Encoded, mode: str | None, resize: Resize | None = None
) -> Expect:
    """``expect_of`` the first image of a dataset, read from its header."""
    with pillow_errors(item.origin, "read"), item.open() as handle:
        image = open_header(image_module, handle, item.origin)
        return expect_of(item.origin, image, mode, resize)


@dataclass
class Scan:
    """What the headers of a set of images say: sizes and kinds, first image of each."""

    sizes: dict[tuple[int, int], Location]
    kinds: dict[str, Location]
    alpha: tuple[Location, str] | None = None


def opened(files: Sequence[Location], remote: bool) -> Iterator[tuple[Location, BinaryIO]]:
    """Each of ``files`` with a binary file of it: local files opened one by one, remote
    objects fetched in concurrent batches (``fetched``)."""
    if remote:
        for item in fetched(files):
            assert item.location is not None and item.data is not None
            yield item.location, io.BytesIO(item.data)
        return
    for path in files:
        with pillow_errors(path, "read"):
            handle = path.open("rb")
        yield path, handle


def scan(
    image_module: Any, files: Sequence[Location], one_size: bool = True, remote: bool = False
) -> Scan:
    """Read every header (Pillow decodes pixels lazily), refusing the first bad image (and,
    with ``one_size``, the first of another size); ``remote`` files are objects of one
    object store."""
    found = Scan({}, {})
    for path, opened_file in opened(files, remote):
        with pillow_errors(path, "read"), opened_file as handle:
            image = open_header(image_module, handle, path)
            found.sizes.setdefault(image.size, path)
            found.kinds.setdefault(kind_of(path, image), path)
            if found.alpha is None and has_alpha(image):
                found.alpha = (path, image.mode)
        if one_size and len(found.sizes) > 1:
            (first_size, first), (size, _) = list(found.sizes.items())[:2]
            raise InputError(
                f"{path}: image is {size[0]}×{size[1]}, {first.name} is "
                f"{first_size[0]}×{first_size[1]} (no silent resize); {resize_advice(first_size)}"
            )
    return found


def refuse_mode_for_16_bits(origin: str | Location) -> None:
    raise InputError(
        f"{origin}: 16-bit greyscale images are read as they are; --mode would convert them "
        "to 8 bits (drop it)"
    )


def choose_mode(folder: Location, found: Scan) -> str:
    """The mode the images say, when they agree and hold no alpha; else an error."""
    if "grey16" in found.kinds:
        if len(found.kinds) > 1:
            wide = found.kinds["grey16"]
            narrow = next(path for kind, path in found.kinds.items() if kind != "grey16")
            raise InputError(
                f"{folder}: mixes 16-bit ({wide.name}) and 8-bit ({narrow.name}) images"
            )
        return GREY16
    if "cmyk" in found.kinds:
        refuse_cmyk(found.kinds["cmyk"])
    if found.alpha is not None:
        refuse_alpha(*found.alpha)
    if len(found.kinds) > 1:
        grey, colour = found.kinds["grey"], found.kinds["colour"]
        raise InputError(
            f"{folder}: mixes greyscale ({grey.name}) and colour ({colour.name}) images; "
            "choose one with --mode L or --mode RGB"
        )
    return "L" if "grey" in found.kinds else "RGB"
