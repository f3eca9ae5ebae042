"""Moving between image layouts: NHW, NHWC (channels last) and NCHW (channels first)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.errors import ParamsError

LAYOUTS = ("nhwc", "nchw")


def _check(source: str, target: str) -> None:
    if source == target:
        return
    if source not in ("nhw", "nhwc", "nchw") or target not in LAYOUTS:
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
    """The shape of a ``source``-layout array once in layout ``target``."""
    _check(source, target)
    return tuple(convert_layout(np.empty((1, *shape[1:]), np.uint8), source, target).shape[1:])


def output_shape(shape: tuple[int, ...], source: str, target: str) -> tuple[int, ...]:
    return (shape[0], *layout_shape(shape, source, target))
