"""verify: check an output against its record, and against its source.

Without the source, an output is checked against what its record promises: every field
there, float32 data of the recorded shape, the derived ``scale``/``offset`` (and the HDF5
attributes readers use) equal to those of the four defining numbers, the checksum of the
data bytes as written (a record without one fails: its data cannot be verified), and every
value one of the 256 its scope element's parameters can produce. With the source, its
sha256 and every image re-derived bit for bit. One streaming pass over the data does all
the value checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.layouts import restore_layout
from pixscale.core.location import PathOrUrl, locate
from pixscale.core.params import FORMAT
from pixscale.core.transform import BITS, Transform
from pixscale.errors import ParamsError, PixscaleError
from pixscale.sources import Source, open_recorded_source
from pixscale.store.backends import Backend, backend_of
from pixscale.store.backends.base import same_numbers
from pixscale.store.io.checksum import ALGORITHMS, Checksum, checksum_of
from pixscale.store.reader import ConvertedFile, open_converted

UInt8Array = npt.NDArray[np.uint8]


@dataclass
class VerifyReport:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(passed for _, passed, _ in self.checks)

    @property
    def failed(self) -> list[str]:
        """Names of the checks that failed, in order."""
        return [name for name, passed, _ in self.checks if not passed]

    @property
    def failures(self) -> list[str]:
        """``name: detail`` of each check that failed, in order."""
        return [f"{name}: {detail}" for name, passed, detail in self.checks if not passed]

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
    path: PathOrUrl,
    source_path: PathOrUrl | None = None,
    samples: int | None = None,
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
        Re-derive only this many evenly spaced images from the source; None (the
        default) re-derives every image.
    **reading
        Input options for the source (``key``, ``mode``, ``layout``); by default those
        the record names; ``storage_options`` for URLs.

    Returns
    -------
    VerifyReport
        Each check with its outcome and detail; ``ok`` when all passed.
    """
    report = VerifyReport()
    options = reading.pop("storage_options", None)
    converted = open_converted(locate(path, options))
    check_record(report, converted)
    source = None
    if source_path is not None:
        source = open_recorded_source(locate(source_path, options), converted.record, reading)
        sha = source.sha256()
        report.add("source sha256", sha == described(converted.record).get("sha256"), sha)
        report.add("source shape", source.shape == converted.shape, f"{source.shape}")
    same_shape = source is not None and source.shape == converted.shape
    try:
        scan = scan_values(converted, source if same_shape else None, samples)
    except Exception as exc:
        if isinstance(exc, PixscaleError) or not backend_of_output(converted).damage_raises_any:
            raise
        # some formats' libraries raise many kinds on a chunk they cannot decode (a damaged
        # gzip stream, a truncated file): damage found, reported as a failed check.
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        report.add("images readable", False, reason)
        return report
    report_values(report, converted, scan)
    if same_shape:
        every = samples is None or samples >= converted.shape[0]
        what = "every image" if every else f"{samples} sampled images"
        report.add(
            f"{what} re-derive{'s' if every else ''} exactly from the source",
            scan.differing == 0,
            f"{scan.differing} differing values",
        )
    return report


def described(record: dict[str, Any]) -> dict[str, Any]:
    found = record.get("source")
    return found if isinstance(found, dict) else {}


# ------------------------------------------------------------------------- the record


def check_record(report: VerifyReport, converted: ConvertedFile) -> None:
    """Fields, dtype, shape, derived numbers and HDF5 attributes against the record."""
    record = converted.record
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    report.add(
        "record complete",
        not missing and record.get("format") == FORMAT,
        f"missing: {', '.join(missing)}" if missing else FORMAT,
    )
    kind = "uint8" if converted.packed else str(converted.output.get("dtype", "float32"))
    report.add(f"data is {kind}", converted.dtype == np.dtype(kind), str(converted.dtype))
    if converted.packed:
        wrong = packing_differing(converted)
        report.add(
            "packed pixels decode exactly",
            not wrong,
            f"{', '.join(wrong)} differ from the proven scale_factor/add_offset"
            if wrong
            else "float32(x * scale_factor + add_offset) is the float32 output for all 256 x",
        )
    recorded = converted.output.get("shape")
    stored = converted.stored_shape
    report.add(
        "shape as recorded", isinstance(recorded, list) and tuple(recorded) == stored, f"{stored}"
    )
    wrong = [name for name in ("scale", "offset") if not derived_agrees(converted, name)]
    report.add(
        "scale and offset derived from the four numbers",
        not wrong,
        f"{' and '.join(wrong)} differ from target_span / source_span and "
        "target_low - source_low * scale"
        if wrong
        else "scale = target_span / source_span, offset = target_low - source_low * scale",
    )
    for name, ok, detail in backend_of_output(converted).attribute_checks(converted):
        report.add(name, ok, detail)


def packing_differing(converted: ConvertedFile) -> list[str]:
    """Where the recorded CF pairs (and the HDF5 attributes CF readers use) are not the
    pairs proven exact for these parameters."""
    try:
        packing = converted.transform().packing()
    except ParamsError:
        return ["the parameters (no exact pair exists)"]
    recorded = converted.output.get("packing")
    if not isinstance(recorded, dict):
        return ["the record's output.packing"]
    wrong = []
    for name in ("scale_factor", "add_offset"):
        value = recorded.get(name)
        if isinstance(value, dict):
            value = converted.arrays.get(str(value.get("array")))
        if not same_numbers(value, getattr(packing, name)):
            wrong.append(name)
    if not wrong:
        wrong += backend_of_output(converted).packing_differing(converted, packing)
    return wrong


