"""Overlap computing with writing: chunks are written by one background thread.

File writes and HDF5 I/O release the GIL, so on two cores the next chunk is scaled while
the previous one is written. Output buffers come from a small ring and are reused, which
also saves the page faults of allocating a fresh array per chunk.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.store.base import Writer
from pixscale.store.io.direct import aligned_empty

#: Chunks queued for writing at most; one more is being filled meanwhile.
QUEUE_DEPTH = 2


class BackgroundWriter:
    """Hands chunks to ``writer`` on a worker thread, at most ``depth`` pending."""

    def __init__(
        self,
        writer: Writer,
        chunk_shape: tuple[int, ...],
        depth: int = QUEUE_DEPTH,
        dtype: npt.DTypeLike = np.float32,
    ):
        self.writer = writer
        self.depth = depth
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixscale-writer")
        self.pending: deque[Future[None]] = deque()
        self.buffers = [aligned_empty(chunk_shape, dtype) for _ in range(depth + 1)]
        self.turn = 0

    def buffer(self, images: int) -> npt.NDArray[Any]:
        """A free output buffer for ``images`` images (not queued for writing)."""
        while len(self.pending) >= self.depth:
            self.pending.popleft().result()
        buffer = self.buffers[self.turn % len(self.buffers)]
        self.turn += 1
        return buffer[:images]

    def write(self, chunk: npt.NDArray[Any]) -> None:
        self.pending.append(self.pool.submit(self.writer.write, chunk))

    def flush(self) -> None:
        """Wait for every queued write; re-raises the first write error."""
        while self.pending:
            self.pending.popleft().result()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is not None:
            for future in self.pending:
                future.cancel()
        try:
            if kind is None:
                self.flush()
        finally:
            self.pool.shutdown(wait=True)
