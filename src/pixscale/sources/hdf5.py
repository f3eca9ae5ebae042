"""uint8 and uint16 datasets inside HDF5 files written by other tools.

Only data stored inside the named file is read: external links, datasets whose bytes live
in raw external files and virtual datasets (mapped from other files) are refused, since a
file received from elsewhere must not make pixscale read the user's other files. Every
dataset read is looked up through ``pixscale.core.hdf5_open``, which refuses them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, ClassVar

from pixscale.core.formats import RECORD_ATTRIBUTE
from pixscale.core.hdf5_open import local_dataset
from pixscale.core.layouts import default_layout
from pixscale.core.location import (
    SEEK_BLOCK_BYTES,
    Location,
    collection_paused,
    is_remote,
    open_bytes,
    shown,
    storage_errors,
)
from pixscale.core.pixels import native, require_source_dtype, source_dtype
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array, check_labels_size

LABEL_NAMES = ("labels", "label", "y", "targets")
#: Largest chunk of a chunked dataset: reading any image decompresses its whole chunk.
MAX_CHUNK_BYTES = 256 << 20
#: Exceptions by which h5py reports a damaged file or an unreadable object.
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)

if TYPE_CHECKING:
    import h5py


def check_stored(path: Location, dataset: h5py.Dataset, key: str, what: str) -> None:
    """Refuse a dataset with unwritten storage (read back as fill values, it would turn a
    tiny file into any amount of made-up data) or with chunks too large to decompress."""
    import h5py

    layout = dataset.id.get_create_plist().get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        expected = dataset.size * dataset.dtype.itemsize
        stored = dataset.id.get_storage_size()
        if stored < expected:
            raise InputError(
                f"{shown(path)}: {what} {key!r} stores {stored:,} of its {expected:,} bytes; "
                "the rest is unallocated and would read as fill values"
            )
    elif layout == h5py.h5d.CHUNKED:
        chunk_bytes = math.prod(dataset.chunks) * dataset.dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise InputError(
                f"{shown(path)}: {what} {key!r} has chunks of {chunk_bytes:,} bytes, over the "
                f"limit of {MAX_CHUNK_BYTES:,}"
            )
        expected = math.prod(-(-n // c) for n, c in zip(dataset.shape, dataset.chunks, strict=True))
        stored = dataset.id.get_num_chunks()
        if stored < expected:
            raise InputError(
                f"{shown(path)}: {what} {key!r} stores {stored:,} of its {expected:,} chunks; "
                "the rest are unallocated and would read as fill values"
            )


def find_labels(handle: h5py.File, path: Location, key: str, count: int) -> Labels | None:
    """A labels dataset of the right length beside the images (``x_…`` ↔ ``y_…`` too)."""
    group, _, name = key.rpartition("/")
    candidates = [f"{group}/{n}" if group else n for n in LABEL_NAMES]
    if name.startswith("x"):
        candidates.insert(0, f"{group}/y{name[1:]}" if group else f"y{name[1:]}")
    for candidate in candidates:
        item = local_dataset(handle, path, candidate, "labels")
        if item is None or item.shape != (count,) or item.dtype.kind not in "iu":
            continue
        check_labels_size(path, count, item.dtype.itemsize)
        check_stored(path, item, candidate, "labels")
        return Labels(item[()], candidate)
    return None


def uint8_datasets(handle: h5py.File) -> tuple[list[str], list[str]]:
    """Names of the uint8/uint16 datasets of two or more dimensions reached through hard links
    (``visititems`` follows no soft or external link), and the external links seen."""
    import h5py

    found: list[str] = []
    external: list[str] = []

    def visit(name: str, link: object) -> None:
        if isinstance(link, h5py.ExternalLink):
            external.append(name)
            return
        if not isinstance(link, h5py.HardLink):
            return
        item = handle.get(name)
        if isinstance(item, h5py.Dataset) and is_images(item):
            found.append(name)

    handle.visititems_links(visit)
    return found, external


def is_images(dataset: h5py.Dataset) -> bool:
    try:
        return source_dtype(dataset.dtype) is not None and dataset.ndim >= 2
    except TypeError:  # a type numpy cannot represent
        return False


def choose_key(handle: h5py.File, path: Location) -> str:
    found, external = uint8_datasets(handle)
    if len(found) == 1:
        return found[0]
    listing = ", ".join(found) or "none"
    skipped = f" (external links not followed: {', '.join(external)})" if external else ""
    raise InputError(
        f"{shown(path)}: uint8/uint16 image datasets: {listing}{skipped}; choose one with --key"
    )


@dataclass
class Hdf5Source(Source):
    random_access: ClassVar[bool] = True
    key: str = ""

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.window(0, self.n_images, max_images)

    def read_window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        path = self.files[0]
        with hdf5_file(path, f"cannot read dataset {self.key!r}") as handle:
            dataset = local_dataset(handle, path, self.key, "dataset")
            if dataset is None:
                raise InputError(f"{shown(path)}: no dataset {self.key!r}")
            for first in range(start, stop, max_images):
                yield native(dataset[first : min(first + max_images, stop)], self.dtype)


@contextlib.contextmanager
def hdf5_file(path: Location, failing: str) -> Iterator[h5py.File]:
    """``path`` opened by h5py (a URL through a seekable file object, read by byte range),
    h5py's errors and the storage's becoming an InputError naming it: ``failing`` says what
    failed."""
    import h5py

    raw = remote_file(path) if is_remote(path) else None
    try:
        with collection_paused(path), h5py.File(path if raw is None else raw, "r") as handle:
            yield handle
    except InputError:
        raise
    except H5_ERRORS as exc:
        raise InputError(f"{shown(path)}: {failing} ({exc})") from exc
    finally:
        if raw is not None:
            raw.close()


def remote_file(path: Location) -> BinaryIO:
    """The object at the URL ``path`` opened for reading, or why it cannot be."""
    with storage_errors(path):
        return open_bytes(path, SEEK_BLOCK_BYTES)


def open_hdf5(path: Location, key: str | None) -> Hdf5Source:
    with hdf5_file(path, "damaged HDF5 file") as handle:
        return describe(handle, path, key)


def describe(handle: h5py.File, path: Location, key: str | None) -> Hdf5Source:
    """The images dataset ``key`` (or the only uint8/uint16 one) and the labels beside it."""
    if RECORD_ATTRIBUTE in handle.attrs:
        raise InputError(
            f"{shown(path)}: is a pixscale output (float32); use 'pixscale invert' to get "
            "uint8 back"
        )
    key = choose_key(handle, path) if key is None else key
    item = local_dataset(handle, path, key, "dataset")
    if item is None:
        raise InputError(f"{shown(path)}: no dataset {key!r}")
    pixels = require_source_dtype(path, item.dtype, f"dataset {key!r}")
    if item.ndim < 2:
        raise InputError(f"{shown(path)}: dataset {key!r} has shape {item.shape}; expected images")
    check_stored(path, item, key, "dataset")
    shape = tuple(item.shape)
    return Hdf5Source(
        name=f"{path.name}:{key}",
        format="hdf5",
        shape=shape,
        layout=default_layout(len(shape)),
        files=(path,),
        labels=find_labels(handle, path, key, shape[0]),
        key=key,
        dtype=pixels,
    )
