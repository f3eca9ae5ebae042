"""``--resize WxH``: images of any size brought to one size as they are decoded.

Three fits, each a Pillow function: ``stretch`` (``Image.resize``, the aspect ratio is not
kept), ``crop`` (``ImageOps.fit``: the largest centred region of the target's aspect ratio,
then resized) and ``pad`` (``ImageOps.pad``: resized to fit inside, centred on black). The
resampling filter is named (``bilinear`` by default, as torchvision's ``Resize``).

JPEG images are decoded at reduced size where that still leaves at least the pixels the
resize needs (Pillow's ``draft``: the decoder's DCT scaling by 1/2, 1/4 or 1/8). That is
much faster for large photos and changes values only slightly (the reduction averages in
the frequency domain, the filter then finishes the resize); ``draft=False`` decodes every
pixel. The record keeps all of it, so a run can be repeated exactly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pixscale.errors import ParamsError
from pixscale.sources.base import MAX_IMAGE_VALUES

FITS = ("stretch", "crop", "pad")
FILTERS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
#: Largest width or height ``--resize`` accepts.
MAX_SIDE = 1 << 15


@dataclass(frozen=True)
class Resize:
    """How images are brought to one size.

    Parameters
    ----------
    width, height
        The size every image gets, in pixels.
    fit
        ``stretch``, ``crop`` or ``pad`` (see the module's description).
    filter
        The resampling filter: one of ``FILTERS``.
    draft
        Decode JPEG images at reduced size where the resize allows it.
    """

    width: int
    height: int
    fit: str = "stretch"
    filter: str = "bilinear"
    draft: bool = True

    def __post_init__(self) -> None:
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE):
            raise ParamsError(
                f"--resize {self.width}x{self.height}: width and height must be 1..{MAX_SIDE}"
            )
        if self.width * self.height > MAX_IMAGE_VALUES:
            raise ParamsError(
                f"--resize {self.width}x{self.height}: over the limit of "
                f"{MAX_IMAGE_VALUES:,} pixels per image"
            )
        if self.fit not in FITS:
            raise ParamsError(f"unknown fit {self.fit!r}; choose from {', '.join(FITS)}")
        if self.filter not in FILTERS:
            raise ParamsError(f"unknown filter {self.filter!r}; choose from {', '.join(FILTERS)}")

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``, as Pillow takes sizes."""
        return self.width, self.height

    def record(self) -> dict[str, Any]:
        """What the parameter record keeps of it (``source.resize``)."""
        return {
            "size": [self.width, self.height],
            "fit": self.fit,
            "filter": self.filter,
            "jpeg_draft": self.draft,
        }

    def describe(self) -> str:
        """``128x128, crop, bilinear`` for messages."""
        return f"{self.width}x{self.height}, {self.fit}, {self.filter}"


def parse_size(text: str) -> tuple[int, int]:
    """``"128x128"`` (or ``128X96``, ``128×96``) as ``(width, height)``."""
    found = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if found is None:
        raise ParamsError(f"--resize {text!r}: give WIDTHxHEIGHT, e.g. 128x128")
    return int(found.group(1)), int(found.group(2))


def recorded_resize(record: Any) -> Resize:
    """The ``Resize`` a parameter record's ``source.resize`` describes (``Resize.record``).

    Raises
    ------
    ParamsError
        When the record's entry is not one ``Resize.record`` writes.
    """
    try:
        width, height = (int(v) for v in record["size"])
        return Resize(
            width, height, str(record["fit"]), str(record["filter"]), bool(record["jpeg_draft"])
        )
    except (KeyError, TypeError, ValueError, ParamsError) as exc:
        raise ParamsError(f"the record's source.resize is not understood: {record!r:.80}") from exc


def draft_size(resize: Resize, width: int, height: int) -> tuple[int, int]:
    """The smallest decoded size from which ``resize`` still has all the pixels it uses:
    the whole image scaled as the fit scales it."""
    if resize.fit == "stretch":
        return resize.size
    scales = (resize.width / width, resize.height / height)
    scale = max(scales) if resize.fit == "crop" else min(scales)
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def prepare(image: Any, resize: Resize | None) -> None:
    """Before decoding: ask a JPEG decoder for a reduced size where ``resize`` allows it."""
    if resize is None or not resize.draft or getattr(image, "format", None) != "JPEG":
        return
    width, height = image.size
    wanted = draft_size(resize, width, height)
    if wanted[0] < width and wanted[1] < height:
        image.draft(None, wanted)


def apply(image: Any, resize: Resize | None) -> Any:
    """The decoded image brought to ``resize.size`` (unchanged when ``resize`` is None or
    the image already has that size)."""
    if resize is None or image.size == resize.size:
        return image
    from PIL import Image, ImageOps

    method = Image.Resampling[resize.filter.upper()]
    if resize.fit == "crop":
        return ImageOps.fit(image, resize.size, method=method)
    if resize.fit == "pad":
        return ImageOps.pad(image, resize.size, method=method, color=0)
    return image.resize(resize.size, method)
