"""What every output writer offers the convert pipeline."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.labels import Labels
from pixscale.core.location import Location
from pixscale.errors import OutputError
from pixscale.store.io.checksum import Checksum, checksum_of

Float32Array = npt.NDArray[np.float32]


class Writer(ABC):
    """Receives float32 chunks in order, then the record, labels and parameter arrays."""

    target: Location
    shape: tuple[int, ...]

    @abstractmethod
    def write(self, chunk: Float32Array) -> None:
        """Append the next chunk of images."""

    @abstractmethod
    def finish(
        self, record: dict[str, Any], arrays: dict[str, npt.NDArray[Any]], labels: Labels | None
    ) -> dict[str, Any]:
        """Store the record and companions; return the record's ``output`` section."""

    @abstractmethod
    def close(self) -> None:
        """Release file handles (also after a failure)."""


class PartWriter(Writer):
    """A writer of one part of an output that another process assembles (a Dask task's
    region): ``finish`` only closes it and hands back the record's ``output`` section."""

    def finish(
        self, record: dict[str, Any], arrays: dict[str, npt.NDArray[Any]], labels: Labels | None
    ) -> dict[str, Any]:
        self.close()
        return dict(record.get("output", {}))


def close_written(checksum: Any, handle: Any, target: Location) -> None:
    """Stop ``checksum``'s helper thread, then close ``handle`` (a ``DirectFile``) if still
    open: a failure to flush what was written is the write's failure."""
    checksum.close()
    if not handle.closed:
        try:
            handle.close()
        except OSError as exc:
            raise write_failed(target, exc) from exc


def write_failed(target: Location, exc: BaseException) -> OutputError:
    """The one-line error of a failed write: the system's reason (``File too large``,
    ``No space left on device``), never a library's multi-line report."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        reason = os.strerror(code)
    else:
        reason = next(iter(str(exc).splitlines()), "") or type(exc).__name__
    return OutputError(f"{target}: write failed: {reason}")


def labels_checksum(values: npt.NDArray[Any]) -> dict[str, str]:
    """The record's checksum of stored labels: their bytes as stored (C order, own dtype)."""
    return checksum_of(np.ascontiguousarray(values))


def checksum_field(checksum: Checksum, written: int, shape: tuple[int, ...]) -> dict[str, Any]:
    """``{"checksum": …}`` for the record when all ``shape[0]`` images passed through the
    writer's ``write`` (and so through ``checksum``); nothing when others wrote the data,
    as a partial checksum would be wrong: then the record's ``output`` section given to
    ``finish`` carries the checksum, which writers keep (the dask engine combines its
    tasks' CRC-32s with ``pixscale.store.io.checksum.crc32_combine``)."""
    return {"checksum": checksum.record()} if written == shape[0] else {}
