"""The statistics pass: exact integer sums per pixel position, read by two threads."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import numpy as np

from pixscale.core.stats import PixelSums
from pixscale.sources.base import Source, UInt8Array
from pixscale.store.io.direct import ALIGN

#: Input bytes per chunk. Peak memory is about 7× this for uint8 (uint8 in, float32 out,
#: uint16 squares for statistics), 4× for uint16; 4 MiB chunks keep the working set near
#: the CPU caches.
DEFAULT_CHUNK_MB = 4.0
#: Threads sharing the statistics pass.
STATS_THREADS = 2

#: Called with the number of images just processed, the total work in images
#: (images × passes), so a progress bar can be sized on the first call, and the input
#: bytes those images held.
Progress = Callable[[int, int, int], None]


def chunk_images(source: Source, chunk_mb: float) -> int:
    """Images per chunk of about ``chunk_mb`` input megabytes (at least one)."""
    return max(1, int(chunk_mb * (1 << 20)) // max(1, source.image_bytes))


def aligned_chunk_images(source: Source, chunk_mb: float) -> int:
    """``chunk_images`` rounded to whole blocks of float32 output (``ALIGN`` bytes), so
    that direct writes take every chunk as it is, without copying."""
    step = ALIGN // math.gcd(4 * source.image_values, ALIGN)
    return max(step, chunk_images(source, chunk_mb) // step * step)


def dataset_sums(
    source: Source,
    chunk_mb: float,
    progress: Progress | None = None,
    passes: int = 1,
    scope: str = "pixel",
) -> PixelSums:
    """One streaming pass of exact integer sums for statistics of ``scope``.

    ``STATS_THREADS`` threads share the work (numpy's reductions release the GIL) and their
    sums are added together at the end. Sources with random access give each thread its
    own range of images to read (measured 1.6× faster than one reader feeding both); the
    others split each chunk they read between the threads.

    For "pixel" statistics each thread keeps one sum per position (18 bytes each for
    uint8, 20 for uint16): that memory grows with the image size. For "channel" and
    "global" the sums are added up per channel as they go, and take no memory to speak of.
    """
    rows = chunk_images(source, chunk_mb)
    report = locked_progress(progress, source.n_images * passes)
    parts = [
        PixelSums.empty(source.image_shape, source.dtype, scope, source.channel_axis)
        for _ in range(STATS_THREADS)
    ]
    with ThreadPoolExecutor(STATS_THREADS, thread_name_prefix="pixscale-stats") as pool:
        if source.random_access:
            sum_ranges(source, parts, rows, report, pool)
        else:
            for chunk in source.chunks(rows):
                pieces = np.array_split(chunk, STATS_THREADS)
                jobs = [pool.submit(p.add, c) for p, c in zip(parts, pieces, strict=True) if len(c)]
                for job in jobs:
                    job.result()
                report(chunk)
    for part in parts[1:]:
        parts[0].fold(part)
    return parts[0]


def sum_ranges(
    source: Source,
    parts: list[PixelSums],
    rows: int,
    report: Callable[[UInt8Array], None],
    pool: ThreadPoolExecutor,
) -> None:
    """Fold consecutive ranges of images into ``parts``, one thread per range; the first
    error (or an interrupt) stops every thread at its next chunk."""
    stop = threading.Event()

    def sum_range(part: PixelSums, first: int, last: int) -> None:
        for chunk in source.window(first, last, rows):
            if stop.is_set():
                return
            part.add(chunk)
            report(chunk)

    bounds = [source.n_images * k // len(parts) for k in range(len(parts) + 1)]
    jobs = [
        pool.submit(sum_range, part, first, last)
        for part, first, last in zip(parts, bounds, bounds[1:], strict=False)
    ]
    try:
        wait(jobs, return_when=FIRST_EXCEPTION)
    finally:
        stop.set()
    for job in jobs:
        job.result()


def locked_progress(progress: Progress | None, total: int) -> Callable[[UInt8Array], None]:
    """Report each chunk read to ``progress`` (which need not be thread-safe) from any thread."""
    lock = threading.Lock()

    def report(chunk: UInt8Array) -> None:
        if progress is not None:
            with lock:
                progress(chunk.shape[0], total, chunk.nbytes)

    return report
