"""Where a Zarr input's images lie in its chunks and shards: shared by the readers of
stores on disk and on object stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from pixscale.core.location import (
    Location,
    shown,
)
from pixscale.core.zarr_codecs import (
    ChunkBound,
    Reader,
    Refused,
)
from pixscale.errors import InputError


def stored_rows(array: Any) -> int:
    """Images per stored chunk along the first axis (inner chunks, when sharded)."""
    return max(1, int(array.chunks[0]))


def chunk_coords(
    first: int, last: int, unit: int, grid: tuple[int, ...]
) -> Iterator[tuple[int, ...]]:
    """The chunks of ``grid`` (``unit`` rows each along the first axis) holding rows
    ``first``…``last - 1``."""
    for row in range(first // unit, (last - 1) // unit + 1):
        for rest in np.ndindex(*grid[1:]):
            yield (row, *(int(n) for n in rest))


def bounded(bound: ChunkBound, read: Reader, length: int, path: Location, where: str) -> None:
    """``bound.check`` of one stored chunk, a refusal naming the store and ``where``."""
    try:
        bound.check(read, length)
    except Refused as exc:
        raise InputError(f"{shown(path)}: {where} {exc}") from None


def sharding_of(array: Any, path: Location, key: str) -> Any:
    """The ``sharding_indexed`` codec of ``array``, or None; refused where the shard index
    alone could not say which chunks are stored (nested sharding, a codec before it)."""
    from zarr.codecs import ShardingCodec

    codecs = list(array.metadata.codecs)
    if not any(isinstance(codec, ShardingCodec) for codec in codecs):
        return None
    codec = codecs[0]
    if not isinstance(codec, ShardingCodec) or any(
        isinstance(inner, ShardingCodec) for inner in codec.codecs
    ):
        raise InputError(
            f"{shown(path)}: array {key!r}: sharding after another codec or nested in a shard is "
            "not supported (its stored chunks cannot be counted)"
        )
    return codec
