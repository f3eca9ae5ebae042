"""Reading the chunks of a Zarr input on an object store: fetched concurrently by byte
range, each measured before it is decoded (the store serves only checked bytes)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.containment import Held, store_key
from pixscale.core.location import (
    Location,
    shown,
    storage_errors,
    storage_exceptions,
    storage_reason,
)
from pixscale.core.zarr_codecs import (
    ChunkBound,
    Refused,
    bytes_reader,
)
from pixscale.core.zarr_shards import ABSENT, Shards
from pixscale.errors import InputError
from pixscale.sources.zarr_chunks import bounded, chunk_coords, sharding_of, stored_rows

#: Shard indexes fetched at once while counting the chunks a remote store holds.
INDEX_BATCH = 256


def fetch_rows(
    array: Any, store: Any, path: Location, key: str, first: int, last: int
) -> dict[str, Held]:
    """The stored objects holding rows ``first``…``last - 1`` of ``array`` in the remote store
    ``path``, fetched together and each chunk measured (``ChunkBound``) before any is
    decoded: a chunk is never fetched past the most its size allows, a shard's chunks only
    once its index is checked against the object's size."""
    sharding = sharding_of(array, path, key)
    codecs = list(array.metadata.codecs if sharding is None else sharding.codecs)
    size = math.prod(int(n) for n in array.chunks) * np.dtype(array.dtype).itemsize
    bound = ChunkBound.of(codecs, size)
    encode = array.metadata.encode_chunk_key
    if sharding is None:
        unit = stored_rows(array)
        names = [
            os.path.join(key, encode(coords))
            for coords in chunk_coords(first, last, unit, tuple(array.cdata_shape))
        ]
        limit = bound.largest_stored + 1
        found = fetch(store, path, names, [(0, limit)] * len(names))
        for name, data in zip(names, found, strict=True):
            bounded(bound, bytes_reader(data), len(data), path, f"chunk {name}")
        return {name: Held(len(data), [(0, data)]) for name, data in zip(names, found, strict=True)}
    shards = Shards(array, sharding, path)
    rows = shards.shard[0]
    held: dict[str, Held] = {}
    for coords in chunk_coords(first, last, rows, shards.grid):
        name = os.path.join(key, encode(coords))
        start = coords[0] * rows
        touched = shards.needed(coords) & inner_rows(
            shards, max(first, start) - start, min(last, start + rows) - start
        )
        held[name] = fetch_shard(store, shards, bound, path, name, touched)
    return held


