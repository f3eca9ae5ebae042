"""The parameter record: what was done to the pixels, complete enough to redo or undo it.

Every strategy is the affine map, per scope element,

    y = (x - source_low) * target_span / source_span + target_low  (= x * scale + offset)

evaluated in float64 and rounded once to float32. The record stores the four
defining numbers; ``scale`` and ``offset`` are derived and stored for readers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale._version import __version__
from pixscale.errors import ParamsError

FORMAT = "pixscale.params/1"
FORMULA = "y = (x - source_low) * target_span / source_span + target_low = x * scale + offset"

#: Arrays up to this many values are written inline in JSON; larger ones (per-image or
#: per-pixel parameters) go into HDF5 datasets or a .npz beside a .npy output, because
#: HDF5 attributes are limited to 64 KiB.
INLINE_LIMIT = 1024

Float64Array = npt.NDArray[np.float64]
ARRAY_FIELDS = ("source_low", "source_span")


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

    @property
    def scale(self) -> Float64Array:
        return np.asarray(self.target_span / self.source_span, np.float64)

    @property
    def offset(self) -> Float64Array:
        return np.asarray(self.target_low - self.source_low * self.scale, np.float64)

    @property
    def target_range(self) -> tuple[float, float]:
        return (self.target_low, self.target_low + self.target_span)

    def with_fitted_on(self, fitted_on: dict[str, Any]) -> Params:
        return replace(self, fitted_on=fitted_on)

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
            values = {name: _decode(record[name], arrays or {}) for name in ARRAY_FIELDS}
            axis = record["channel_axis"]
            return cls(
                strategy=str(record["strategy"]),
                scope=str(record["scope"]),
                source_low=values["source_low"],
                source_span=values["source_span"],
                target_low=float(record["target_low"]),
                target_span=float(record["target_span"]),
                layout=str(record["layout"]),
                channel_axis=None if axis is None else int(axis),
                image_shape=tuple(int(n) for n in record["image_shape"]),
                clip=bool(record.get("clip", False)),
                stats=record.get("stats"),
                zero_std=record.get("zero_std"),
                fitted_on=record.get("fitted_on"),
            )
        except KeyError as exc:
            raise ParamsError(f"parameter record lacks the field {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ParamsError(f"parameter record is malformed: {exc}") from exc


def _decode(value: Any, arrays: dict[str, Float64Array]) -> Float64Array:
    if isinstance(value, dict):
        name = value.get("array")
        if name not in arrays:
            raise ParamsError(f"parameter array {name!r} is referenced but not stored")
        return np.asarray(arrays[name], np.float64)
    decoded = np.asarray(value, np.float64)
    if not np.all(np.isfinite(decoded)):
        raise ParamsError("parameter record holds non-finite values")
    return decoded


def dumps(record: dict[str, Any]) -> str:
    """Deterministic JSON (sorted keys, no NaN) for byte-reproducible outputs."""
    return json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"


def loads(text: str, origin: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsError(f"{origin}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(record, dict):
        raise ParamsError(f"{origin}: not a parameter record")
    return record
