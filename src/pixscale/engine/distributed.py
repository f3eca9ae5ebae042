"""The same conversion on a Dask cluster, written in parallel by the workers.

The input is split into partitions of whole output chunks (ranges of the first axis, across
file boundaries); each task reads only its own partition. Fitted statistics come back from
the tasks as exact integer sums and are merged by addition, so the parameters are
bit-identical to the local engine's. The scaled values never travel through the client:

- **Zarr** (``.zarr``): each task writes its own chunks of the ``images`` array in a store
  built under a temporary name beside the target; the client adds labels, parameter arrays
  and the record, and renames the store into place.
- **HDF5** (``.h5``, uncompressed) and **.npy**: the client creates the file with its
  contiguous float32 region allocated up front (as the local engine does); each task
  writes its own byte range of that region; the client adds the record and commits. The
  result is one self-contained file, identical to the local engine's.

Tasks write to the output's folder, so workers on other machines need it on a shared file
system, and input paths must mean the same on every worker. Nothing returns through the
client but the integer sums, each task's CRC-32 of what it wrote (combined in order into
the record's checksum, equal to the local engine's) and, for per-image scope, the per-image
parameters.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any, ClassVar

from pixscale.core.layouts import output_shape
from pixscale.core.params import Params, dumps
from pixscale.core.spec import Spec, build_params
from pixscale.core.stats import PixelSums
from pixscale.engine.fitting import (
    geometry_of,
    merge_image_params,
    prepare_params,
    warn_if_test_split,
)
from pixscale.engine.local import check_reuse, hash_quietly, named_inputs, write_images
from pixscale.engine.record import build_record
from pixscale.engine.scan import DEFAULT_CHUNK_MB, Progress, dataset_sums
from pixscale.errors import OutputError, PixscaleError
from pixscale.sources import ConcatSource, Source
from pixscale.sources.base import UInt8Array, WindowSource, window_of
from pixscale.sources.parallel import useful_workers
from pixscale.store.base import Writer
from pixscale.store.io.atomic import StagedOutputs, staged_outputs
from pixscale.store.io.checksum import ALGORITHM, crc32_combine
from pixscale.store.io.space import check_room
from pixscale.store.output import Output, check_targets, room_needed, write_mode

#: Input megabytes per task: large enough to amortise scheduling (about 1 ms a task) and
#: the start of each task's read, small enough to balance two workers to within a few %.
DEFAULT_PARTITION_MB = 64.0
#: Times Dask re-runs a task whose worker died (a task rewrites only its own region).
RETRIES = 2

Partition = tuple[int, Source]

PathLike = str | os.PathLike[str]


# -- partitions --------------------------------------------------------------------------------


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


# -- tasks -------------------------------------------------------------------------------------

#: glibc ``mallopt`` parameters.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: During a task: where glibc's adaptive thresholds settle for repeated buffers of up to
#: 32 MiB (its maximum), so that a freed chunk buffer is reused by the next chunk.
TASK_MMAP_THRESHOLD = 32 << 20
TASK_TRIM_THRESHOLD = 2 * TASK_MMAP_THRESHOLD
#: glibc's initial mmap threshold.
GLIBC_MMAP_THRESHOLD = 128 << 10


class MemoryReuse:
    """Lets glibc's malloc reuse freed buffers while tasks run in a Dask worker.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which turns glibc's
    adaptive thresholds off: every buffer of 128 KiB or more is then a fresh ``mmap`` whose
    pages the kernel faults in and zeroes on first touch and unmaps on ``free``. The tasks
    allocate such buffers for every chunk (reads, sums, transforms), and the statistics
    pass measured 3.3× slower for it (4.45 s against 1.36 s for 1 GiB). While any task
    runs, the thresholds are where glibc's adaptive ones would settle; when the last one
    ends, the worker's own settings come back and the freed memory is returned to the OS.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.libc: Any = None
        self.tuned = False

    def __enter__(self) -> MemoryReuse:
        with self.lock:
            self.running += 1
            if self.running == 1:
                self.tuned = self._set(TASK_MMAP_THRESHOLD, TASK_TRIM_THRESHOLD)
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.running -= 1
            if self.running == 0 and self.tuned:
                self._set(
                    environment_bytes("MALLOC_MMAP_THRESHOLD_", GLIBC_MMAP_THRESHOLD),
                    environment_bytes("MALLOC_TRIM_THRESHOLD_", TASK_TRIM_THRESHOLD),
                )
                self.libc.malloc_trim(0)
                self.tuned = False

    def _set(self, mmap_threshold: int, trim_threshold: int) -> bool:
        """Set both thresholds where the process runs glibc with fixed ones (set from the
        environment); elsewhere change nothing."""
        if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
            return False  # glibc adapts by itself (or this is not glibc)
        if self.libc is None:
            try:
                self.libc = ctypes.CDLL(None)
                self.libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                self.libc.malloc_trim.argtypes = [ctypes.c_size_t]
            except (OSError, AttributeError):
                self.libc = False
        if not self.libc:
            return False
        self.libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
        self.libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)
        return True


