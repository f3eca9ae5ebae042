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
from typing import Any

from pixscale.core.resize import FILTERS as FILTERS
from pixscale.core.resize import FITS as FITS
from pixscale.core.resize import Resize as Resize
from pixscale.core.resize import parse_size as parse_size
from pixscale.core.resize import recorded_resize as recorded_resize


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
