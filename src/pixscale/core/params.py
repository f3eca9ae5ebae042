"""The parameter record: what was done to the pixels, complete enough to redo or undo it.

Every strategy is the affine map, per scope element,

    y = (x - source_low) * target_span / source_span + target_low  (= x * scale + offset)

evaluated in float64 and rounded once to float32. The record stores the four
defining numbers; ``scale`` and ``offset`` are derived and stored for readers. Sources
other than full-range uint8 add ``source_dtype`` (``"uint16"``) and ``bits`` (the bit depth
the data may use), which fix the inputs kernels are proven on and ``invert`` gives back.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale._version import __version__
from pixscale.core.pixels import SOURCE_DTYPES, check_bits, dtype_bits, max_value
from pixscale.errors import ParamsError

FORMAT = "pixscale.params/1"
FORMULA = "y = (x - source_low) * target_span / source_span + target_low = x * scale + offset"

#: Arrays up to this many values are written inline in JSON; larger ones (per-image or
#: per-pixel parameters) go into HDF5 datasets or a .npz beside a .npy output, because
#: HDF5 attributes are limited to 64 KiB.
INLINE_LIMIT = 1024

Float64Array = npt.NDArray[np.float64]
ARRAY_FIELDS = ("source_low", "source_span")

STRATEGIES = ("unit", "range", "symmetric", "standardize", "none")
#: (source_low, source_span, target_low, target_span) of the fixed strategies; a span of
#: ``None`` is the source's largest value (255, 65535, or 2**bits - 1).
FIXED: dict[str, tuple[float, float | None, float, float]] = {
    "unit": (0.0, None, 0.0, 1.0),
    "symmetric": (0.0, None, -1.0, 2.0),
    "none": (0.0, 1.0, 0.0, 1.0),
}
SCOPES = ("global", "channel", "pixel", "image")
ZERO_STD_POLICIES = ("unit", "error")
#: The largest finite float32; outputs beyond it would be written as inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Params:
    """The transform applied to every pixel, plus how it was obtained."""

    strategy: str
    scope: str
    source_low: Float64Array
    source_span: Float64Array
    target_low: float
    target_span: float
    layout: str
    channel_axis: int | None
    image_shape: tuple[int, ...]
    clip: bool = False
    stats: dict[str, Any] | None = None
    zero_std: dict[str, Any] | None = None
    fitted_on: dict[str, Any] | None = None
    #: The source pixels' dtype, ``"uint8"`` or ``"uint16"``.
    source_dtype: str = "uint8"
    #: Bits the source pixels may use (``--bits``; the dtype's width by default).
    bits: int = 8

    def __post_init__(self) -> None:
        validate(self)

    @property
    def value_max(self) -> int:
        """The largest source pixel value the data may hold."""
        return max_value(self.bits)

    @property
    def dtype_max(self) -> int:
        """The largest value of the source dtype."""
        return max_value(dtype_bits(self.source_dtype))

    @property
    def scale(self) -> Float64Array:
        return np.asarray(self.target_span / self.source_span, np.float64)

    @property
    def offset(self) -> Float64Array:
        return np.asarray(self.target_low - self.source_low * self.scale, np.float64)

    @property
    def target_range(self) -> tuple[float, float]:
        return (self.target_low, self.target_low + self.target_span)

    def to_record(self, arrays_external: bool = False) -> dict[str, Any]:
        """The JSON-ready record; large arrays become ``{"array": NAME}`` references."""

        def encode(name: str, values: Float64Array) -> Any:
            if arrays_external and self.stored_apart(values):
                return {"array": name, "shape": list(values.shape)}
            return values.tolist()

        record: dict[str, Any] = {
            "format": FORMAT,
            "pixscale_version": __version__,
            "strategy": self.strategy,
            "scope": self.scope,
            "formula": FORMULA,
            "source_low": encode("source_low", self.source_low),
            "source_span": encode("source_span", self.source_span),
            "target_low": self.target_low,
            "target_span": self.target_span,
            "scale": encode("scale", self.scale),
            "offset": encode("offset", self.offset),
            "clip": self.clip,
            "layout": self.layout,
            "channel_axis": self.channel_axis,
            "image_shape": list(self.image_shape),
        }
        if self.strategy != "standardize":  # standardize has no target range, only 0 and 1
            record["target_range"] = list(self.target_range)
        if (self.source_dtype, self.bits) != ("uint8", 8):  # uint8 records stay as they were
            record["source_dtype"] = self.source_dtype
            record["bits"] = self.bits
        if self.stats is not None:
            record["stats"] = self.stats
        if self.zero_std is not None:
            record["zero_std"] = self.zero_std
        if self.fitted_on is not None:
            record["fitted_on"] = self.fitted_on
        return record

    def external_arrays(self) -> dict[str, Float64Array]:
        """Arrays that ``to_record(arrays_external=True)`` left out of the JSON."""
        arrays = {
            "source_low": self.source_low,
            "source_span": self.source_span,
            "scale": self.scale,
            "offset": self.offset,
        }
        return {name: a for name, a in arrays.items() if self.stored_apart(a)}

    def stored_apart(self, values: Float64Array) -> bool:
        """Per-image and large arrays live beside the record in output files."""
        return self.scope == "image" or values.size > INLINE_LIMIT

    @classmethod
    def from_record(
        cls, record: dict[str, Any], arrays: dict[str, Float64Array] | None = None
    ) -> Params:
        """Rebuild from a record; ``arrays`` resolves ``{"array": NAME}`` references."""
        if record.get("format") != FORMAT:
            raise ParamsError(f"not a {FORMAT} record (format={record.get('format')!r})")
        try:
            values = {name: _decode(record[name], arrays or {}, name) for name in ARRAY_FIELDS}
            axis = record["channel_axis"]
            params = cls(
                strategy=_text(record["strategy"], "strategy"),
                scope=_text(record["scope"], "scope"),
                source_low=values["source_low"],
                source_span=values["source_span"],
                target_low=_number(record["target_low"], "target_low"),
                target_span=_number(record["target_span"], "target_span"),
                layout=_text(record["layout"], "layout"),
                channel_axis=None if axis is None else _integer(axis, "channel_axis"),
                image_shape=_integers(record["image_shape"], "image_shape"),
                clip=record.get("clip", False),
                stats=record.get("stats"),
                zero_std=record.get("zero_std"),
                fitted_on=record.get("fitted_on"),
                **pixel_fields(record),
            )
            check_derived(params, record, arrays or {})
            return params
        except KeyError as exc:
            raise ParamsError(f"parameter record lacks the field {exc.args[0]!r}") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            raise ParamsError(f"parameter record is malformed: {exc}") from exc


#: Fields of a record derived from the four defining numbers, and how.
DERIVED = {"scale": "target_span / source_span", "offset": "target_low - source_low * scale"}


def check_derived(params: Params, record: dict[str, Any], arrays: dict[str, Float64Array]) -> None:
    """The record's ``scale`` and ``offset`` (inline, or stored arrays), where present, are
    exactly those the four defining numbers give.

    The four numbers are authoritative; a derived field that disagrees means the record was
    changed after it was written, and which of its numbers to trust cannot be told. Every
    reader of records (``--params-from``, ``Scaler.load``, ``invert``, ``verify``,
    ``pixscale.open``) builds its ``Params`` through ``from_record`` and so refuses it.

    Raises
    ------
    ParamsError
        Naming the field and the value the defining numbers give.
    """
    for name, formula in DERIVED.items():
        if name not in record:
            continue
        value = record[name]
        found = _decode(value, arrays, name)
        expected = getattr(params, name)
        if found.size != expected.size:
            raise ParamsError(
                f"{name} holds {found.size} values, the parameters {expected.size}: "
                "the record is inconsistent"
            )
        differ = int(np.count_nonzero(found.reshape(expected.shape) != expected))
        if differ:
            shown = f"{differ} values differ"
            if expected.size == 1:
                shown = f"which gives {float(expected.ravel()[0])!r}"
            raise ParamsError(
                f"{name} disagrees with {formula} ({shown}): the record is inconsistent"
            )


def pixel_fields(record: dict[str, Any]) -> dict[str, Any]:
    """``source_dtype`` and ``bits`` of a record (uint8, 8 bits when absent)."""
    dtype = _text(record.get("source_dtype", "uint8"), "source_dtype")
    if dtype not in SOURCE_DTYPES:
        raise ParamsError(f"source_dtype {dtype!r} is not one of {SOURCE_DTYPES}")
    bits = _integer(record.get("bits", dtype_bits(dtype)), "bits")
    return {"source_dtype": dtype, "bits": bits}


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ParamsError(f"{name} must be a string, not {type(value).__name__}")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamsError(f"{name} must be a number, not {type(value).__name__}")
    return float(value)


def _integers(value: Any, name: str) -> tuple[int, ...]:
    """A record's list of integers (a shape), each checked."""
    if not isinstance(value, list):
        raise ParamsError(f"{name} must be a list of integers, not {value!r}")
    return tuple(_integer(n, name) for n in value)


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamsError(f"{name} must hold integers, not {value!r}")
    return value


