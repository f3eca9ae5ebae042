"""verify: check an output against its record, and against its source."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixscale.core.params import FORMAT
from pixscale.core.transform import Transform
from pixscale.sources import Source, open_recorded_source
from pixscale.store.reader import ConvertedFile, open_converted


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


def verify(
    path: str | os.PathLike[str],
    source_path: str | os.PathLike[str] | None = None,
    samples: int = 64,
    **reading: Any,
) -> VerifyReport:
    """Check the record, the stored data and (with a source) its provenance and values.

    Parameters
    ----------
    path
        A pixscale output.
    source_path
        The original input, to check its sha256 and re-derive values from.
    samples
        Images re-derived from the source.
    **reading
        Input options for the source (``key``, ``mode``, ``layout``); by default those
        the record names.

    Returns
    -------
    VerifyReport
        Each check with its outcome and detail; ``ok`` when all passed.
    """
    report = VerifyReport()
    converted = open_converted(Path(path))
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
    source = open_recorded_source(source_path, record, reading)
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
