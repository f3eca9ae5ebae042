"""Parameters in the form and units each training framework expects."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from pixscale.core.params import Params
from pixscale.errors import ParamsError

TARGETS = ("torchvision", "keras", "albumentations", "dali", "json")


def normalize_constants(params: Params) -> tuple[list[float], list[float]]:
    """(mean, std) in raw 0-255 units such that y = (x - mean) / std.

    Every strategy is affine, so it is one Normalize: mean = source_low - target_low ·
    source_span / target_span and std = source_span / target_span.
    """
    if params.scope not in ("global", "channel"):
        raise ParamsError(
            f"{params.scope} scope has one parameter per {params.scope}; "
            "no framework Normalize takes that, use the converted output instead"
        )
    divisor = params.source_span / params.target_span
    centre = params.source_low - params.target_low * divisor
    return np.atleast_1d(centre).tolist(), np.atleast_1d(divisor).tolist()


def significant(value: float, digits: int | None) -> float:
    """``value`` to ``digits`` decimal places, or to ``digits`` significant digits where that
    is closer (so a small std never rounds to 0)."""
    if digits is None:
        return value
    places, figures = round(value, digits), float(f"{value:.{digits}g}")
    return places if abs(places - value) <= abs(figures - value) else figures


def _numbers(values: list[float], digits: int | None) -> str:
    shown = [repr(significant(v, digits)) for v in values]
    return "(" + ", ".join(shown) + ("," if len(shown) == 1 else "") + ")"


def export(params: Params, target: str, digits: int | None = 4) -> str:
    """One snippet for ``target`` in that framework's form and units.

    Parameters
    ----------
    params
        Parameters of global or channel scope.
    target
        One of ``TARGETS``.
    digits
        Decimal places, or significant digits for small numbers; None: full precision.
    """
    if digits is not None and digits < 1:
        raise ParamsError(f"digits must be at least 1, not {digits}")
    mean, std = normalize_constants(params)
    unit_mean, unit_std = [m / 255 for m in mean], [s / 255 for s in std]
    note = "# clip is not part of Normalize\n" if params.clip else ""
    m, sd = _numbers(unit_mean, digits), _numbers(unit_std, digits)
    raw_mean, raw_std = _round(mean, digits), _round(std, digits)
    variance = _numbers([s * s for s in std], digits)
    snippets: dict[str, Callable[[], str]] = {
        "torchvision": lambda: f"transforms.Normalize(mean={m}, std={sd})  # after ToTensor()",
        "albumentations": lambda: f"A.Normalize(mean={m}, std={sd}, max_pixel_value=255.0)",
        "keras": lambda: (
            f"keras.layers.Normalization(mean={_numbers(mean, digits)}, variance={variance})"
            "  # on 0-255 pixels"
        ),
        "dali": lambda: (
            f"fn.crop_mirror_normalize(images, mean={raw_mean}, std={raw_std})  # 0-255 units"
        ),
        "json": lambda: json.dumps(
            {
                "mean": raw_mean,
                "std": raw_std,
                "mean_unit": _round(unit_mean, digits),
                "std_unit": _round(unit_std, digits),
                "formula": "y = (x - mean) / std; x in 0-255 (mean, std) or in [0,1] (*_unit)",
            },
            allow_nan=False,
        ),
    }
    if target not in snippets:
        raise ParamsError(f"unknown export target {target!r}; choose from {TARGETS}")
    return note + snippets[target]()


def _round(values: list[float], digits: int | None) -> list[float]:
    return [significant(v, digits) for v in values]