def validate(params: Params) -> None:
    """The one validation point: every way parameters enter (fitted, given, a params JSON,
    an output's record or its arrays, a ``Scaler``) builds a ``Params`` and so passes here.

    Raises
    ------
    ParamsError
        Naming the first field that is unknown, non-finite, zero where it divides, of the
        wrong shape for the scope, or that would send outputs beyond float32's range.
    """
    if params.strategy not in STRATEGIES:
        raise ParamsError(f"unknown strategy {params.strategy!r}; choose from {STRATEGIES}")
    if params.scope not in SCOPES:
        raise ParamsError(f"unknown scope {params.scope!r}; choose from {SCOPES}")
    if not isinstance(params.clip, bool):
        raise ParamsError(f"clip must be true or false, not {params.clip!r}")
    if params.source_dtype not in SOURCE_DTYPES:
        raise ParamsError(f"source_dtype {params.source_dtype!r} is not one of {SOURCE_DTYPES}")
    check_bits(params.bits, params.source_dtype)
    _check_geometry(params)
    for name in ("target_low", "target_span"):
        value = getattr(params, name)
        if not isinstance(value, float) or not math.isfinite(value):
            raise ParamsError(f"{name} must be a finite number, not {value!r}")
    if params.target_span == 0:
        raise ParamsError("target_span is 0: every output would be the same value")
    for name in ARRAY_FIELDS:
        _check_array(params, name)
    with np.errstate(all="ignore"):
        scale, offset = params.scale, params.offset
        reach = np.maximum(np.abs(offset), np.abs(offset + params.value_max * scale))
    if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(offset))):
        raise ParamsError("scale or offset is not finite (a source_span too small?)")
    largest = max((abs(v) for v in params.target_range), default=0.0)
    if not params.clip and reach.size:
        largest = float(np.max(reach))
    if largest > FLOAT32_MAX:
        raise ParamsError(f"outputs would reach {largest:.3g}, beyond float32's range")
    _check_sections(params)
    _check_spread(params)
    _check_fixed(params)


