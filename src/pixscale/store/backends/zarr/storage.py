"""Where the bytes of a Zarr output go: every file of a store is written through here.

zarr-python writes the metadata documents (``zarr.json``), labels and parameter arrays at
``zarr_location``; pixscale writes the ``images`` files itself, a streamed uncompressed
shard with ``open_file`` and a whole compressed chunk with ``put_file``. A store is a local
folder or a prefix on an object store (a ``UPath``): there a shard streams as a multipart
upload and a chunk is one ``PUT``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pixscale.core.location import (
    Location,
    is_remote,
    shown,
    storage_exceptions,
    storage_reason,
)
from pixscale.errors import OutputError, PixscaleError
from pixscale.store.io.direct import DirectFile

if TYPE_CHECKING:
    from upath import UPath

INSTALL_HINT = "pip install 'pixscale[zarr]'"


def require_zarr(error: type[PixscaleError] = OutputError) -> Any:
    """The ``zarr`` module (v3), or a one-line error naming the extra to install."""
    try:
        import zarr
    except ImportError:
        raise error(f"Zarr needs zarr-python 3: {INSTALL_HINT}") from None
    if not str(zarr.__version__).split(".")[0].isdigit() or int(zarr.__version__[0]) < 3:
        raise error(f"Zarr needs zarr-python 3 (found {zarr.__version__}): {INSTALL_HINT}")
    return zarr


def zarr_location(root: Location, key: str = "", read_only: bool = False) -> Any:
    """What zarr-python is given to reach the node ``key`` (the group when empty) of the
    store at ``root``: a folder's path, or an fsspec store on the object store."""
    if is_remote(root):
        from zarr.storage import FsspecStore

        url = shown(root / key if key else root)
        options = dict(root.storage_options)
        return FsspecStore.from_url(url, storage_options=options, read_only=read_only)
    return str(root / key) if key else str(root)


#: Objects one writer uploads at once, beside the one it fills: each holds a shard (64 MiB
#: at most by default), so uploading overlaps the conversion in bounded memory.
UPLOADS_IN_FLIGHT = 1


class Uploads:
    """Whole objects uploaded by background threads, at most ``UPLOADS_IN_FLIGHT`` at once;
    ``wait`` returns when all are stored, or raises the first failure."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(UPLOADS_IN_FLIGHT, thread_name_prefix="pixscale-upload")
        self.room = threading.BoundedSemaphore(UPLOADS_IN_FLIGHT)
        self.pending: list[Future[None]] = []

    def put(self, path: UPath, data: bytes) -> None:
        """Upload ``data`` as the object ``path`` once a slot is free."""
        self.room.acquire()
        try:
            self.pending.append(self.pool.submit(self.upload, path, data))
        except BaseException:
            self.room.release()
            raise

    def upload(self, path: UPath, data: bytes) -> None:
        try:
            # one PUT of the whole object: no part is copied out of it
            path.fs.pipe_file(path.path, data, chunksize=max(len(data) + 1, 5 << 20))
        except storage_exceptions() as exc:
            raise OutputError(f"{shown(path)}: cannot upload: {storage_reason(exc)}") from exc
        finally:
            self.room.release()

    def wait(self) -> None:
        """Every upload done (the first failure raised); the threads stopped."""
        try:
            for future in self.pending:
                future.result()
        finally:
            self.pending.clear()
            self.pool.shutdown(wait=True, cancel_futures=True)


class ObjectFile:
    """A new object of the store, gathered front to back in memory and handed to
    ``uploads`` whole when closed (one request, while the next object is filled)."""

    def __init__(self, path: UPath, uploads: Uploads, size: int) -> None:
        self.path, self.uploads = path, uploads
        self.buffer: npt.NDArray[np.uint8] | None = np.empty(size, np.uint8)
        self.filled = 0

    def write(self, values: npt.NDArray[Any]) -> None:
        assert self.buffer is not None, "written after close"
        data = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
        self.buffer[self.filled : self.filled + data.size] = data
        self.filled += data.size

    def close(self) -> None:
        if self.buffer is not None:
            # bytes: the one body the storage client sends without copying it again
            data, self.buffer = self.buffer[: self.filled].tobytes(), None
            self.uploads.put(self.path, data)


def open_file(
    path: Location, direct: bool, mode: int, size: int, uploads: Uploads | None = None
) -> DirectFile | ObjectFile:
    """A new file of ``size`` bytes of the store, streamed front to back (``O_DIRECT`` when
    ``direct``), with permissions ``mode``; an object, gathered and handed to ``uploads``."""
    if is_remote(path):
        assert uploads is not None, "an object store's files go through Uploads"
        return ObjectFile(path, uploads, size)
    handle = DirectFile(path, direct)
    os.fchmod(handle.fd, mode)
    return handle


def put_file(path: Location, data: bytes, uploads: Uploads | None = None) -> None:
    """One whole file of the store, as zarr-python writes its own (permissions by the
    umask); an object, handed to ``uploads``."""
    if is_remote(path):
        assert uploads is not None, "an object store's files go through Uploads"
        uploads.put(path, data)
        return
    with path.open("wb") as handle:
        handle.write(data)
