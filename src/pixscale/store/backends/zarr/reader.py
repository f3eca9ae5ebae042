"""Reading a pixscale Zarr output back: its group, its ``images`` (uncompressed shards as
memory maps) and labels."""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.containment import contained_store
from pixscale.core.location import Location, is_remote
from pixscale.core.zarr_shards import Shards, native_bytes_only
from pixscale.errors import InputError, PixscaleError
from pixscale.store.backends.zarr.layout import NO_CHUNK
from pixscale.store.backends.zarr.storage import require_zarr, zarr_location
from pixscale.store.naming import (
    IMAGES_DATASET,
    LABELS_DATASET,
)


def open_zarr_group(path: Location, error: type[PixscaleError] = InputError) -> Any:
    zarr = require_zarr(error)
    try:
        # every key read must resolve inside the output (no chunk linked from elsewhere)
        store = zarr_location(path, read_only=True) if is_remote(path) else contained_store(path)
        return zarr.open_group(store, mode="r", zarr_format=3)
    except PixscaleError:
        raise
    except Exception as exc:  # zarr raises many kinds on a damaged or foreign store
        raise error(f"{path}: not a readable Zarr v3 group ({exc})") from exc


@dataclass
class ZarrOutput:
    """What a reader of a pixscale Zarr output needs: the images array (lazy), its shape
    and dtype, and the labels."""

    images: Any
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    labels: npt.NDArray[Any] | None


def open_zarr_output(path: Location) -> ZarrOutput:
    """Open a pixscale Zarr output's ``images`` (and read its labels)."""
    group = open_zarr_group(path)
    if IMAGES_DATASET not in group:
        raise InputError(f"{path}: no 'images' array")
    images = group[IMAGES_DATASET]
    labels = np.asarray(group[LABELS_DATASET][...]) if LABELS_DATASET in group else None
    return ZarrOutput(images, tuple(images.shape), np.dtype(images.dtype), labels)


def open_zarr_images(path: Location) -> Any:
    """The ``images`` of a pixscale Zarr output for reading samples: ``ShardedImages``
    where the files are uncompressed shards as pixscale writes them, else the zarr array."""
    images = open_zarr_output(path).images
    return ShardedImages.of(path, images) or images