def _check_fixed(params: Params) -> None:
    """A fixed strategy's record holds that strategy's own four numbers (a record naming
    ``none`` with the numbers of ``unit`` would describe its values wrongly)."""
    fixed = FIXED.get(params.strategy)
    if fixed is None:
        return
    low, span, target_low, target_span = fixed
    expected = (low, params.value_max if span is None else span, target_low, target_span)
    found = (params.source_low, params.source_span, params.target_low, params.target_span)
    if not all(np.all(np.asarray(f) == e) for f, e in zip(found, expected, strict=True)):
        raise ParamsError(
            f"strategy {params.strategy} maps with source_low, source_span, target_low, "
            f"target_span = {', '.join(f'{v:g}' for v in expected)}; the record holds other "
            "numbers: the record is inconsistent"
        )


def _check_geometry(params: Params) -> None:
    shape = params.image_shape
    if not shape or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ParamsError(f"image_shape must be positive integers, not {list(shape)}")
    axis = params.channel_axis
    if axis is not None and not (isinstance(axis, int) and 0 <= axis < len(shape)):
        raise ParamsError(f"channel_axis {axis!r} does not fit images of shape {list(shape)}")
    if not re.fullmatch(r"n(f|hw|hwc|chw|d+)", str(params.layout)):
        raise ParamsError(f"unknown layout {params.layout!r}")


def _check_array(params: Params, name: str) -> None:
    values = getattr(params, name)
    if not isinstance(values, np.ndarray) or values.dtype != np.float64:
        raise ParamsError(f"{name} must be float64 numbers")
    if not np.all(np.isfinite(values)):
        raise ParamsError(f"{name} holds non-finite values")
    if name == "source_span" and np.any(values == 0):
        raise ParamsError("source_span holds 0: the map would divide by zero")
    expected = _expected_shapes(params)
    if values.size != 1 and values.shape not in expected and params.scope != "image":
        raise ParamsError(
            f"{name} has shape {values.shape}, {params.scope} scope on images of shape "
            f"{params.image_shape} needs {' or '.join(str(s) for s in expected)}"
        )
    if params.scope == "image" and values.ndim != 1:
        raise ParamsError(f"{name} of per-image parameters must be 1-D, not {values.shape}")