def environment_bytes(name: str, default: int) -> int:
    """A byte count from the environment, ``default`` when unset or malformed."""
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default


#: Shared by the tasks of one worker process.
MEMORY_REUSE = MemoryReuse()


@dataclass(frozen=True)
class PartWritten:
    """What a write task sends back: the CRC-32 of the bytes it wrote and their number,
    and its per-image parameters (per-image scope only)."""

    crc: int
    nbytes: int
    images: int
    params: Params | None = None


def combined_checksum(parts: list[PartWritten]) -> dict[str, str]:
    """The record's checksum of the whole data from its parts' CRC-32s, in order: exact,
    and nothing is read again."""
    crc = 0
    for part in parts:
        crc = crc32_combine(crc, part.crc, part.nbytes)
    return {"algorithm": ALGORITHM, "value": f"{crc:08x}"}


def partial_sums(window: Source, chunk_mb: float, scope: str) -> PixelSums:
    """Task: exact integer sums of one partition, kept per ``scope`` element (per channel
    sums are a few integers to send back, per pixel ones an array)."""
    with MEMORY_REUSE:
        return dataset_sums(window, chunk_mb, scope=scope)


def write_part(
    window: Source,
    params: Params,
    spec: Spec,
    sink: Any,
    start: int,
    layout: str,
    chunk_mb: float,
) -> PartWritten:
    """Task: scale one partition into its own region of the output (``sink`` is a
    ``RawRegion`` or a ``ZarrImages``); its CRC-32 and per-image parameters come back."""
    with MEMORY_REUSE:
        writer = sink.region(start, window.n_images)
        try:
            done, written = write_images(window, params, spec, writer, chunk_mb, None, layout)
        finally:
            writer.close()
    nbytes = 4 * math.prod(writer.shape)
    return PartWritten(
        writer.checksum.crc, nbytes, written, done if done.scope == "image" else None
    )


def dask_params(
    client: Any,
    source: Source,
    spec: Spec,
    windows: list[Partition],
    params_from: PathLike | None,
    chunk_mb: float,
) -> Params:
    """Parameters exactly as the local engine computes them, statistics from the tasks."""
    if params_from is not None or not spec.needs_dataset_stats:
        return prepare_params(source, spec, params_from, chunk_mb, None)  # no data pass
    futures = [
        client.submit(partial_sums, w, chunk_mb, spec.scope, retries=RETRIES, pure=False)
        for _, w in windows
    ]
    sums = functools.reduce(PixelSums.merge, client.gather(futures))
    return build_params(spec, geometry_of(source), sums.reduce(spec.scope, source.channel_axis))


# -- the conversion ----------------------------------------------------------------------------


def open_parallel(
    output: Output, shape: tuple[int, ...], staged: StagedOutputs
) -> tuple[Writer, Any, int]:
    """The output's writer on the client, where the tasks write (a sink), and the images
    per region that every task's first image must be a multiple of: the output's backend
    decides, after the same target and room checks as the local engine's."""
    nbytes = output.item_bytes * math.prod(shape)
    direct = write_mode(output, nbytes) == "direct"
    check_targets(output, staged)
    check_room(output.path, room_needed(output, nbytes))
    return output.backend.open_parallel(output, shape, staged, direct)


