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

import functools
import logging
import math
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import resource_tracker
from typing import Any

from pixscale.core.location import Location, PathOrUrl, is_remote, locate, shown
from pixscale.core.params import Params
from pixscale.core.spec import Spec, build_params
from pixscale.core.stats import PixelSums
from pixscale.engine.fitting import geometry_of, merge_image_params, prepare_params
from pixscale.engine.local import write_images
from pixscale.engine.pipeline import Executor, Written, check_reuse, run_conversion
from pixscale.engine.scan import DEFAULT_CHUNK_MB, Progress, dataset_sums
from pixscale.errors import OutputError, PixscaleError
from pixscale.sources import Source
from pixscale.sources.parallel import useful_workers
from pixscale.sources.partition import DEFAULT_PARTITION_MB, Partition, partitions
from pixscale.store.base import Writer
from pixscale.store.io.atomic import StagedOutputs
from pixscale.store.io.checksum import ALGORITHM, crc32_combine
from pixscale.store.io.space import check_room
from pixscale.store.output import Output, check_targets, room_needed, write_mode

#: Times Dask re-runs a task whose worker died (a task rewrites only its own region).
RETRIES = 2

PathLike = PathOrUrl


# -- tasks -------------------------------------------------------------------------------------

#: glibc's malloc settings for the workers of a local cluster, through Dask's own
#: configuration of the environment they start with. Dask's nanny starts workers with
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which turns glibc's adaptive thresholds off: every
#: buffer of 128 KiB or more is then a fresh ``mmap`` whose pages the kernel faults in and
#: zeroes on first touch and unmaps on ``free``. The tasks allocate such buffers for every
#: chunk (reads, sums, transforms), and the statistics pass measured 3.3× slower for it
#: (4.45 s against 1.36 s for 1 GiB). These are where glibc's adaptive thresholds settle
#: for repeated buffers of up to 32 MiB, so that a freed chunk buffer is reused by the next.
#: Workers of a cluster started elsewhere (``--scheduler``) take this from their own Dask
#: configuration (``distributed.nanny.pre-spawn-environ``).
WORKER_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
}


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
    writer = sink.region(start, window.n_images)
    try:
        done, written = write_images(window, params, spec, writer, chunk_mb, None, layout)
    finally:
        writer.close()
    nbytes = 4 * math.prod(writer.shape)
    return PartWritten(
        writer.checksum.crc, nbytes, written, done if done.scope == "image" else None
    )