def _expected_shapes(params: Params) -> list[tuple[int, ...]]:
    if params.scope == "pixel":
        return [params.image_shape]
    if params.scope == "channel" and params.channel_axis is not None:
        return [(params.image_shape[params.channel_axis],)]
    return [()]


def _check_sections(params: Params) -> None:
    for name in ("stats", "zero_std", "fitted_on"):
        value = getattr(params, name)
        if value is not None and not isinstance(value, dict):
            raise ParamsError(f"{name} must be an object, not {type(value).__name__}")
    zero = params.zero_std
    if zero is not None:
        if zero.get("policy") not in ZERO_STD_POLICIES:
            policy = zero.get("policy")
            raise ParamsError(f"zero_std policy {policy!r} is not one of {ZERO_STD_POLICIES}")
        count = zero.get("constant_count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ParamsError(f"zero_std constant_count must be a count, not {count!r}")


#: Statistics a fitted strategy maps from: (low, top) fields of ``stats``, the span being
#: ``top - low``, or ``top`` itself when ``low`` is also the centre (standardize).
FITTED_FROM = {"standardize": ("mean", "std"), "range": ("min", "max")}


def _check_spread(params: Params) -> None:
    """Spreads are positive where they divide and never negative where they are recorded;
    the defining numbers of a fitted strategy are those its recorded statistics give."""
    if params.strategy == "standardize" and np.any(params.source_span < 0):
        raise ParamsError(
            "source_span holds a negative std: standardize divides by a standard deviation, "
            "which is never negative"
        )
    stats = params.stats
    if not stats:
        return
    for name in ("std", "std_unit"):
        if name in stats and np.any(_stat(stats, name) < 0):
            raise ParamsError(f"stats.{name} holds a negative value: a std is never negative")
    names = FITTED_FROM.get(params.strategy)
    if names is None or not all(name in stats for name in names):
        return
    low, top = (_stat(stats, name) for name in names)
    spread = top if params.strategy == "standardize" else top - low
    span = np.where(spread == 0, 1.0, spread)  # constant data: centred only (zero_std)
    for name, implied in (("source_low", low), ("source_span", span)):
        values = getattr(params, name)
        if implied.size != values.size or np.any(implied.reshape(values.shape) != values):
            raise ParamsError(
                f"{name} disagrees with the recorded stats ({' and '.join(names)}): "
                "the record is inconsistent"
            )


def _stat(stats: dict[str, Any], name: str) -> Float64Array:
    """``stats[name]`` as finite float64 numbers."""
    found = numbers(stats[name], f"stats.{name}")
    if not np.all(np.isfinite(found)):
        raise ParamsError(f"stats.{name} holds non-finite values")
    return found


def numbers(value: Any, field: str) -> Float64Array:
    """``value`` (a number or nested lists of numbers, as JSON gives them) as float64;
    strings, booleans, nulls and ragged lists are refused, naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float | list):
        raise ParamsError(f"{field} must hold numbers, found {type(value).__name__}")
    try:
        found = np.asarray(value)
    except ValueError:
        raise ParamsError(f"{field} must hold numbers in a regular array") from None
    if found.dtype.kind not in "iuf":
        kinds = {"U": "text", "S": "text", "b": "true/false", "O": "nulls or mixed values"}
        raise ParamsError(
            f"{field} must hold numbers, found {kinds.get(found.dtype.kind, found.dtype)}"
        )
    return found.astype(np.float64)


def _decode(value: Any, arrays: dict[str, Float64Array], field: str) -> Float64Array:
    if isinstance(value, dict):
        name = value.get("array")
        if name not in arrays:
            raise ParamsError(f"parameter array {name!r} is referenced but not stored")
        stored = np.asarray(arrays[name])
        if stored.dtype.kind not in "iuf":
            raise ParamsError(f"parameter array {name!r} holds {stored.dtype}, not numbers")
        return stored.astype(np.float64)
    return numbers(value, field)


def dumps(record: dict[str, Any]) -> str:
    """Deterministic JSON (sorted keys, no NaN) for byte-reproducible outputs."""
    return json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"
