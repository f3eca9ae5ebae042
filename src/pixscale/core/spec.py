"""Named strategies and scopes, and how each becomes a parameter record."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pixscale.core.params import FIXED, SCOPES, STRATEGIES, ZERO_STD_POLICIES, Params
from pixscale.core.pixels import SOURCE_DTYPES, check_bits, dtype_bits, max_value
from pixscale.core.stats import ScopeStats
from pixscale.errors import ParamsError


@dataclass(frozen=True)
class Spec:
    """What the user asked for; fitted strategies still need data statistics."""

    strategy: str = "unit"
    scope: str = "global"
    source_range: tuple[float, float] | None = None
    target_range: tuple[float, float] | None = None
    from_data: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    clip: bool = False
    zero_std: str = "unit"
    #: Bits the source pixels use (``--bits``, 1..16): the fixed strategies map from
    #: 0..2**bits - 1 and larger values are an error. None: the dtype's width.
    bits: int | None = None

    def __post_init__(self) -> None:
        if self.bits is not None:
            check_bits(self.bits, "uint16")
        if self.strategy not in STRATEGIES:
            raise ParamsError(f"unknown strategy {self.strategy!r}; choose from {STRATEGIES}")
        if self.scope not in SCOPES:
            raise ParamsError(f"unknown scope {self.scope!r}; choose from {SCOPES}")
        if self.zero_std not in ZERO_STD_POLICIES:
            raise ParamsError(f"unknown zero-std policy {self.zero_std!r}")
        if self.strategy != "range" and (self.source_range or self.target_range or self.from_data):
            raise ParamsError("--from, --to and --from-data apply to the range strategy only")
        if self.strategy != "standardize" and (self.mean or self.std):
            raise ParamsError("--mean and --std apply to the standardize strategy only")
        for name in ("source_range", "target_range", "mean", "std"):
            values = getattr(self, name)
            if values is not None and not all(
                isinstance(v, int | float) and math.isfinite(v) for v in values
            ):
                flag = {"source_range": "--from", "target_range": "--to"}.get(name, f"--{name}")
                raise ParamsError(f"{flag} needs finite numbers, got {list(values)}")
        if (self.mean is None) != (self.std is None):
            raise ParamsError("give both --mean and --std, or neither")
        if self.source_range and self.from_data:
            raise ParamsError("--from and --from-data exclude each other")
        if self.source_range and self.source_range[0] == self.source_range[1]:
            raise ParamsError("--from LO HI needs LO != HI")
        if self.target_range and self.target_range[0] == self.target_range[1]:
            raise ParamsError("--to A B needs A != B")
        if self.clip and self.strategy != "range":
            raise ParamsError("--clip applies to the range strategy only")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ParamsError("--std values must be positive")
        constants = self.mean is not None and self.scope in ("global", "channel")
        if self.scope != "global" and not (self.needs_stats or constants):
            raise ParamsError(
                f"--scope {self.scope} needs fitted statistics: use -s standardize "
                "or -s range --from-data"
            )

    @property
    def needs_dataset_stats(self) -> bool:
        """True when a statistics pass over the whole dataset comes first."""
        return self.needs_stats and self.scope != "image"

    @property
    def needs_stats(self) -> bool:
        return (self.strategy == "standardize" and self.mean is None) or self.from_data


@dataclass(frozen=True)
class Geometry:
    """What the parameters must fit: one image's shape and where its channels are."""

    image_shape: tuple[int, ...]
    layout: str
    channel_axis: int | None
    #: The source pixels' dtype, ``"uint8"`` or ``"uint16"``.
    dtype: str = "uint8"

    def __post_init__(self) -> None:
        if self.dtype not in SOURCE_DTYPES:
            raise ParamsError(f"unknown source dtype {self.dtype!r}; choose from {SOURCE_DTYPES}")

    @property
    def n_channels(self) -> int:
        return 1 if self.channel_axis is None else self.image_shape[self.channel_axis]


