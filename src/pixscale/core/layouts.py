"""Image layouts: their names, where their channels are, and moving between them.

``nf`` (flat vectors), ``nhw`` (greyscale), ``nhwc`` (channels last) and ``nchw``
(channels first); the first axis always counts images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.errors import ParamsError

#: Layouts an input array may be declared to have (``--input-layout``).
INPUT_LAYOUTS = ("nhw", "nhwc", "nchw")
#: Layouts an output may be written in (``--layout``).
OUTPUT_LAYOUTS = ("nhwc", "nchw")
#: Dimensions of a whole array (images included) in each layout.
LAYOUT_NDIM = {"nf": 2, "nhw": 3, "nhwc": 4, "nchw": 4}
#: Layout assumed by the number of array dimensions when a format does not say.
DEFAULT_LAYOUTS = {2: "nf", 3: "nhw", 4: "nhwc"}
#: Position of the channel axis inside one image, by layout.
CHANNEL_AXES: dict[str, int | None] = {"nf": None, "nhw": None, "nhwc": 2, "nchw": 0}


def default_layout(ndim: int) -> str:
    """The layout assumed for an array of ``ndim`` dimensions (first axis: images)."""
    return DEFAULT_LAYOUTS.get(ndim, "n" + "d" * (ndim - 1))


def channel_axis_of(layout: str) -> int | None:
    """Index of the channel axis within one image, or None for single-channel layouts."""
    return CHANNEL_AXES.get(layout)


def _check(source: str, target: str) -> None:
    if source == target:
        return
    if source not in ("nhw", "nhwc", "nchw") or target not in OUTPUT_LAYOUTS:
        raise ParamsError(f"cannot write layout {target} from {source} data")


def convert_layout(chunk: npt.NDArray[Any], source: str, target: str) -> npt.NDArray[Any]:
    """``chunk`` (layout ``source``) in layout ``target``; NHW gains a channel axis of 1."""
    _check(source, target)
    if source == target:
        return chunk
    if source == "nhw":
        return chunk[:, None] if target == "nchw" else chunk[..., None]
    order = (0, 3, 1, 2) if target == "nchw" else (0, 2, 3, 1)
    return np.ascontiguousarray(chunk.transpose(order))


def restore_layout(chunk: npt.NDArray[Any], source: str, target: str) -> npt.NDArray[Any]:
    """Undo ``convert_layout(…, source, target)``."""
    if source == target:
        return chunk
    if source == "nhw":
        return chunk[:, 0] if target == "nchw" else chunk[..., 0]
    order = (0, 2, 3, 1) if target == "nchw" else (0, 3, 1, 2)
    return np.ascontiguousarray(chunk.transpose(order))


def layout_shape(shape: tuple[int, ...], source: str, target: str) -> tuple[int, ...]:
    """The shape of one image of a ``source``-layout array once in layout ``target``."""
    _check(source, target)
    return tuple(convert_layout(np.empty((1, *shape[1:]), np.uint8), source, target).shape[1:])


def output_shape(shape: tuple[int, ...], source: str, target: str) -> tuple[int, ...]:
    """The shape of a whole ``source``-layout array once in layout ``target``."""
    return (shape[0], *layout_shape(shape, source, target))