def inner_rows(shards: Shards, first: int, last: int) -> npt.NDArray[np.bool_]:
    """Which inner chunks of a shard hold its rows ``first``…``last - 1``."""
    rows = np.zeros(shards.per_shard[0], bool)
    rows[first // shards.inner[0] : (last - 1) // shards.inner[0] + 1] = True
    return np.broadcast_to(rows.reshape(-1, *(1,) * (len(shards.per_shard) - 1)), shards.per_shard)


def fetch_shard(
    store: Any, shards: Shards, bound: ChunkBound, path: Location, name: str, touched: Any
) -> Held:
    """The parts of shard ``name`` zarr-python reads for the inner chunks ``touched``: the
    whole object when they are all of its chunks (no larger than they could need), else its
    index and those chunks; every chunk measured."""
    size = object_size(store, path, name)
    shards.check_size(size, name)
    at = shards.index_at(size)
    if bool(np.all(touched)):
        most = shards.index_bytes + int(np.size(touched)) * bound.largest_stored
        if size > most:
            raise InputError(
                f"{shown(path)}: shard {name} is {size:,} bytes stored, more than the "
                f"{most:,} its chunks could need (a decompression bomb?)"
            )
        (data,) = fetch(store, path, [name], [(0, size)])
        offsets, lengths = shards.table_of(data[at : at + shards.index_bytes], size, name)
        entries = stored_entries(offsets, np.ones(shards.per_shard, bool))
        for entry in entries:
            where, offset = f"shard {name}: inner chunk {entry}", int(offsets[entry])
            chunk = data[offset : offset + int(lengths[entry])]
            bounded(bound, bytes_reader(chunk), len(chunk), path, where)
        return Held(size, [(0, data)])
    (index,) = fetch(store, path, [name], [(at, at + shards.index_bytes)])
    offsets, lengths = shards.table_of(index, size, name)
    entries = stored_entries(offsets, touched)
    for entry in entries:  # sizes first: nothing too large is fetched
        try:
            bound.check_length(int(lengths[entry]))
        except Refused as exc:
            raise InputError(f"{shown(path)}: shard {name}: inner chunk {entry} {exc}") from None
    spans = [(int(offsets[e]), int(offsets[e]) + int(lengths[e])) for e in entries]
    found = fetch(store, path, [name] * len(spans), spans)
    for entry, data in zip(entries, found, strict=True):
        bounded(bound, bytes_reader(data), len(data), path, f"shard {name}: inner chunk {entry}")
    return Held(size, [(at, index), *((s, d) for (s, _), d in zip(spans, found, strict=True))])


def stored_entries(offsets: npt.NDArray[np.uint64], wanted: Any) -> list[tuple[int, ...]]:
    """The entries of a shard index that are ``wanted`` and stored."""
    return [tuple(int(i) for i in e) for e in np.argwhere(np.asarray(wanted) & (offsets != ABSENT))]


def object_size(store: Any, path: Location, name: str) -> int:
    """The size of the object ``name`` of the remote store ``path``."""
    try:
        return int(store.fs.size(store_key(path, name)))
    except storage_exceptions() as exc:
        raise InputError(f"{shown(path)}: cannot read {name} ({storage_reason(exc)})") from exc


def fetch(
    store: Any, path: Location, names: list[str], spans: list[tuple[int, int]]
) -> list[bytes]:
    """Byte spans of objects of the remote store ``path``, fetched concurrently; a span past
    an object's end gives what it has."""
    if not names:
        return []
    keys = [store_key(path, name) for name in names]
    with storage_errors(path):
        found = store.fs.cat_ranges(
            keys, [s for s, _ in spans], [e for _, e in spans], on_error="return"
        )
    for name, data in zip(names, found, strict=True):
        if isinstance(data, BaseException):
            raise InputError(f"{shown(path)}: cannot read {name} ({storage_reason(data)})")
    return [bytes(data) for data in found]


def remote_missing(array: Any, path: Location, key: str) -> tuple[int, str | None]:
    """How many chunks of the array ``key`` of the remote store ``path`` are not stored
    (one listing of its prefix; the indexes of its shards fetched in batches), and the
    first shard missing some."""
    store = array.store
    base = store_key(path, key)
    with storage_errors(path):
        listing = store.fs.find(base, detail=True)
    sizes = {
        str(full)[len(base) + 1 :]: int(info.get("size") or 0)
        for full, info in listing.items()
        if info.get("type") != "directory"
    }
    encode = array.metadata.encode_chunk_key
    sharding = sharding_of(array, path, key)
    if sharding is None:
        absent = sum(encode(c) not in sizes for c in np.ndindex(*array.cdata_shape))
        return absent, None
    shards = Shards(array, sharding, path)
    grid = list(np.ndindex(*shards.grid))
    first: str | None = None
    missing = 0
    for at in range(0, len(grid), INDEX_BATCH):
        batch = grid[at : at + INDEX_BATCH]
        names = [encode(coords) for coords in batch]
        lost = shard_losses(store, shards, path, key, batch, names, sizes)
        for coords, count in zip(batch, lost, strict=True):
            if count and first is None:
                first = os.path.join(key, encode(coords))
            missing += count
    return missing, first


def shard_losses(
    store: Any,
    shards: Shards,
    path: Location,
    key: str,
    batch: list[tuple[int, ...]],
    names: list[str],
    sizes: dict[str, int],
) -> list[int]:
    """Inner chunks holding array elements that each shard of ``batch`` does not store."""
    present = [name for name in names if name in sizes]
    for name in present:
        shards.check_size(sizes[name], os.path.join(key, name))
    spans = [
        (shards.index_at(sizes[n]), shards.index_at(sizes[n]) + shards.index_bytes) for n in present
    ]
    indexes = dict(
        zip(
            present, fetch(store, path, [os.path.join(key, n) for n in present], spans), strict=True
        )
    )
    lost = []
    for coords, name in zip(batch, names, strict=True):
        needed = shards.needed(coords)
        if name in indexes:
            offsets, lengths = shards.table_of(indexes[name], sizes[name], os.path.join(key, name))
            needed &= (offsets == ABSENT) & (lengths == ABSENT)
        lost.append(int(np.count_nonzero(needed)))
    return lost