def build_params(spec: Spec, geometry: Geometry, stats: ScopeStats | None = None) -> Params:
    """The record for ``spec`` on data of ``geometry`` (``stats`` for fitted strategies)."""
    zero_std = None
    stats_record = None
    lows: np.ndarray
    spans: np.ndarray
    bits = (
        dtype_bits(geometry.dtype) if spec.bits is None else check_bits(spec.bits, geometry.dtype)
    )
    top = float(max_value(bits))
    if spec.strategy in FIXED:
        low, span, out_low, out_span = FIXED[spec.strategy]
        lows, spans = np.asarray(low), np.asarray(top if span is None else span)
    elif spec.strategy == "range" and not spec.from_data:
        lo, hi = spec.source_range or (0.0, top)
        a, b = spec.target_range or (0.0, 1.0)
        lows, spans, out_low, out_span = np.asarray(lo), np.asarray(hi - lo), a, b - a
    elif spec.strategy == "standardize" and spec.mean is not None and spec.std is not None:
        lows, spans = given_constants(spec, geometry, top)
        out_low, out_span = 0.0, 1.0
    else:
        if stats is None:
            raise ParamsError(f"strategy {spec.strategy} needs statistics of the data")
        if spec.strategy == "standardize":
            lows, spans, out_low, out_span = stats.mean, stats.std.copy(), 0.0, 1.0
        else:
            a, b = spec.target_range or (0.0, 1.0)
            lows, spans = stats.minimum, stats.maximum - stats.minimum
            out_low, out_span = a, b - a
        spans, zero_std = guard_zero_spans(spans, spec.zero_std, spec.scope)
        if spec.scope in ("global", "channel"):
            stats_record = stats_summary(stats, top)
    scope = "channel" if spec.mean is not None and len(spec.mean) > 1 else spec.scope
    return Params(
        strategy=spec.strategy,
        scope=scope,
        source_low=np.asarray(lows, np.float64),
        source_span=np.asarray(spans, np.float64),
        target_low=float(out_low),
        target_span=float(out_span),
        layout=geometry.layout,
        channel_axis=geometry.channel_axis,
        image_shape=geometry.image_shape,
        clip=spec.clip,
        stats=stats_record,
        zero_std=zero_std,
        source_dtype=geometry.dtype,
        bits=bits,
    )


def given_constants(
    spec: Spec, geometry: Geometry, top: float = 255.0
) -> tuple[np.ndarray, np.ndarray]:
    """--mean/--std in [0, 1] units (as torchvision quotes them) to raw pixel units (times
    ``top``, the largest source value)."""
    assert spec.mean is not None and spec.std is not None
    if len(spec.mean) != len(spec.std):
        raise ParamsError(f"{len(spec.mean)} --mean values but {len(spec.std)} --std values")
    if len(spec.mean) not in (1, geometry.n_channels):
        raise ParamsError(
            f"{len(spec.mean)} --mean values for data with {geometry.n_channels} channel(s)"
        )
    mean = np.asarray(spec.mean, np.float64) * top
    std = np.asarray(spec.std, np.float64) * top
    return (mean[:1].reshape(()), std[:1].reshape(())) if len(mean) == 1 else (mean, std)


def guard_zero_spans(
    spans: np.ndarray, policy: str, scope: str
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Replace zero spans (constant data) by 1 after centring, or refuse."""
    constant = spans == 0
    if not constant.any():
        return spans, None
    where = np.argwhere(constant).tolist() if spans.ndim else []
    count = int(constant.sum())
    if policy == "error":
        raise ParamsError(
            f"{count} constant {scope} element(s) have zero spread; "
            "use --zero-std unit to centre them only"
        )
    spans = np.where(constant, 1.0, spans)
    record: dict[str, Any] = {"policy": policy, "constant_count": count}
    if len(where) <= 1024:
        record["constant"] = where
    return spans, record


def stats_summary(stats: ScopeStats, top: float = 255.0) -> dict[str, Any]:
    """Statistics in raw pixel units and in [0, 1] units (divided by ``top``, the largest
    source value), for the record."""
    return {
        "count": stats.count,
        "ddof": 0,
        "min": stats.minimum.tolist(),
        "max": stats.maximum.tolist(),
        "mean": stats.mean.tolist(),
        "std": stats.std.tolist(),
        "mean_unit": (stats.mean / top).tolist(),
        "std_unit": (stats.std / top).tolist(),
    }
