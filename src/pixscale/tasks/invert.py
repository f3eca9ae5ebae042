"""invert: back to the exact uint8 images, using only the record."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.transform import Transform
from pixscale.errors import InputError
from pixscale.sources import open_recorded_source
from pixscale.store.io.atomic import staged_outputs
from pixscale.store.reader import ConvertedFile, open_converted
from pixscale.store.uint8 import Uint8Writer

#: Images per chunk when reading float32 outputs back (about 4 MiB of MNIST).
DEFAULT_CHUNK_IMAGES = 1024

PathLike = str | os.PathLike[str]


@dataclass
class InvertReport:
    images: int = 0
    not_round_trip: int = 0
    at_clip_bounds: int = 0
    source_mismatches: int | None = None

    @property
    def lossy(self) -> bool:
        return self.not_round_trip > 0 or self.at_clip_bounds > 0


def pixels_of(converted: ConvertedFile) -> Iterator[tuple[int, npt.NDArray[np.uint8], int, int]]:
    """(start, uint8 images, values that do not round-trip, values at clip bounds)."""
    transform = Transform(converted.params)
    bounds = clip_bounds(converted)
    start = 0
    for values in converted.chunks(converted.chunk_rows):
        pixels, mismatches = transform.invert(values, start)
        clipped = 0
        if bounds is not None:
            clipped = int(np.count_nonzero((values == bounds[0]) | (values == bounds[1])))
        yield start, pixels, mismatches, clipped
        start += values.shape[0]


def clip_bounds(converted: ConvertedFile) -> tuple[np.float32, np.float32] | None:
    """The float32 bounds when --clip could have merged several inputs into one value."""
    params = converted.params
    if not params.clip:
        return None
    low, high = sorted(params.target_range)
    return np.float32(low), np.float32(high)


def invert(
    path: PathLike,
    output: PathLike,
    *,
    overwrite: bool = False,
    verify_source: PathLike | None = None,
    **reading: Any,
) -> InvertReport:
    """Write the uint8 images that ``path`` was converted from, using only its record.

    Parameters
    ----------
    path
        A pixscale output (.h5 or .npy with its sidecar).
    output
        The uint8 file to write: .npy, .h5, or an IDX name (``…-idx3-ubyte[.gz]``).
    overwrite
        Replace an existing ``output`` (atomically).
    verify_source
        The original input: count the pixels that differ from it.
    **reading
        Input options for ``verify_source`` (``key``, ``mode``, ``layout``); by default
        those the record names.

    Returns
    -------
    InvertReport
        Images written, values that do not round-trip, clipped values, source mismatches.
    """
    path, output = Path(path), Path(output)
    converted = open_converted(path)
    source = None
    if verify_source is not None:
        source = open_recorded_source(verify_source, converted.record, reading)
    if source is not None and source.shape != converted.shape:
        raise InputError(f"{verify_source}: shape {source.shape} differs from {converted.shape}")
    report = InvertReport(images=converted.shape[0])
    originals = source.chunks(converted.chunk_rows) if source is not None else None
    if source is not None:
        report.source_mismatches = 0
    inputs = [path] + ([Path(verify_source)] if verify_source else [])
    with staged_outputs(overwrite, inputs) as staged:
        writer = Uint8Writer(output, converted.shape, staged)
        try:
            pending: npt.NDArray[np.uint8] | None = None
            for _, pixels, mismatches, clipped in pixels_of(converted):
                writer.write(pixels)
                report.not_round_trip += mismatches
                report.at_clip_bounds += clipped
                if originals is not None:
                    pending = compare(pixels, originals, pending, report)
            writer.finish(converted.labels)
        finally:
            writer.close()
    return report


def compare(
    pixels: npt.NDArray[np.uint8],
    originals: Iterator[npt.NDArray[np.uint8]],
    pending: npt.NDArray[np.uint8] | None,
    report: InvertReport,
) -> npt.NDArray[np.uint8] | None:
    """Count differing pixels; source chunks may not line up with output chunks."""
    done = 0
    while done < pixels.shape[0]:
        if pending is None or pending.shape[0] == 0:
            pending = next(originals)
        take = min(pending.shape[0], pixels.shape[0] - done)
        differ = np.count_nonzero(pending[:take] != pixels[done : done + take])
        report.source_mismatches = (report.source_mismatches or 0) + int(differ)
        pending, done = pending[take:], done + take
    return pending


def describe(report: InvertReport) -> list[str]:
    """Human-readable lines for the CLI."""
    lines: list[str] = []
    if report.at_clip_bounds:
        lines.append(
            f"Warning: lossy: {report.at_clip_bounds} values sit at the --clip bounds; "
            "they were inverted to the nearest in-range pixel"
        )
    if report.not_round_trip:
        lines.append(f"Warning: {report.not_round_trip} values do not map back exactly")
    if report.source_mismatches is not None:
        lines.append(f"{report.source_mismatches} pixels differ from the source")
    return lines


__all__ = ["InvertReport", "describe", "invert"]
