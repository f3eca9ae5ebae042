"""``.npy`` output (float32, float16 or packed uint8) with a JSON sidecar ``<output>.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from pixscale.core.labels import Labels
from pixscale.core.location import Location
from pixscale.core.params import dumps
from pixscale.store.backends.npy.header import padded_npy_header, write_npz
from pixscale.store.base import (
    Float32Array,
    Writer,
    checksum_field,
    close_written,
    labels_checksum,
    write_failed,
)
from pixscale.store.io.atomic import StagedOutputs
from pixscale.store.io.checksum import Checksum, StreamChecksum
from pixscale.store.io.direct import DirectFile
from pixscale.store.naming import arrays_path, companions, labels_path, sidecar_path


class StreamNpyWriter(Writer):
    """.npy to a stream such as standard output: no sidecar, no temporary file; the
    checksum goes into the record (``--params-out``)."""

    def __init__(self, stream: BinaryIO, shape: tuple[int, ...], dtype: str = "<f4") -> None:
        self.target, self.shape, self.stream = Path("-"), shape, stream
        self.dtype = np.dtype(dtype)
        self.checksum = Checksum()
        self.written = 0
        stream.write(padded_npy_header(shape, descr=self.dtype.str))

    def write(self, chunk: Float32Array) -> None:
        data = np.ascontiguousarray(chunk, self.dtype).data.cast("B")
        self.checksum.update(data)
        self.stream.write(data)
        self.written += chunk.shape[0]

    def finish(
        self, record: dict[str, Any], arrays: dict[str, npt.NDArray[Any]], labels: Labels | None
    ) -> dict[str, Any]:
        self.stream.flush()
        fields = {
            "file": "-",
            "format": "npy",
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            **checksum_field(self.checksum, self.written, self.shape),
        }
        return {**record.get("output", {}), **fields}

    def close(self) -> None:
        """The stream belongs to the caller."""


class NpyWriter(Writer):
    """Writes the header up front, then appends chunks; nothing is held in memory.

    With ``direct`` the data bypasses the page cache where the file system allows it. The
    checksum of the data bytes is computed beside their writes.
    """

    def __init__(
        self,
        target: Location,
        shape: tuple[int, ...],
        staged: StagedOutputs,
        direct: bool = False,
        dtype: str = "<f4",
    ) -> None:
        self.target, self.shape, self.staged = target, shape, staged
        self.dtype = np.dtype(dtype)
        self.temp = staged.stage_data(target, shape[0])
        staged.own(companions(target, "npy"))
        self.checksum = StreamChecksum()
        self.handle = DirectFile(self.temp, direct, read_back=True)
        self.handle.write(padded_npy_header(shape, descr=self.dtype.str))
        self.written = 0

    def write(self, chunk: Float32Array) -> None:
        data = np.ascontiguousarray(chunk, self.dtype)
        try:
            with self.checksum.during(data):
                self.handle.write(data)
        except OSError as exc:
            raise write_failed(self.target, exc) from exc
        self.written += chunk.shape[0]

    def finish(
        self, record: dict[str, Any], arrays: dict[str, npt.NDArray[Any]], labels: Labels | None
    ) -> dict[str, Any]:
        self.close()
        output: dict[str, Any] = {
            **record.get("output", {}),
            "file": self.target.name,
            "format": "npy",
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            **checksum_field(self.checksum, self.written, self.shape),
        }
        if labels is not None:
            path = labels_path(self.target)
            with self.staged.stage(path).open("wb") as handle:
                np.save(handle, labels.values, allow_pickle=False)
            output["labels"] = path.name
            output["labels_checksum"] = labels_checksum(labels.values)
            if labels.class_names:
                output["class_names"] = labels.class_names
        if arrays:
            path = arrays_path(self.target)
            write_npz(self.staged.stage(path), arrays)
            output["arrays"] = path.name
        full = dict(record, output=output)
        self.staged.stage(sidecar_path(self.target)).write_text(dumps(full))
        return output

    def close(self) -> None:
        close_written(self.checksum, self.handle, self.target)
