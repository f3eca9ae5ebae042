"""invert: back to the exact source images (uint8 or uint16), using only the record, once
the record is found consistent and the data's checksum the recorded one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.layouts import restore_layout
from pixscale.core.location import Location, PathOrUrl, locate
from pixscale.core.storage import float16_collisions
from pixscale.core.transform import BITS, Transform, flat_affine
from pixscale.errors import InputError, OutputError
from pixscale.sources import open_recorded_source
from pixscale.sources.resize import recorded_resize
from pixscale.store.backends import backend_of, open_pixel_writer
from pixscale.store.io.atomic import staged_outputs
from pixscale.store.io.checksum import Checksum
from pixscale.store.reader import ConvertedFile, open_converted
from pixscale.tasks.verify import (
    NO_CHECKSUM,
    Rechunked,
    VerifyReport,
    check_labels,
    check_record,
    recorded_checksum,
)

#: Images per chunk when reading float32 outputs back (about 4 MiB of MNIST).
DEFAULT_CHUNK_IMAGES = 1024

PathLike = PathOrUrl


@dataclass
class InvertReport:
    images: int = 0
    not_round_trip: int = 0
    at_clip_bounds: int = 0
    source_mismatches: int | None = None
    #: Source values (per scope element, summed) whose float16 output equals a
    #: neighbour's, so that invert cannot tell them apart (float16 outputs only).
    shared_float16: int = 0
    #: ``--resize`` as the record describes it (``128x128, crop, bilinear``): the images
    #: given back are the resized ones, not the files' originals.
    resized: str | None = None

    @property
    def lossy(self) -> bool:
        return self.not_round_trip > 0 or self.at_clip_bounds > 0 or self.shared_float16 > 0


def pixels_of(
    converted: ConvertedFile, transform: Transform | None = None, checksum: Checksum | None = None
) -> Iterator[tuple[int, npt.NDArray[np.float32], npt.NDArray[Any], int, int]]:
    """(start, stored values, source images, values that do not round-trip, values at clip
    bounds), chunk by chunk in the source's layout; ``checksum`` is fed the stored bytes
    on the way, in order."""
    transform = transform or converted.transform()
    bounds = clip_bounds(converted)
    start = 0
    for chunk in converted.stored_chunks(converted.chunk_rows):
        stored = np.ascontiguousarray(chunk)
        if checksum is not None:
            checksum.update(stored)
        restored = restore_layout(stored, converted.params.layout, converted.layout)
        if converted.packed:  # the pixels themselves: inverting is reading them
            yield start, transform.apply(restored, start), restored, 0, 0
            start += restored.shape[0]
            continue
        pixels, mismatches = transform.invert(restored, start)
        clipped = 0
        if bounds is not None:
            clipped = int(np.count_nonzero((restored == bounds[0]) | (restored == bounds[1])))
        yield start, restored, pixels, mismatches, clipped
        start += restored.shape[0]


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
    """Write the images that ``path`` was converted from, using only its record: uint8, or
    uint16 where the record's ``source_dtype`` says so (proven exact like the forward map:
    every stored value must map back to itself).

    Parameters
    ----------
    path
        A pixscale output (.h5, .zarr, or .npy with its sidecar).
    output
        The file to write: .npy, .h5, or an IDX name (``…-idx3-ubyte[.gz]``; uint8 only).
    overwrite
        Replace an existing ``output`` (atomically; never a FIFO, device or the like).
    verify_source
        The original input: count the pixels that differ from it. Pixels that differ
        because ``path`` does not hold what the source converts to mean the output would
        be wrong: nothing is written and ``InputError`` is raised. Pixels that differ only
        because ``--clip`` merged values (lossy by design) are counted in the report.
    **reading
        Input options for ``verify_source`` (``key``, ``mode``, ``layout``); by default
        those the record names.

    Returns
    -------
    InvertReport
        Images written, values that do not round-trip, clipped values, source mismatches.

    Raises
    ------
    InputError
        Nothing is written when the record is inconsistent (with itself, or with the
        stored data's shape, dtype or values), carries no checksum, or its checksum is
        not the data's (checked in the same pass, before the output is committed); and,
        with ``verify_source``, when pixels differ from the source beyond what clipping
        explains.
    """
    options = reading.pop("storage_options", None)
    path, output = locate(path, options), locate(output, options, OutputError)
    converted = open_converted(path)
    recorded = trusted_checksum(converted, output)
    source = None
    if verify_source is not None:
        source = open_recorded_source(locate(verify_source, options), converted.record, reading)
    if source is not None and source.shape != converted.shape:
        raise InputError(f"{verify_source}: shape {source.shape} differs from {converted.shape}")
    report = InvertReport(images=converted.shape[0], resized=resized_from(converted.record))
    if converted.value_dtype == "float16" and converted.params.scope != "image":
        report.shared_float16 = float16_collisions(flat_affine(converted.params))
    comparison = Comparison(Rechunked(source.chunks(converted.chunk_rows))) if source else None
    backend = backend_of(path)
    beside = backend.companions(path) if backend is not None else []  # record, labels, arrays
    inputs = [path, *beside, *([locate(verify_source, options)] if verify_source else [])]
    with staged_outputs(overwrite, inputs) as staged:
        writer = open_pixel_writer(output, converted.shape, staged, converted.params.source_dtype)
        try:
            transform = converted.transform()
            checksum = Checksum(recorded[0])
            for start, values, pixels, mismatches, clipped in pixels_of(
                converted, transform, checksum
            ):
                writer.write(pixels)
                report.not_round_trip += mismatches
                report.at_clip_bounds += clipped
                if comparison is not None:
                    comparison.add(transform, start, values, pixels)
            if comparison is not None:  # with the source, the more telling refusal first
                comparison.originals.finish()
                report.source_mismatches = comparison.differing
                comparison.check(path, verify_source, output)
            check_read(path, output, checksum, recorded[1], report.not_round_trip)
            writer.finish(converted.labels)
        finally:
            writer.close()
    return report


def trusted_checksum(converted: ConvertedFile, output: Location) -> tuple[str, str]:
    """The record's (algorithm, checksum) of the stored data, once the record is found
    consistent with itself and its file (the checks ``verify`` makes of it, labels
    included).

    Raises
    ------
    InputError
        Naming the file and what disagrees, or that the record carries no (well-formed)
        checksum: nothing says the data is what was written, so nothing is inverted.
    """
    report = VerifyReport()
    check_record(report, converted)
    check_labels(report, converted)
    if not report.ok:
        raise InputError(
            f"{converted.path}: inconsistent record ({'; '.join(report.failures)}); "
            f"{output} was not written"
        )
    recorded = recorded_checksum(converted.output)
    if recorded is None:
        found = converted.output.get("checksum")
        reason = NO_CHECKSUM if found is None else f"the record's checksum is malformed: {found!r}"
        raise InputError(f"{converted.path}: {reason}; {output} was not written")
    return recorded


def check_read(
    path: Location, output: Location, checksum: Checksum, recorded: str, not_round_trip: int
) -> None:
    """Refuse, before anything is committed, data whose checksum is not the recorded one
    (damaged) or holding values the record's parameters cannot produce (the record does
    not describe this data)."""
    if checksum.value != recorded:
        raise InputError(
            f"{path}: checksum mismatch, the data is damaged: its {checksum.algorithm} is "
            f"{checksum.value}, the record says {recorded}; {output} was not written"
        )
    if not_round_trip:
        raise InputError(
            f"{path}: {not_round_trip} stored values are not ones the record's parameters "
            f"produce (the record does not describe this data); {output} was not written"
        )


@dataclass
class Comparison:
    """Inverted pixels against the source's: all that differ, and those whose stored value
    is not what the source converts to (a damaged or foreign output, not a lossy clip)."""

    originals: Rechunked
    differing: int = 0
    unfaithful: int = 0

    def add(
        self,
        transform: Transform,
        start: int,
        values: npt.NDArray[np.float32],
        pixels: npt.NDArray[Any],
    ) -> None:
        original = self.originals.take(pixels.shape[0])
        differ = original != pixels
        count = int(np.count_nonzero(differ))
        if count:
            again = transform.apply(original, start)
            bits = BITS[transform.dtype]
            wrong = again.view(bits) != np.ascontiguousarray(values, transform.dtype).view(bits)
            self.unfaithful += int(np.count_nonzero(differ & wrong))
        self.differing += count

    def check(self, path: Location, source: PathLike | None, output: Location) -> None:
        """Refuse to write an inversion that differs from the source beyond clipping."""
        if self.unfaithful:
            raise InputError(
                f"{path}: {self.unfaithful} pixels differ from the source {source}; "
                f"{output} was not written"
            )


def resized_from(record: dict[str, Any]) -> str | None:
    """How the record's source images were resized (``Resize.describe``), or None."""
    source = record.get("source")
    found = source.get("resize") if isinstance(source, dict) else None
    return None if found is None else recorded_resize(found).describe()


def describe(report: InvertReport) -> list[str]:
    """Human-readable lines for the CLI."""
    lines: list[str] = []
    if report.resized:
        lines.append(
            f"Note: the images were resized when read ({report.resized}): these are the "
            "resized pixels, not the original files"
        )
    if report.at_clip_bounds:
        lines.append(
            f"Warning: lossy: {report.at_clip_bounds} values sit at the --clip bounds; "
            "they were inverted to the nearest in-range pixel"
        )
    if report.shared_float16:
        lines.append(
            f"Warning: lossy: {report.shared_float16} source values share their float16 value "
            "with a neighbour; each inverts to one of them"
        )
    if report.source_mismatches is not None:
        lines.append(f"{report.source_mismatches} pixels differ from the source")
    return lines


__all__ = ["InvertReport", "describe", "invert"]
