"""Decoding encoded images on every core, chunk by chunk, in order.

Sources hand over their images as ``Encoded`` items (bytes, or a file to read) in dataset
order; ``decode_chunks`` yields them as uint8 chunks of at most ``max_images`` images. While
one chunk is handed on, the next is already being decoded, so at most two chunks (and their
encoded bytes) are in memory. Errors come in dataset order: the first bad image is the one
named, whichever worker met it first.

Three backends, chosen by ``choose_backend`` from measurements (benchmarks/decode.py):

- ``threads``: the main thread opens each header (Pillow's bomb check uses the process-wide
  warnings filters, so headers are read by one thread) and ``WORKERS`` threads decode the
  pixels, since Pillow releases the GIL while its decoders run. For photos this is as fast
  as processes, without copying pixels between processes.
- ``processes``: ``WORKERS`` forked processes open, check and decode whole batches. For small
  images (MNIST, CIFAR) Python's own work per image, not the decoder, is most of the time,
  and threads would only queue for the GIL: measured 2.6× slower than one thread.
- ``serial``: the calling thread alone, for work too small to be worth a pool.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, BinaryIO

import numpy as np

from pixscale.core.location import Location, is_remote, storage_exceptions, storage_reason
from pixscale.errors import InputError, PixscaleError
from pixscale.sources.base import UInt8Array
from pixscale.sources.pictures import (
    Encoded,
    Expect,
    bomb_guard,
    check_image,
    pillow_errors,
    read_header,
    require_pillow,
    to_pixels,
)
from pixscale.sources.plain_png import png_decoder
from pixscale.sources.resize import prepare


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (which ``taskset`` and container
    cpusets narrow), else every core of the machine."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on macOS and Windows
        return os.cpu_count() or 1


#: Decoding threads or processes: one per usable core.
WORKERS = usable_cores()

#: Images of at most this many pixels are "small": decoded by processes, or serially.
SMALL_IMAGE_PIXELS = 64 * 64
#: Fewer small images than this are decoded serially: starting processes would cost more.
MIN_PROCESS_IMAGES = 4096
#: Batches per worker and chunk for the process pool: enough to even out the load.
BATCHES_PER_WORKER = 2
#: Worker processes are forked (no re-import of the caller's ``__main__``, no start-up),
#: where fork is safe to use: Linux.
FORK = sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
#: ``auto`` (``choose_backend``'s rule), ``serial``, ``threads`` or ``processes``: to
#: measure one against another (benchmarks/decode.py).
BACKEND = "auto"


def useful_workers(asked: int | None = None) -> int:
    """Worker processes worth starting here: ``asked`` (default: one per usable core), but
    never more than the usable cores. Each worker holds an interpreter and its own chunks in
    flight, so workers beyond the cores add memory (about 65 MiB each) and no speed."""
    return max(1, min(asked or WORKERS, WORKERS))


def choose_backend(expect: Expect, count: int) -> str:
    """``serial``, ``threads`` or ``processes`` for ``count`` images like ``expect``."""
    if BACKEND != "auto":
        return BACKEND
    if WORKERS < 2 or count < 2:
        return "serial"
    width, height = expect.size
    if width * height > SMALL_IMAGE_PIXELS:
        return "threads"
    # a daemonic process (a dask worker, say) may not start processes of its own
    forks = FORK and not multiprocessing.current_process().daemon
    return "processes" if forks and count >= MIN_PROCESS_IMAGES else "serial"


def decode_chunks(
    items: Iterable[Encoded],
    expect: Expect,
    max_images: int,
    *,
    purpose: str = "reading images",
    backend: str = "threads",
) -> Iterator[UInt8Array]:
    """Decode ``items`` in order, ``max_images`` at a time, checked against ``expect``.

    Parameters
    ----------
    items
        The encoded images in dataset order (a lazy iterator: it is read one chunk ahead).
    expect
        Size, kind and mode every image must have (see ``pictures.check_image``).
    max_images
        Images per chunk yielded.
    purpose
        What needs Pillow, for the error when it is missing.
    backend
        ``serial``, ``threads`` or ``processes``.

    Yields
    ------
    numpy.ndarray
        uint8 chunks of shape ``(n, *expect.shape)``, ``n <= max_images``.
    """
    require_pillow(purpose)
    iterator = iter(items)
    with ExitStack() as stack:
        # Last in, first out: the items' files are closed, then the pending chunks' handles,
        # once the pool has stopped using them.
        stack.callback(getattr(iterator, "close", lambda: None))
        in_flight: list[Pending] = []

        @stack.callback
        def discard() -> None:
            for pending in in_flight:
                pending.discard()

        decoder = start_decoder(backend, expect)
        stack.callback(decoder.close)
        for batch in batched(iterator, max(1, max_images)):
            try:
                in_flight.append(decoder.submit(batch))
            except BaseException:
                for pending in in_flight:
                    pending.result()  # an earlier image's error comes first
                raise
            if len(in_flight) > 1:
                yield in_flight.pop(0).result()
        while in_flight:
            yield in_flight.pop(0).result()


def start_decoder(backend: str, expect: Expect) -> Decoder:
    try:
        return DECODERS[backend](expect)
    except OSError:  # no process to be had (a process limit): decode in this thread
        return Decoder(expect)


def batched(items: Iterator[Encoded], size: int) -> Iterator[list[Encoded]]:
    while batch := list(islice(items, size)):
        yield batch


@dataclass
class Pending:
    """One chunk being decoded: its rows arrive from ``jobs``, in order."""

    jobs: list[Future[Any]]
    assemble: Callable[[list[Any]], UInt8Array]
    handles: list[BinaryIO] = field(default_factory=list)
    #: The chunk's first image, named if a worker process dies decoding it.
    first: str = ""

    def result(self) -> UInt8Array:
        """The chunk, or the error of its first bad image."""
        try:
            return self.assemble([job.result() for job in self.jobs])
        except BrokenProcessPool as exc:
            raise InputError(
                f"{self.first}: a decoding process ended abruptly in the images from here on "
                "(out of memory, or a crash in the decoder)"
            ) from exc
        finally:
            self.discard()

    def discard(self) -> None:
        for handle in self.handles:
            handle.close()


def done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


class Decoder:
    """Decodes batches of images; ``close`` stops it and waits for its workers."""

    def __init__(self, expect: Expect) -> None:
        self.expect = expect
        self.pool: Executor | None = None

    def submit(self, batch: list[Encoded]) -> Pending:
        """Decoding in the calling thread (the ``serial`` backend)."""
        return Pending([done(decode_batch(batch, self.expect))], lambda rows: rows[0])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class ThreadDecoder(Decoder):
    """Headers read here, pixels decoded by ``WORKERS`` threads straight into the chunk."""

    def __init__(self, expect: Expect) -> None:
        super().__init__(expect)
        self.image_module = require_pillow()
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="pixscale-decode")

    def submit(self, batch: list[Encoded]) -> Pending:
        assert self.pool is not None
        chunk = np.empty((len(batch), *self.expect.shape), self.expect.dtype)
        pending = Pending([], lambda _: chunk)
        try:
            # one guard for the batch's headers: all of them are read here, in this thread
            with bomb_guard(self.image_module):
                for row, item in enumerate(batch):
                    handle = open_item(item)
                    pending.handles.append(handle)
                    with pillow_errors(item.origin, "read"):
                        image = read_header(self.image_module, handle, item.origin)
                        check_image(item.origin, image, self.expect)
                        prepare(image, self.expect.resize)
                    pending.jobs.append(
                        self.pool.submit(load_row, chunk, row, image, item, self.expect)
                    )
        except BaseException:
            pending.result()  # an earlier image's error comes first
            raise
        return pending


def load_row(chunk: UInt8Array, row: int, image: Any, item: Encoded, expect: Expect) -> None:
    with pillow_errors(item.origin, "decode"):
        chunk[row] = to_pixels(image, expect.mode, expect.resize)


def open_item(item: Encoded) -> BinaryIO:
    """The image's bytes opened; a file or object that cannot be opened is refused in one
    line naming it and why (a remote object's storage failing included)."""
    try:
        return item.open()
    except OSError as exc:
        raise InputError(f"{item.origin}: cannot open: {reason_of(item, exc)}") from exc
    except remote_errors(item.location) as exc:
        raise InputError(f"{item.origin}: cannot open: {storage_reason(exc)}") from exc


def reason_of(item: Encoded, exc: OSError) -> str:
    """Why ``item`` could not be opened: the system's words for a local file, the storage's
    for a remote object (fsspec's errors may carry no ``strerror``)."""
    if item.location is not None and is_remote(item.location):
        return storage_reason(exc)
    return str(exc.strerror)


def remote_errors(location: Location | None) -> tuple[type[BaseException], ...]:
    """The storage libraries' exceptions for a remote ``location``, else none."""
    return storage_exceptions() if location is not None and is_remote(location) else ()


class ProcessDecoder(Decoder):
    """``WORKERS`` forked processes each open, check and decode whole batches of images."""

    def __init__(self, expect: Expect) -> None:
        super().__init__(expect)
        png_decoder()  # imported once here, not in each worker
        with warnings.catch_warnings():
            # Python 3.12+ warns of forking a process that runs threads (the writer's, the
            # statistics'): the workers only decode, and touch no lock those threads hold.
            warnings.simplefilter("ignore", DeprecationWarning)
            context = multiprocessing.get_context("fork")
            self.pool = ProcessPoolExecutor(WORKERS, mp_context=context, initializer=worker_setup)
            # start the workers now, inside this block: the executor forks them lazily
            for job in [self.pool.submit(int) for _ in range(WORKERS)]:
                job.result()

    def submit(self, batch: list[Encoded]) -> Pending:
        assert self.pool is not None
        parts = min(len(batch), WORKERS * BATCHES_PER_WORKER)
        bounds = [len(batch) * k // parts for k in range(parts + 1)]
        jobs = [
            submitted(self.pool, batch[first:last], self.expect)
            for first, last in zip(bounds, bounds[1:], strict=False)
        ]
        return Pending(jobs, np.concatenate, first=batch[0].origin)


def packed(batch: list[Encoded]) -> tuple[list[str], list[bytes | None]]:
    """A batch as two lists, which pickle in one pass each: a list of ``Encoded`` is
    pickled object by object, which cost more than decoding a 28×28 PNG."""
    return [item.origin for item in batch], [item.data for item in batch]


def decode_packed(origins: list[str], data: list[bytes | None], expect: Expect) -> UInt8Array:
    """``decode_batch`` of a ``packed`` batch, in a worker process."""
    return decode_batch([Encoded(*item) for item in zip(origins, data, strict=True)], expect)


def submitted(pool: Executor, batch: list[Encoded], expect: Expect) -> Future[UInt8Array]:
    """``batch`` decoded by a worker process: ``packed`` where every item is its bytes or a
    local file; whole where an item is a remote object to fetch (its ``Location`` pickles
    with its storage options, and the worker opens it)."""
    if any(item.data is None and item.location is not None for item in batch):
        return pool.submit(decode_batch, batch, expect)
    return pool.submit(decode_packed, *packed(batch), expect)


def worker_setup() -> None:
    """Signals are the main process's to handle: a worker interrupted by Ctrl-C, or sent the
    main process's SIGTERM handler, would print its own traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def decode_batch(batch: list[Encoded], expect: Expect) -> UInt8Array:
    """Open, check and decode ``batch`` in this thread or worker process: every image's
    header checked, under one bomb guard for the batch."""
    image_module = require_pillow()
    out = np.empty((len(batch), *expect.shape), expect.dtype)
    with bomb_guard(image_module):
        for row, item in enumerate(batch):
            try:
                with open_item(item) as handle:
                    image = read_header(image_module, handle, item.origin)
                    check_image(item.origin, image, expect)
                    prepare(image, expect.resize)
                    out[row] = to_pixels(image, expect.mode, expect.resize)
            except PixscaleError:
                raise
            except Exception as exc:  # as ``pillow_errors``, without a context per image
                raise InputError(f"{item.origin}: cannot decode image ({exc})") from exc
    return out


DECODERS: dict[str, Callable[[Expect], Decoder]] = {
    "serial": Decoder,
    "threads": ThreadDecoder,
    "processes": ProcessDecoder,
}