def convert_on_dask(
    source: Source,
    output: Output,
    spec: Spec,
    client: Any,
    *,
    params_from: PathLike | None = None,
    chunk_mb: float = DEFAULT_CHUNK_MB,
    partition_mb: float = DEFAULT_PARTITION_MB,
    progress: Progress | None = None,
    extra_inputs: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """Convert ``source`` on the cluster behind ``client``; the workers write the output.

    Parameters
    ----------
    source
        The input (its files must be readable by every worker under the same paths).
    output
        ``.zarr`` (Zarr v3 store), uncompressed ``.h5`` or ``.npy``.
    spec, params_from, chunk_mb, progress
        As for ``pixscale.convert``.
    client
        A ``distributed.Client``.
    partition_mb
        Input megabytes per task (rounded to whole output chunks).
    extra_inputs
        Other files the run reads (a ``--labels`` file): never replaced by an output.

    Returns
    -------
    dict
        The parameter record, equal to the local engine's but for ``output``.
    """
    spec = check_reuse(spec, params_from)
    if output.to_stdout:
        raise OutputError("the dask engine writes files; it cannot stream to standard output")
    if (output.dtype, output.store) != ("float32", "float"):
        raise OutputError("--dtype float16 and --store uint8 need the local engine")
    if spec.needs_dataset_stats and params_from is None:
        warn_if_test_split(source.files)
    layout = output.layout or source.layout
    shape = output_shape(source.shape, source.layout, layout)
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        staged_outputs(
            output.overwrite, [*named_inputs(source, {}, params_from), *extra_inputs]
        ) as staged,
    ):
        writer, sink, step = open_parallel(replace(output, layout=layout), shape, staged)
        futures: list[Any] = []
        try:
            slots = sum(client.nthreads().values())
            windows = partitions(source, partition_mb, step, slots)
            params = dask_params(client, source, spec, windows, params_from, chunk_mb)
            # The digest is the one serial read of the input: the client does it on a
            # low-priority thread while the workers write, which waits on the disk (during
            # the statistics pass it would take a core from workers on this machine).
            digest = pool.submit(hash_quietly, source)
            futures = [
                client.submit(
                    write_part,
                    window,
                    params,
                    spec,
                    sink,
                    start,
                    layout,
                    chunk_mb,
                    retries=RETRIES,
                    pure=False,
                )
                for start, window in windows
            ]
            results = []
            for (_, window), future in zip(windows, futures, strict=True):
                results.append(future.result())
                if progress:
                    progress(window.n_images, source.n_images, window.nbytes)
            if params.scope == "image":
                params = merge_image_params(
                    params, [r.params for r in results if r.params is not None], spec.zero_std
                )
            fitted_here = spec.needs_stats and params_from is None and params.scope != "image"
            record = build_record(params, source, digest.result(), fitted_here, layout)
            # The writer keeps this checksum: the tasks, not its own ``write``, wrote the data.
            record["output"] = {
                **record["output"],
                "engine": "dask",
                "checksum": combined_checksum(results),
            }
            record["output"] = writer.finish(record, params.external_arrays(), source.labels)
            staged.seal(sum(r.images for r in results), record)
            if output.params_out is not None:
                staged.stage(output.params_out).write_text(dumps(record))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        finally:
            writer.close()
    return record


@contextmanager
def dask_client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A client of an existing scheduler, or of a new local cluster of ``workers`` processes;
    whatever is started here is closed on exit."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise OutputError(
            "the dask engine needs dask and distributed: pip install 'pixscale[dask]'"
        ) from exc
    with dask_errors(scheduler):
        if scheduler:
            with Client(scheduler) as client:  # type: ignore[no-untyped-call]
                yield client
            return
        with terminal_signals_held():
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=useful_workers(workers),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # any free port: never collides with another cluster
                # a task's failure comes back to the client as its one-line error; the
                # workers' own multi-line reports of it would only repeat it
                silence_logs=logging.CRITICAL,
            )
        with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
            yield client


#: What a terminal sends every process of its foreground job: Ctrl-C and a hang-up.
TERMINAL_SIGNALS = {signal.SIGINT, signal.SIGHUP}


@contextmanager
def terminal_signals_held() -> Iterator[None]:
    """Ctrl-C and hang-ups blocked in the threads and processes started meanwhile (a local
    cluster's event loop and its workers, which inherit the mask through ``exec``): those
    signals are left to this process, which stops the run and closes the workers, with no
    worker tracebacks on the terminal. Here they still arrive as usual (only this thread's
    mask changes for a moment; any other thread takes delivery for it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # Starting multiprocessing's resource tracker unblocks SIGINT in the starting thread;
    # started here first, it leaves the cluster's event loop thread blocked.
    resource_tracker.ensure_running()
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINAL_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


@contextmanager
def dask_errors(scheduler: str | None) -> Iterator[None]:
    """Dask's own failures (a worker killed, a scheduler out of reach) as one-line errors."""
    try:
        yield
    except (PixscaleError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except Exception as exc:
        where = f"dask scheduler {scheduler}" if scheduler else "dask"
        raise OutputError(f"{where}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def convert_with_dask(
    inputs: Source,
    output: PathLike | Output,
    spec: Spec | None = None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``convert_on_dask`` on the scheduler at ``scheduler`` (``tcp://host:8786``), or on a
    local cluster of ``workers`` processes started and stopped here."""
    output = output if isinstance(output, Output) else Output(Path(output))
    with dask_client(scheduler, workers) as client:
        return convert_on_dask(inputs, output, spec or Spec(), client, **options)
