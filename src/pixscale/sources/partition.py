"""Partitions of a source: consecutive ranges of images, each read on its own (by a Dask
task), crossing the boundaries between inputs (shards) where a range spans several."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from pixscale.sources.base import Source, UInt8Array, WindowSource, window_of
from pixscale.sources.concat import ConcatSource

#: Input megabytes per partition: large enough to amortise scheduling (about 1 ms a task)
#: and the start of each task's read, small enough to balance two workers to within a few %.
DEFAULT_PARTITION_MB = 64.0

Partition = tuple[int, Source]


@dataclass
class SpanSource(Source):
    """Consecutive images that cross the boundary between two or more inputs (shards)."""

    random_access: ClassVar[bool] = True
    pieces: tuple[WindowSource, ...] = field(default=())

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        for piece in self.pieces:
            yield from piece.chunks(max_images)


def span(source: Source, start: int, stop: int) -> Source:
    """Images ``start``…``stop - 1`` of ``source``, reading only the inputs that hold them."""
    if not isinstance(source, ConcatSource):
        return window_of(source, start, stop)
    pieces: list[WindowSource] = []
    offset = 0
    for part in source.parts:
        first, last = max(start, offset), min(stop, offset + part.n_images)
        if first < last:
            pieces.append(window_of(part, first - offset, last - offset))
        offset += part.n_images
    if len(pieces) == 1:
        return pieces[0]
    return SpanSource(
        name=source.name,
        format=source.format,
        shape=(stop - start, *source.image_shape),
        layout=source.layout,
        files=tuple(f for piece in pieces for f in piece.files),
        pieces=tuple(pieces),
        dtype=source.dtype,
    )


def partitions(
    source: Source, partition_mb: float = DEFAULT_PARTITION_MB, step: int = 1, slots: int = 1
) -> list[Partition]:
    """(first image, images) per task, each starting on a multiple of ``step`` images
    (a file of the output), about ``partition_mb`` input megabytes each, and as many as a
    multiple of ``slots`` (the cluster's threads) where a smaller size allows it: 3 tasks
    on 2 workers would leave one idle for a third of the run."""
    steps = -(-source.n_images // step)
    per_task = max(1, int(partition_mb * (1 << 20)) // max(1, source.image_bytes) // step)
    for fewer in range(per_task, max(1, per_task // 2) - 1, -1):
        if -(-steps // fewer) % max(1, slots) == 0:
            per_task = fewer
            break
    rows = per_task * step
    return [
        (start, span(source, start, min(start + rows, source.n_images)))
        for start in range(0, source.n_images, rows)
    ]


# -- what the tasks write into ------------------------------------------------------------------