class ShardedImages:
    """The images of uncompressed shards, each file's run of inner chunks read as one
    memory map (``d[i]``, ``d[a:b]``, ``d[positions]`` as numpy gives them, each result an
    array of its own): a sample costs about a read of its own bytes, and no call into
    zarr-python.

    A shard is mapped on first use, after its index (read through the containment rule)
    shows every inner chunk of its images stored, of full size, one after the other from
    its first; a shard laid out otherwise is read through zarr-python.
    """

    def __init__(self, path: Path, array: Any, shards: Any) -> None:
        from pixscale.core.containment import Root

        self.path = path
        self.array = array
        self.layout = shards
        self.root = Root(path)
        self.shape: tuple[int, ...] = tuple(int(n) for n in array.shape)
        self.dtype: np.dtype[Any] = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.file_rows = shards.shard[0]
        self.maps: list[npt.NDArray[Any] | None] = [None] * shards.grid[0]
        self.encode = array.metadata.encode_chunk_key

    @classmethod
    def of(cls, path: Location, array: Any) -> ShardedImages | None:
        """The reader of ``array`` (the ``images`` of the store ``path``), or None when its
        files are not uncompressed shards of whole images in this machine's byte order."""
        from zarr.codecs import ShardingCodec

        if is_remote(path):
            return None  # zarr-python reads an inner chunk by range through the index
        codecs = list(array.metadata.codecs)
        if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
            return None
        codec = codecs[0]
        shape = tuple(int(n) for n in array.shape)
        itemsize = np.dtype(array.dtype).itemsize
        if (
            not native_bytes_only(list(codec.codecs), itemsize)
            or tuple(codec.chunk_shape[1:]) != shape[1:]
            or tuple(array.shards[1:]) != shape[1:]
            or not shape[0]
        ):
            return None
        try:
            shards = Shards(array, codec, path)
        except InputError:
            return None
        return cls(path, array, shards)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> npt.NDArray[Any]:
        if isinstance(index, int | np.integer) and not isinstance(index, bool | np.bool_):
            return self.one(int(index))
        if isinstance(index, slice):
            start, stop, step = index.indices(self.shape[0])
            if step == 1:
                return self.span(start, max(start, stop))
            index = np.arange(start, stop, step)
        positions = np.asarray(index)
        if positions.dtype.kind not in "iu" or positions.ndim != 1:
            return np.asarray(self.array[index])
        return self.take(positions.astype(np.intp, copy=False))

    def one(self, position: int) -> npt.NDArray[Any]:
        """Image ``position`` (counted from the end when negative)."""
        if position < 0:
            position += self.shape[0]
        if not 0 <= position < self.shape[0]:
            raise IndexError(f"image index {position} is out of range for {self.shape[0]}")
        shard, row = divmod(position, self.file_rows)
        mapped = self.maps[shard]
        if mapped is None:
            mapped = self.mapped(shard)
        if mapped.size:
            copied: npt.NDArray[Any] = mapped[row].copy()
            return copied
        return np.asarray(self.array[position])

    def span(self, start: int, stop: int) -> npt.NDArray[Any]:
        """Images ``start``…``stop - 1``, shard by shard."""
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        row = start
        while row < stop:
            shard = row // self.file_rows
            end = min(stop, (shard + 1) * self.file_rows)
            mapped = self.maps[shard]
            if mapped is None:
                mapped = self.mapped(shard)
            first = shard * self.file_rows
            if mapped.size:
                out[row - start : end - start] = mapped[row - first : end - first]
            else:
                out[row - start : end - start] = self.array[row:end]
            row = end
        return out

    def take(self, positions: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
        """Images at ``positions`` (in range, any order), gathered shard by shard."""
        count = self.shape[0]
        if not len(positions):
            return np.empty((0, *self.shape[1:]), self.dtype)
        low, high = int(positions.min()), int(positions.max())
        if low < -count or high >= count:
            raise IndexError(f"an image index is out of range for {count} images")
        if low < 0:
            positions = np.where(positions < 0, positions + count, positions)
            low = int(positions.min())
        shard = low // self.file_rows
        if high // self.file_rows == shard:  # one shard: one gather
            return self.gather(shard, positions - shard * self.file_rows, positions)
        out = np.empty((len(positions), *self.shape[1:]), self.dtype)
        ordered, order = positions, None
        if (positions[1:] < positions[:-1]).any():
            order = np.argsort(positions, kind="stable")
            ordered = positions[order]
        shards = ordered // self.file_rows
        cuts = [0, *(np.flatnonzero(shards[1:] != shards[:-1]) + 1).tolist(), len(ordered)]
        for first, last in zip(cuts, cuts[1:], strict=False):
            shard = int(shards[first])
            picked = ordered[first:last]
            rows = picked - shard * self.file_rows
            if order is None:  # gathered in place
                self.gather(shard, rows, picked, out[first:last])
            else:
                out[order[first:last]] = self.gather(shard, rows, picked)
        return out

    def gather(
        self,
        shard: int,
        rows: npt.NDArray[np.intp],
        positions: npt.NDArray[np.intp],
        out: npt.NDArray[Any] | None = None,
    ) -> npt.NDArray[Any]:
        """Rows ``rows`` of shard ``shard`` (the images at ``positions``), into ``out``
        when given."""
        mapped = self.maps[shard]
        if mapped is None:
            mapped = self.mapped(shard)
        if mapped.size:
            # rows are checked in range: "clip" lets numpy gather straight into ``out``
            return np.take(mapped, rows, axis=0, out=out, mode="clip")
        found = np.asarray(self.array.get_orthogonal_selection(positions))
        if out is not None:
            out[...] = found
        return found

    def mapped(self, shard: int) -> npt.NDArray[Any]:
        """Shard ``shard``'s images as one memory map, its index checked first (an empty
        map: the shard is laid out otherwise and read through zarr-python)."""
        layout = self.layout
        zeros = (0,) * (self.ndim - 1)
        name = f"{IMAGES_DATASET}/{self.encode((shard, *zeros))}"
        file = self.root.resolve(name)
        if not file.is_file():
            raise InputError(f"{self.path}: {name} is missing (every file of images is needed)")
        offsets, lengths = layout.table(file, name)
        rows = min(self.file_rows, self.shape[0] - shard * self.file_rows)
        inner = layout.inner[0]
        needed = -(-rows // inner)
        chunk_bytes = inner * self.dtype.itemsize * math.prod(self.shape[1:])
        offsets = offsets.reshape(-1)[:needed]
        lengths = lengths.reshape(-1)[:needed]
        absent = (offsets == NO_CHUNK) & (lengths == NO_CHUNK)
        if absent.any():
            at = int(np.flatnonzero(absent)[0])
            raise InputError(f"{self.path}: shard {name}: inner chunk {at} is not stored")
        expected = offsets[0] + np.arange(needed, dtype=np.uint64) * np.uint64(chunk_bytes)
        found: npt.NDArray[Any] = np.empty(0, self.dtype)
        if (lengths == chunk_bytes).all() and (offsets == expected).all():
            # a plain array over the map: indexing it costs less than a np.memmap's
            with file.open("rb") as handle:
                whole = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            values = rows * math.prod(self.shape[1:])
            found = np.frombuffer(whole, self.dtype, values, int(offsets[0]))
            found = found.reshape(rows, *self.shape[1:])
        self.maps[shard] = found
        return found
