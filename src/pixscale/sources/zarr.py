"""uint8 and uint16 arrays in a Zarr v3 store (a folder with ``zarr.json``), read one window
at a time.

A store holding one array is that array; a group is searched for uint8/uint16 arrays of two or
more dimensions (``--key`` chooses among several), and a 1-D integer array named
``labels`` (or ``y…`` beside ``x…``) of the same length comes along as the labels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pixscale.core.layouts import default_layout
from pixscale.core.pixels import require_source_dtype, source_dtype
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array, check_labels_size

INSTALL_HINT = "pip install 'pixscale[zarr]'"
ZARR_JSON = "zarr.json"
#: Names tried for the labels beside the images (after ``y…`` for ``x…``).
LABEL_NAMES = ("labels", "label", "y", "targets")
#: The record attribute of a pixscale output (a float32 store, not an input).
RECORD_ATTRIBUTE = "pixscale_params"


def require_zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise InputError(f"Zarr input needs zarr-python 3: {INSTALL_HINT}") from None
    return zarr


def looks_like_zarr(path: Path) -> bool:
    """A folder with a Zarr v3 ``zarr.json``."""
    return path.is_dir() and (path / ZARR_JSON).is_file()


@dataclass
class ZarrSource(Source):
    """A uint8/uint16 array of a Zarr v3 store (``key`` inside it; ``""`` for a bare array)."""

    random_access: ClassVar[bool] = True
    key: str = ""

    def _array(self) -> Any:
        zarr = require_zarr()
        path = self.files[0]
        try:
            return zarr.open_array(str(path), path=self.key, mode="r", zarr_format=3)
        except Exception as exc:  # zarr raises many kinds on a damaged store
            raise InputError(f"{path}: cannot open Zarr array {self.key!r} ({exc})") from exc

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.window(0, self.n_images, max_images)

    def read_window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        array = self._array()
        path = self.files[0]
        for first in range(start, stop, max_images):
            last = min(first + max_images, stop)
            try:
                values = np.ascontiguousarray(array[first:last], np.dtype(self.dtype))
            except Exception as exc:  # a missing or corrupt chunk object
                raise InputError(f"{path}: cannot read images {first}…{last - 1} ({exc})") from exc
            yield values

    def sha256(self) -> str:
        """Digest of the values in C order (little-endian; a store is many objects, compressed or
        not, so its files are not a stable thing to hash; its values are)."""
        digest = hashlib.sha256()
        rows = max(1, (16 << 20) // max(1, self.image_bytes))
        for chunk in self.chunks(rows):
            digest.update(chunk.data)
        return digest.hexdigest()


def find_images(group: Any, path: Path) -> str:
    """The only uint8/uint16 array of two or more dimensions in ``group`` (recursively)."""
    found = list_uint8(group)
    if len(found) == 1:
        return found[0]
    listing = ", ".join(sorted(found)) or "none"
    raise InputError(f"{path}: uint8/uint16 image arrays: {listing}; choose one with --key")


def list_uint8(group: Any) -> list[str]:
    found = [
        name
        for name, array in group.arrays()
        if source_dtype(array.dtype) is not None and array.ndim >= 2
    ]
    for name, sub in group.groups():
        found += [f"{name}/{inner}" for inner in list_uint8(sub)]
    return found


def find_labels(group: Any, path: Path, key: str, count: int) -> Labels | None:
    """A 1-D integer array of ``count`` entries beside the images."""
    parent, _, name = key.rpartition("/")
    candidates = [f"{parent}/{n}" if parent else n for n in LABEL_NAMES]
    if name.startswith("x"):
        candidates.insert(0, f"{parent}/y{name[1:]}" if parent else f"y{name[1:]}")
    for candidate in candidates:
        try:
            item = group[candidate]
        except KeyError:
            continue
        if not hasattr(item, "dtype") or tuple(item.shape) != (count,):
            continue
        if np.dtype(item.dtype).kind not in "iu":
            continue
        check_labels_size(path, count, np.dtype(item.dtype).itemsize)
        return Labels(np.asarray(item[...]), candidate)
    return None


#: Chunks an input array may have: counting the stored ones costs memory per chunk.
MAX_CHUNKS = 1 << 24


def check_stored(array: Any, path: Path, key: str) -> None:
    """Every chunk must be stored: a missing one would read as fill values, and a header
    alone could declare any number of images."""
    expected = int(array.nchunks)
    if expected > MAX_CHUNKS:
        raise InputError(f"{path}: declares {expected:,} chunks; at most {MAX_CHUNKS:,} are read")
    try:
        stored = int(array.nchunks_initialized)
    except Exception as exc:  # zarr raises many kinds on a damaged store
        raise InputError(f"{path}: damaged Zarr store ({type(exc).__name__}: {exc})") from exc
    if stored < expected:
        name = f" {key!r}" if key else ""
        raise InputError(
            f"{path}: array{name} has {expected - stored:,} of {expected:,} chunks not stored "
            "(they would read as fill values)"
        )


def node_type(path: Path) -> str:
    try:
        meta = json.loads((path / ZARR_JSON).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: damaged Zarr store ({ZARR_JSON}: {exc})") from exc
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3:
        raise InputError(f"{path}: not a Zarr v3 store")
    if RECORD_ATTRIBUTE in (meta.get("attributes") or {}):
        raise InputError(
            f"{path}: is a pixscale output (float32); use 'pixscale invert' to get uint8 back"
        )
    return str(meta.get("node_type", ""))


def open_zarr(path: Path, key: str | None = None) -> ZarrSource:
    """Open the uint8/uint16 images of the Zarr v3 store ``path`` (``key`` names them in a
    group)."""
    zarr = require_zarr()
    kind = node_type(path)
    labels = None
    try:
        if kind == "array":
            if key:
                raise InputError(f"{path}: is a single Zarr array; --key does not apply")
            array = zarr.open_array(str(path), mode="r", zarr_format=3)
            key = ""
        else:
            group = zarr.open_group(str(path), mode="r", zarr_format=3)
            key = find_images(group, path) if key is None else key
            try:
                array = group[key]
            except KeyError:
                raise InputError(f"{path}: no array {key!r}") from None
            if not hasattr(array, "dtype"):
                raise InputError(f"{path}: {key!r} is a group, not an array")
            labels = find_labels(group, path, key, int(array.shape[0]))
    except InputError:
        raise
    except Exception as exc:  # zarr raises many kinds on a damaged store
        raise InputError(f"{path}: damaged Zarr store ({exc})") from exc
    pixels = require_source_dtype(path, array.dtype, f"array {key!r}")
    check_stored(array, path, key)
    shape = tuple(int(n) for n in array.shape)
    if len(shape) < 2:
        raise InputError(f"{path}: array {key!r} has shape {shape}; expected images")
    return ZarrSource(
        name=f"{path.name}:{key}" if key else path.name,
        format="zarr",
        shape=shape,
        layout=default_layout(len(shape)),
        files=(path,),
        labels=labels,
        key=key,
        dtype=pixels,
    )
