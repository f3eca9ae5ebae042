"""invert and verify: back to the exact uint8, and checking an output against its record."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pixscale.errors import InputError
from pixscale.outputs import ConvertedFile, open_converted
from pixscale.params import FORMAT
from pixscale.sources import Source, open_source
from pixscale.transform import Transform
from pixscale.writers.atomic import staged_outputs
from pixscale.writers.uint8 import Uint8Writer

#: Images per chunk when reading float32 outputs back (about 4 MiB of MNIST).
DEFAULT_CHUNK_IMAGES = 1024


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
    path: Path, output: Path, *, overwrite: bool = False, verify_source: Path | None = None
) -> InvertReport:
    """Write the uint8 images that ``path`` was converted from, using only its record."""
    converted = open_converted(path)
    source = open_source(verify_source) if verify_source is not None else None
    if source is not None and source.shape != converted.shape:
        raise InputError(f"{verify_source}: shape {source.shape} differs from {converted.shape}")
    report = InvertReport(images=converted.shape[0])
    originals = source.chunks(converted.chunk_rows) if source is not None else None
    if source is not None:
        report.source_mismatches = 0
    with staged_outputs(overwrite, [path] + ([verify_source] if verify_source else [])) as staged:
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


@dataclass
class VerifyReport:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(passed for _, passed, _ in self.checks)

    def add(self, name: str, passed: bool, detail: str = "") -> None:
        self.checks.append((name, passed, detail))


REQUIRED_FIELDS = (
    "format",
    "strategy",
    "scope",
    "source_low",
    "source_span",
    "target_low",
    "target_span",
    "source",
    "output",
    "image_shape",
)


def verify(path: Path, source_path: Path | None = None, samples: int = 64) -> VerifyReport:
    """Check the record, the stored data and (with a source) its provenance and values."""
    report = VerifyReport()
    converted = open_converted(path)
    record = converted.record
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    report.add(
        "record complete",
        not missing and record.get("format") == FORMAT,
        f"missing: {', '.join(missing)}" if missing else FORMAT,
    )
    report.add("data is float32", converted.dtype == np.float32, str(converted.dtype))
    recorded = tuple(record.get("output", {}).get("shape", ()))
    stored = converted.stored_shape
    report.add("shape as recorded", stored == recorded, f"{stored}")
    if source_path is None:
        return report
    source = open_source(source_path)
    sha = source.sha256()
    report.add("source sha256", sha == record.get("source", {}).get("sha256"), sha)
    report.add("source shape", source.shape == converted.shape, f"{source.shape}")
    if source.shape == converted.shape:
        bad = sample_mismatches(converted, source, samples)
        report.add("sample re-derives exactly", bad == 0, f"{bad} differing values")
    return report


def sample_mismatches(converted: ConvertedFile, source: Source, samples: int) -> int:
    """Re-derive evenly spaced images from the source and compare bits with the output."""
    wanted = set(np.linspace(0, source.n_images - 1, min(samples, source.n_images)).astype(int))
    transform = Transform(converted.params)
    rows = converted.chunk_rows
    bad, start = 0, 0
    for original, stored in zip(source.chunks(rows), converted.chunks(rows), strict=True):
        picks = [i - start for i in sorted(wanted) if start <= i < start + original.shape[0]]
        if picks:
            again = transform.apply(original, start)[picks]
            bad += int(np.count_nonzero(again.view(np.uint32) != stored[picks].view(np.uint32)))
        start += original.shape[0]
    return bad


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


__all__ = ["InvertReport", "VerifyReport", "describe", "invert", "verify"]