def derived_agrees(converted: ConvertedFile, name: str) -> bool:
    """The record's ``scale`` or ``offset`` (inline, or a stored array) equals the value
    the defining numbers give."""
    expected = getattr(converted.params, name)
    value = converted.record.get(name)
    if isinstance(value, dict):
        value = converted.arrays.get(str(value.get("array")))
    return same_numbers(value, expected)


def backend_of_output(converted: ConvertedFile) -> Backend:
    """The backend of the output ``converted`` was read from."""
    backend = backend_of(converted.path)
    assert backend is not None  # open_converted read it as one
    return backend


# ------------------------------------------------------------------------- the values

#: Why a record without a checksum fails: nothing says whether its data is what was written.
NO_CHECKSUM = "the record carries no checksum, so the data cannot be verified"


@dataclass
class Scan:
    """What one pass over the stored values found."""

    checksum: Checksum | None
    not_allowed: int = 0
    differing: int = 0


def recorded_checksum(output: dict[str, Any], name: str = "checksum") -> tuple[str, str] | None:
    """(algorithm, value) of a well-formed recorded checksum; None when absent or malformed."""
    found = output.get(name)
    if not isinstance(found, dict):
        return None
    algorithm, value = found.get("algorithm"), found.get("value")
    if algorithm not in ALGORITHMS or not isinstance(value, str):
        return None
    return str(algorithm), value.lower()


def scan_values(converted: ConvertedFile, source: Source | None, samples: int | None) -> Scan:
    """Stream the stored values once: checksum them as stored, count those the parameters
    cannot produce and, with a source, those that differ from its re-derived values."""
    recorded = recorded_checksum(converted.output)
    scan = Scan(Checksum(recorded[0]) if recorded else None)
    params = converted.params
    transform = converted.transform()
    rows = converted.chunk_rows
    wanted = sample_images(converted.shape[0], samples)
    originals = Rechunked(source.chunks(rows)) if source is not None else None
    start = 0
    for stored in converted.stored_chunks(rows):
        data = np.ascontiguousarray(stored)
        if scan.checksum is not None:
            scan.checksum.update(data)
        values = restore_layout(data, params.layout, converted.layout)
        if converted.packed:  # every uint8 is allowed; compare what it decodes to
            values = transform.apply(np.ascontiguousarray(values), start)
        else:
            _, mismatches = transform.invert(values, start)
            scan.not_allowed += mismatches
        if originals is not None:
            original = originals.take(values.shape[0])
            scan.differing += differing(transform, original, values, start, wanted)
        start += values.shape[0]
    if originals is not None:
        originals.finish()
    return scan


def sample_images(count: int, samples: int | None) -> set[int] | None:
    """Evenly spaced images to compare with the source; None compares all."""
    if samples is None or samples >= count:
        return None
    return set(np.linspace(0, count - 1, samples).astype(int).tolist())


def differing(
    transform: Transform,
    original: UInt8Array,
    values: npt.NDArray[np.float32],
    start: int,
    wanted: set[int] | None,
) -> int:
    """Values of images ``start…`` that differ (bitwise) from the source re-derived."""
    bits = BITS[transform.dtype]
    values = np.ascontiguousarray(values, transform.dtype)
    if wanted is not None:
        picks = [i - start for i in sorted(wanted) if start <= i < start + values.shape[0]]
        if not picks:
            return 0
        again = transform.apply(original, start)[picks]
        return int(np.count_nonzero(again.view(bits) != values[picks].view(bits)))
    again = transform.apply(original, start)
    return int(np.count_nonzero(again.view(bits) != values.view(bits)))


def report_values(report: VerifyReport, converted: ConvertedFile, scan: Scan) -> None:
    """The checksum checks and the count of values the parameters cannot produce."""
    output = converted.output
    recorded = recorded_checksum(output)
    if "checksum" not in output:
        report.add("checksum", False, NO_CHECKSUM)
    elif recorded is None or scan.checksum is None:
        report.add("checksum", False, f"malformed in the record: {output.get('checksum')!r}")
    else:
        found = scan.checksum.value
        report.add(
            "checksum", found == recorded[1], f"{recorded[0]} {found}, recorded {recorded[1]}"
        )
    report.add(
        "values allowed by the record",
        scan.not_allowed == 0,
        f"{scan.not_allowed} values are not among the "
        f"{converted.params.value_max + 1:,} the parameters allow",
    )
    check_labels(report, converted)


def check_labels(report: VerifyReport, converted: ConvertedFile) -> None:
    """The stored labels against the record's ``labels_checksum``, when it has one."""
    output = converted.output
    if "labels_checksum" not in output or converted.labels is None:
        return
    recorded = recorded_checksum(output, "labels_checksum")
    if recorded is None:
        report.add("labels checksum", False, "malformed in the record")
        return
    found = checksum_of(np.ascontiguousarray(converted.labels), recorded[0])["value"]
    report.add(
        "labels checksum",
        found == recorded[1],
        f"{recorded[0]} {found}, recorded {recorded[1]}",
    )


class Rechunked:
    """Consecutive images of ``chunks`` handed out ``count`` at a time, whatever the sizes
    the chunks come in."""

    def __init__(self, chunks: Iterable[UInt8Array]) -> None:
        self.chunks: Iterator[UInt8Array] = iter(chunks)
        self.pending: UInt8Array | None = None

    def take(self, count: int) -> UInt8Array:
        """The next ``count`` images (the source must hold them: shapes were compared)."""
        parts: list[UInt8Array] = []
        while count > 0:
            if self.pending is None or self.pending.shape[0] == 0:
                self.pending = next(self.chunks)
            part, self.pending = self.pending[:count], self.pending[count:]
            parts.append(part)
            count -= part.shape[0]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def finish(self) -> None:
        """Read the source to its end, so that its own end checks run (a stream holding
        more than it declares, a gzip CRC): every image was taken, so nothing comes."""
        for _ in self.chunks:
            pass
