"""What a file holds: format, shape, layout, labels, per-channel statistics, its record."""

from __future__ import annotations

from typing import Any

import numpy as np

from pixscale.core.location import PathOrUrl, is_remote, locate
from pixscale.engine.scan import DEFAULT_CHUNK_MB, dataset_sums
from pixscale.errors import InputError
from pixscale.sources import Source, open_source
from pixscale.store.backends import backend_of
from pixscale.store.naming import is_pixscale_output
from pixscale.store.reader import ConvertedFile, open_converted


def source_info(source: Source, chunk_mb: float = DEFAULT_CHUNK_MB) -> dict[str, Any]:
    """Format, shape, dtype, layout, labels and exact per-channel statistics of a uint8 or
    uint16 source."""
    stats = dataset_sums(source, chunk_mb).reduce("channel", source.channel_axis)
    info: dict[str, Any] = {
        "file": source.name,
        "kind": "input",
        "format": source.format,
        "shape": list(source.shape),
        "dtype": source.dtype,
        "layout": source.layout,
        "channels": source.n_channels,
        "stats": {
            "min": stats.minimum.tolist(),
            "max": stats.maximum.tolist(),
            "mean": stats.mean.tolist(),
            "std": stats.std.tolist(),
            "exact": True,
        },
    }
    info.update(source.details())
    info.update(
        labels_info(
            source.labels.values if source.labels else None,
            source.labels.class_names if source.labels else None,
        )
    )
    return info


def labels_info(labels: np.ndarray | None, names: list[str] | None) -> dict[str, Any]:
    if labels is None:
        return {"labels": None}
    classes = np.unique(labels)
    return {"labels": int(labels.size), "classes": int(classes.size), "class_names": names}


def output_info(converted: ConvertedFile) -> dict[str, Any]:
    """Shape, layout and per-channel statistics of the float32 values, plus the record."""
    record = converted.record
    params = converted.params
    axis = params.channel_axis
    channel = None if axis is None else axis + 1  # in chunks, axis 0 is the image index
    reduce_axes = tuple(a for a in range(len(converted.shape)) if a != channel)
    count, total, squares = 0, 0.0, 0.0
    low, high = np.inf, -np.inf
    for chunk in converted.chunks(converted.chunk_rows):
        values = chunk.astype(np.float64)
        if not np.all(np.isfinite(values)):  # no pixscale output holds them
            raise InputError(f"{converted.path}: holds inf or NaN values (damaged output)")
        count += values.size // (1 if channel is None else values.shape[channel])
        total = total + values.sum(axis=reduce_axes)
        squares = squares + (values * values).sum(axis=reduce_axes)
        low = np.minimum(low, values.min(axis=reduce_axes))
        high = np.maximum(high, values.max(axis=reduce_axes))
    mean = np.atleast_1d(np.asarray(total) / count)
    std = np.sqrt(np.maximum(np.atleast_1d(np.asarray(squares) / count) - mean * mean, 0))
    info: dict[str, Any] = {
        "file": converted.path.name,
        "kind": "pixscale output",
        "format": str((record.get("output") or {}).get("format") or output_format(converted)),
        "shape": list(converted.stored_shape),
        "dtype": str(converted.dtype),
        "values": converted.value_dtype,
        "store": "uint8" if converted.packed else "float",
        "layout": converted.layout,
        "stats": {
            "min": np.atleast_1d(low).tolist(),
            "max": np.atleast_1d(high).tolist(),
            "mean": mean.tolist(),
            "std": std.tolist(),
            "exact": False,
        },
        "strategy": record["strategy"],
        "scope": record["scope"],
        "parameters": parameters_info(record),
        "source": record.get("source"),
        "fitted_on": record.get("fitted_on"),
        "record": record,
    }
    info.update(labels_info(converted.labels, record.get("output", {}).get("class_names")))
    return info


def parameters_info(record: dict[str, Any]) -> dict[str, Any]:
    """The defining numbers in raw pixel units and in [0, 1] units (inline ones only; the
    unit is the source's largest value: 255, 65535, or 2**bits - 1)."""
    shown: dict[str, Any] = {}
    bits = record.get("bits", 8)
    top = float((1 << bits) - 1) if isinstance(bits, int) and 1 <= bits <= 16 else 255.0
    for name in ("source_low", "source_span"):
        value = record[name]
        if isinstance(value, dict):
            shown[name] = f"array {value.get('shape')} stored in {value.get('array')}"
            continue
        values = np.atleast_1d(np.asarray(value, np.float64))
        shown[name] = values.tolist()
        shown[name + "_unit"] = (values / top).tolist()
    if "target_range" in record:
        shown["target_range"] = record["target_range"]
    if "source_dtype" in record:
        shown["source_pixels"] = f"{record['source_dtype']}, {record.get('bits')} bits"
    return shown


def describe_path(
    path: PathOrUrl, chunk_mb: float = DEFAULT_CHUNK_MB, **reading: Any
) -> dict[str, Any]:
    """``info`` for any input format (opened with the input options ``reading``) or
    pixscale output (a path or URL)."""
    path = locate(path, reading.get("storage_options"))
    if not is_remote(path) and not path.exists():
        raise InputError(f"{path}: no such file")
    if is_pixscale_output(path):
        return output_info(open_converted(path))
    return source_info(open_source(path, **reading), chunk_mb)


def output_format(converted: ConvertedFile) -> str:
    """The format of an output whose record does not say (older records): its backend's."""
    backend = backend_of(converted.path)
    return backend.name if backend is not None else "unknown"