class DaskExecutor(Executor):
    """The passes on a Dask cluster: statistics as integer sums from the tasks, merged here;
    each task writes its own region of the output (the backend's sink)."""

    def __init__(self, client: Any, partition_mb: float = DEFAULT_PARTITION_MB) -> None:
        self.client = client
        self.partition_mb = partition_mb
        self.sink: Any = None
        self.step = 1
        self.windows: list[Partition] = []

    def check(self, output: Output) -> None:
        if output.to_stdout:
            raise OutputError("the dask engine writes files; it cannot stream to standard output")
        if (output.dtype, output.store) != ("float32", "float"):
            raise OutputError("--dtype float16 and --store uint8 need the local engine")
        if is_remote(output.path) and not output.backend.folder:
            raise OutputError(
                f"{shown(output.path)}: the dask engine's workers write a URL output as a "
                ".zarr store; write .npy or .h5 to a URL with --engine local"
            )

    def open(self, output: Output, shape: tuple[int, ...], staged: StagedOutputs) -> Writer:
        """The client's writer; the tasks write into its sink, each from a multiple of
        ``step`` images, after the same target and room checks as the local engine's."""
        nbytes = output.item_bytes * math.prod(shape)
        direct = write_mode(output, nbytes) == "direct"
        check_targets(output, staged)
        check_room(output.path, room_needed(output, nbytes))
        writer, self.sink, self.step = output.backend.open_parallel(output, shape, staged, direct)
        return writer

    def partitions(self, source: Source) -> list[Partition]:
        if not self.windows:
            slots = sum(self.client.nthreads().values())
            self.windows = partitions(source, self.partition_mb, self.step, slots)
        return self.windows

    def fit(
        self,
        source: Source,
        spec: Spec,
        reused: Params | PathLike | None,
        chunk_mb: float,
        progress: Progress | None,
    ) -> Params:
        """Parameters exactly as the local engine computes them, statistics from the tasks."""
        if reused is not None or not spec.needs_dataset_stats:
            return prepare_params(source, spec, reused, chunk_mb, None)  # no data pass
        futures = [
            self.client.submit(
                partial_sums, window, chunk_mb, spec.scope, retries=RETRIES, pure=False
            )
            for _, window in self.partitions(source)
        ]
        sums = functools.reduce(PixelSums.merge, self.client.gather(futures))
        return build_params(spec, geometry_of(source), sums.reduce(spec.scope, source.channel_axis))

    def write(
        self,
        source: Source,
        params: Params,
        spec: Spec,
        writer: Writer,
        output: Output,
        chunk_mb: float,
        progress: Progress | None,
    ) -> Written:
        windows = self.partitions(source)
        futures = [
            self.client.submit(
                write_part,
                window,
                params,
                spec,
                self.sink,
                start,
                output.layout,
                chunk_mb,
                retries=RETRIES,
                pure=False,
            )
            for start, window in windows
        ]
        try:
            results = []
            for (_, window), future in zip(windows, futures, strict=True):
                results.append(future.result())
                if progress:
                    progress(window.n_images, source.n_images, window.nbytes)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        if params.scope == "image":
            params = merge_image_params(
                params, [r.params for r in results if r.params is not None], spec.zero_std
            )
        # The writer keeps this checksum: the tasks, not its own ``write``, wrote the data.
        fields = {"engine": "dask", "checksum": combined_checksum(results)}
        return Written(params, sum(r.images for r in results), fields)


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
    extra_inputs: tuple[Location, ...] = (),
) -> dict[str, Any]:
    """Convert ``source`` on the cluster behind ``client``; the workers write the output.

    Parameters
    ----------
    source
        The input (its files must be readable by every worker under the same paths).
    output
        Any output whose backend writes regions in parallel: ``.zarr``, uncompressed
        contiguous ``.h5``, ``.npy``.
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
    return run_conversion(
        DaskExecutor(client, partition_mb),
        source,
        output,
        check_reuse(spec, params_from),
        params_from=params_from,
        chunk_mb=chunk_mb,
        progress=progress,
        extra_inputs=extra_inputs,
    )


@contextmanager
def dask_client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A client of an existing scheduler, or of a new local cluster of ``workers`` processes;
    whatever is started here is closed on exit."""
    try:
        import dask
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
        # the workers' scratch files (locks, spills) go with the cluster, not into TMPDIR
        with (
            tempfile.TemporaryDirectory(prefix="pixscale-dask-") as scratch,
            dask.config.set({"temporary-directory": scratch}),
        ):
            with terminal_signals_held(), worker_environment(dask):
                cluster = LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=useful_workers(workers),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",  # any free port: never collides with another
                    local_directory=scratch,
                    # a task's failure comes back to the client as its one-line error; the
                    # workers' own multi-line reports of it would only repeat it
                    silence_logs=logging.CRITICAL,
                )
            with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
                yield client


@contextmanager
def worker_environment(dask: Any) -> Iterator[None]:
    """``WORKER_ENVIRONMENT`` for the workers started meanwhile, beside Dask's own
    pre-spawn settings. Dask's nanny prefers this process's environment to its
    configuration (and copies what it spawns with into it), so both are set here and the
    environment is restored afterwards."""
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **WORKER_ENVIRONMENT}
    previous = {name: os.environ.get(name) for name in WORKER_ENVIRONMENT}
    os.environ.update(WORKER_ENVIRONMENT)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
    output = output if isinstance(output, Output) else Output(locate(output, error=OutputError))
    with dask_client(scheduler, workers) as client:
        return convert_on_dask(inputs, output, spec or Spec(), client, **options)
