"""Writing the ``images`` files of one region of a Zarr output (the whole run, or a Dask
task's part)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pixscale.core.location import is_remote
from pixscale.errors import OutputError
from pixscale.store.backends.zarr.codec import gzip_chunk
from pixscale.store.backends.zarr.layout import NO_CHUNK, ZarrImages
from pixscale.store.backends.zarr.storage import (
    ObjectFile,
    Uploads,
    open_file,
    put_file,
    require_zarr,
    zarr_location,
)
from pixscale.store.base import (
    Float32Array,
    PartWriter,
)
from pixscale.store.io.atomic import (
    current_umask,
)
from pixscale.store.io.checksum import StreamChecksum
from pixscale.store.io.direct import DirectFile
from pixscale.store.naming import (
    IMAGES_DATASET,
)


class RegionWriter(PartWriter):
    """Writes the ``images`` files of one region, in order, each once.

    Uncompressed: each file (a shard) is streamed front to back straight from the
    caller's buffers (``O_DIRECT`` where asked), its last chunk padded with the fill value
    at the array's end, then its index: chunk ``k`` at byte ``k × chunk bytes``, and chunks
    beyond the array's end not stored. Compressed: each chunk is gathered whole in a
    buffer and written through zarr-python. Nothing is read back or written twice.

    ``checksum`` is the CRC-32 of the region's values as the array holds them (without
    padding), summed beside the writes: the regions' CRCs combine in order into that of
    the whole array, which is the local HDF5's.
    """

    def __init__(self, images: ZarrImages, start: int, count: int) -> None:
        step, total = images.file_rows, images.shape[0]
        if start % step or (start + count) % step and start + count != total:
            raise OutputError(f"region {start}…{start + count} does not cover whole files")
        self.images = images
        self.target = images.root
        self.shape = (count, *images.shape[1:])
        self.start, self.stop = start, start + count
        self.position = start
        self.checksum = StreamChecksum()
        self.file_mode = 0o666 & ~current_umask()
        self.handle: DirectFile | ObjectFile | None = None  # the file being streamed (raw)
        self.gathered: Float32Array | None = None  # the chunk being gathered (compressed)
        self.array: Any = None
        #: Objects on their way to an object store (None for a local store).
        self.uploads = Uploads() if is_remote(images.root) else None

    def write(self, chunk: Float32Array) -> None:
        values = np.ascontiguousarray(chunk, "<f4")
        if self.position + values.shape[0] > self.stop:
            raise OutputError(f"{self.target}: more images than the region holds")
        try:
            with self.checksum.during(values):
                if self.images.raw:
                    self._write_raw(values)
                else:
                    self._write_compressed(values)
        except OSError as exc:
            raise OutputError(f"{self.target}: write failed: {exc.strerror or exc}") from exc

    def _write_raw(self, values: Float32Array) -> None:
        step = self.images.file_rows
        done = 0
        while done < values.shape[0]:
            if self.handle is None:
                index = self.position // step
                path = self.images.file_path(index)
                size = self.images.file_bytes(index)
                self.handle = open_file(
                    path, self.images.direct, self.file_mode, size, self.uploads
                )
            take = min(step - self.position % step, values.shape[0] - done)
            self.handle.write(values[done : done + take])
            done += take
            self.position += take
            if self.position % step == 0 or self.position == self.stop:
                self._end_file()

    def _end_file(self) -> None:
        """Pad the last chunk of the array, append the index and close the file."""
        assert self.handle is not None
        handle, self.handle = self.handle, None
        rows = self.images.rows
        try:
            missing = -self.position % rows
            if missing:
                handle.write(np.full((missing, *self.shape[1:]), np.nan, "<f4"))
            first = (self.position - 1) // self.images.file_rows * self.images.file_rows
            stored = -(-(self.position - first) // rows)
            chunk_bytes = rows * 4 * math.prod(self.shape[1:])
            index = np.full((self.images.file_rows // rows, 2), NO_CHUNK, "<u8")
            index[:stored, 0] = np.arange(stored, dtype=np.uint64) * np.uint64(chunk_bytes)
            index[:stored, 1] = chunk_bytes
            handle.write(index)
        finally:
            handle.close()

    def _write_compressed(self, values: Float32Array) -> None:
        rows = self.images.rows
        done = 0
        while done < values.shape[0]:
            filled = self.position % rows
            take = min(rows - filled, values.shape[0] - done)
            whole = filled == 0 and take == rows
            if self.gathered is None:
                self.gathered = np.empty((rows, *self.shape[1:]), np.float32)
            if not whole:
                self.gathered[filled : filled + take] = values[done : done + take]
            self.position += take
            if self.position % rows == 0 or self.position == self.stop:
                first = self.position - filled - take
                data = values[done : done + take] if whole else self.gathered[: filled + take]
                self._store_chunk(first, data)
            done += take

    def _store_chunk(self, first: int, data: Float32Array) -> None:
        """Store the chunk of images ``first``…, ``data`` (short at the array's end, where
        the fill value pads it): encoded here for gzip, else through zarr-python."""
        level = self.images.gzip_level
        if level is None:
            self._zarr_array()[first : first + data.shape[0]] = data
            return
        rows = self.images.rows
        if data.shape[0] < rows:
            assert self.gathered is not None  # a short chunk is always gathered
            self.gathered[data.shape[0] :] = np.nan
            data = self.gathered
        path = self.images.file_path(first // self.images.file_rows)
        put_file(path, gzip_chunk(data, level), self.uploads)

    def _zarr_array(self) -> Any:
        if self.array is None:
            zarr = require_zarr()
            location = zarr_location(self.images.root, IMAGES_DATASET)
            self.array = zarr.open_array(location, mode="r+")
        return self.array

    def close(self) -> None:
        """Stop the checksum's helper thread; close a file left open by a failure; wait
        for the uploads (their first failure raised)."""
        self.checksum.close()
        if self.handle is not None:
            handle, self.handle = self.handle, None
            if not isinstance(handle, ObjectFile):
                handle.close()  # an object left unfinished is never uploaded
        if self.uploads is not None:
            uploads, self.uploads = self.uploads, None
            uploads.wait()

    def complete(self) -> bool:
        return self.position == self.stop

    @property
    def written(self) -> int:
        """Images written so far."""
        return self.position - self.start
