"""What ``--resize WxH`` asks for, as the record keeps it: the part both the readers (which
apply it with Pillow, ``sources/resize.py``) and the readers of outputs (which check a
record's ``source.resize``) share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pixscale.core.pixels import MAX_IMAGE_VALUES
from pixscale.errors import ParamsError

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
