"""The Zarr read paths: inputs read chunk by chunk (by byte range when uncompressed), and
outputs read sample by sample from memory-mapped shards; values equal to numpy's across
chunk and shard boundaries, sharded or not, compressed or not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pixscale.core.spec import Spec
from pixscale.engine.local import convert
from pixscale.errors import InputError
from pixscale.store.output import Output
from pixscale.store.reader import open as pixscale_open

zarr = pytest.importorskip("zarr", reason="zarr-python 3 is not installed")

from zarr.codecs import BytesCodec, GzipCodec, ZstdCodec  # noqa: E402

from pixscale.sources.zarr import RawChunks, ZarrSource, decoded_spans, open_zarr  # noqa: E402
from pixscale.store.backends.zarr.reader import (  # noqa: E402
    ShardedImages,
    open_zarr_images,
)

COUNT = 50
IMAGE = (6, 5)

#: name → zarr.create_array options: chunks of 7 images (50 images: an edge chunk of 1),
#: shards of 21 (3 inner chunks; an edge shard of 8), compressed or not, chunks that
#: split images, and big-endian uint16.
LAYOUTS: dict[str, dict[str, Any]] = {
    "raw": {"chunks": (7, *IMAGE), "compressors": None},
    "raw sharded": {"chunks": (7, *IMAGE), "shards": (21, *IMAGE), "compressors": None},
    "zstd": {"chunks": (7, *IMAGE), "compressors": ZstdCodec(level=1)},
    "gzip sharded": {"chunks": (7, *IMAGE), "shards": (21, *IMAGE), "compressors": GzipCodec()},
    "split images": {"chunks": (7, 3, 5), "compressors": None},
    "one big chunk": {"chunks": (64, *IMAGE), "compressors": None},
    "one big zstd chunk": {"chunks": (64, *IMAGE), "compressors": ZstdCodec(level=1)},
}
RAW = {"raw", "raw sharded", "one big chunk"}


def images(dtype: str = "uint8") -> np.ndarray:
    top = 256 if dtype == "uint8" else 65536
    return np.random.default_rng(3).integers(0, top, (COUNT, *IMAGE), dtype=dtype)


def store(tmp_path: Path, name: str, values: np.ndarray, **options: Any) -> Path:
    path = tmp_path / f"{name.replace(' ', '-')}.zarr"
    array = zarr.create_array(
        str(path), shape=values.shape, dtype=values.dtype, zarr_format=3, **options
    )
    array[...] = values
    return path


def windows(source: ZarrSource) -> list[tuple[int, int, int]]:
    """Windows starting and ending inside, on and across chunk and shard boundaries."""
    return [
        (0, COUNT, 1),
        (0, COUNT, 3),
        (0, COUNT, 7),
        (0, COUNT, 10),
        (0, COUNT, 64),
        (5, 44, 4),
        (20, 22, 2),
        (21, 49, 9),
        (49, 50, 5),
        (13, 13, 3),
    ]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_windows_equal_numpy(tmp_path: Path, name: str) -> None:
    values = images()
    source = open_zarr(store(tmp_path, name, values, **LAYOUTS[name]))
    raw = RawChunks.of(source._array(), source.files[0], source.key)
    assert (raw is not None) == (name in RAW)
    assert (source.preferred_rows is None) == (name in RAW)
    for start, stop, most in windows(source):
        chunks = list(source.window(start, stop, most))
        assert all(0 < len(c) <= most and c.flags.c_contiguous for c in chunks)
        got = np.concatenate(chunks) if chunks else np.empty((0, *IMAGE), np.uint8)
        assert np.array_equal(got, values[start:stop]), (start, stop, most)


@pytest.mark.parametrize("endian", ["little", "big"])
def test_uint16_both_byte_orders(tmp_path: Path, endian: str) -> None:
    values = images("uint16")
    options = {"chunks": (7, *IMAGE), "shards": (21, *IMAGE), "compressors": None}
    path = store(tmp_path, endian, values, serializer=BytesCodec(endian=endian), **options)
    source = open_zarr(path)
    raw = RawChunks.of(source._array(), path, "")
    assert (raw is not None) == (endian == "little")
    got = np.concatenate(list(source.window(3, 47, 8)))
    assert got.dtype == np.uint16 and np.array_equal(got, values[3:47])


@pytest.mark.parametrize("name", sorted(RAW))
def test_raw_reads_each_byte_once(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows of any length read exactly the images' bytes (no chunk read whole for a
    slice of it), through ``os.preadv``."""
    values = images()
    source = open_zarr(store(tmp_path, name, values, **LAYOUTS[name]))
    read: list[int] = []
    real = os.preadv

    def counted(fd: int, buffers: list[Any], offset: int) -> int:
        got = real(fd, buffers, offset)
        read.append(got)
        return got

    monkeypatch.setattr(os, "preadv", counted)
    list(source.window(0, COUNT, 4))
    assert sum(read) == values.nbytes


def test_decoded_spans_decode_each_chunk_once() -> None:
    for start, stop, most, unit in [(0, 50, 3, 7), (5, 44, 10, 7), (0, 100, 64, 7), (3, 90, 7, 7)]:
        spans = list(decoded_spans(start, stop, most, unit))
        assert spans[0][0] == start and spans[-1][1] == stop
        assert all(a < b and b == c for (a, b), (c, _) in zip(spans, spans[1:], strict=False))
        touched = [c for a, b in spans for c in range(a // unit, (b - 1) // unit + 1)]
        # a chunk is decoded by one span, but at most once more at a span ending inside it
        assert len(touched) == len(set(touched))
        assert all(b - a <= max(most, unit) for a, b in spans)


def test_truncated_raw_chunk_refused(tmp_path: Path) -> None:
    values = images()
    path = store(tmp_path, "raw", values, **LAYOUTS["raw"])
    source = open_zarr(path)
    chunk = path / "c" / "3" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-5])
    with pytest.raises(InputError, match=r"chunk c/3/0/0 holds 205 bytes, not the 210"):
        list(source.window(0, COUNT, 10))


def test_raw_shard_index_entry_of_wrong_length_refused(tmp_path: Path) -> None:
    values = images()
    path = store(tmp_path, "raw sharded", values, **LAYOUTS["raw sharded"])
    source = open_zarr(path)
    shard = path / "c" / "1" / "0" / "0"
    data = bytearray(shard.read_bytes())
    index = np.frombuffer(data[-(16 * 3 + 4) : -4], "<u8").copy().reshape(3, 2)
    index[1, 1] -= 30  # the second inner chunk declared shorter
    data[-(16 * 3 + 4) : -4] = index.tobytes()
    import google_crc32c

    data[-4:] = google_crc32c.value(bytes(data[-(16 * 3 + 4) : -4])).to_bytes(4, "little")
    shard.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"inner chunk \(1, 0, 0\) is 180 bytes, not the 210"):
        list(source.window(0, COUNT, 10))


def test_raw_chunk_linked_outside_refused_on_reading(tmp_path: Path) -> None:
    values = images()
    path = store(tmp_path, "raw", values, **LAYOUTS["raw"])
    source = open_zarr(path)  # checked when opened; the link appears after
    outside = tmp_path / "elsewhere"
    outside.write_bytes(bytes(210))
    chunk = path / "c" / "2" / "0" / "0"
    chunk.unlink()
    chunk.symlink_to(outside)
    with pytest.raises(InputError, match="is a link leading outside .*refusing to read outside"):
        list(source.window(0, COUNT, 10))


@pytest.mark.parametrize("name", ["raw sharded", "zstd", "one big zstd chunk"])
def test_convert_from_zarr_equals_npy(tmp_path: Path, name: str) -> None:
    values = images()
    np.save(tmp_path / "x.npy", values)
    path = store(tmp_path, name, values, **LAYOUTS[name])
    spec = Spec("standardize", scope="pixel")
    convert(tmp_path / "x.npy", tmp_path / "a.npy", spec, chunk_mb=0.0005)
    convert(path, tmp_path / "b.npy", spec, chunk_mb=0.0005)
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


# -- outputs ------------------------------------------------------------------------------


def output_pair(tmp_path: Path, count: int, **options: Any) -> tuple[Any, Any]:
    values = np.random.default_rng(5).integers(0, 256, (count, 6, 7), dtype=np.uint8)
    np.save(tmp_path / "x.npy", values)
    spec = Spec("symmetric")
    convert(tmp_path / "x.npy", tmp_path / "a.h5", spec)
    convert(tmp_path / "x.npy", Output(tmp_path / "a.zarr", **options), spec)
    return pixscale_open(tmp_path / "a.h5"), pixscale_open(tmp_path / "a.zarr")


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view("u4"), b.view("u4"))


def test_output_shards_hold_sample_sized_inner_chunks(tmp_path: Path) -> None:
    _, opened = output_pair(tmp_path, 300)
    array = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")["images"]
    inner, shard = array.chunks[0], array.shards[0]
    assert inner * 6 * 7 * 4 <= 64 << 10 and shard % inner == 0
    assert isinstance(open_zarr_images(tmp_path / "a.zarr"), ShardedImages)


@pytest.mark.parametrize("chunk_images", [None, 16, 7])
def test_output_reads_equal_hdf5_across_shards(tmp_path: Path, chunk_images: int | None) -> None:
    """Several shards (16 chunks of ``chunk_images`` each), the last one short."""
    count = 300 if chunk_images is None else 16 * chunk_images * 2 + 5
    options = {} if chunk_images is None else {"chunk_images": chunk_images}
    h5, opened = output_pair(tmp_path, count, **options)
    images = opened._data()
    assert isinstance(images, ShardedImages)
    if chunk_images is not None:
        assert len(images.maps) == 3
    rng = np.random.default_rng(0)
    for i in [0, 1, count - 1, -1, -count, *rng.integers(0, count, 20).tolist()]:
        assert same(opened[i], h5[i])
    for index in [
        slice(None),
        slice(3, count - 2),
        slice(None, None, -3),
        slice(5, count, 11),
        np.sort(rng.choice(count, 40, replace=False)),
        rng.integers(0, count, 60),  # any order, repeats
        np.array([count - 1, 0, count - 1]),
        np.arange(count) % 2 == 0,
        [],
    ]:
        assert same(np.asarray(opened[index]), np.asarray(h5[index]))
    assert same(opened[5, 2:4], h5[5, 2:4])
    with pytest.raises(IndexError):
        opened[count]
    whole = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")["images"][...]
    assert same(whole, h5[:])


def test_gzip_output_read_through_zarr(tmp_path: Path) -> None:
    h5, opened = output_pair(tmp_path, 40, compression="gzip")
    assert not isinstance(opened._data(), ShardedImages)
    assert same(opened[[3, 1, 39]], h5[[3, 1, 39]])


def test_output_shard_missing_refused(tmp_path: Path) -> None:
    _, opened = output_pair(tmp_path, 16 * 4 * 2, chunk_images=4)
    (tmp_path / "a.zarr" / "images" / "c.1.0.0").unlink()
    with pytest.raises(InputError, match=r"images/c\.1\.0\.0 is missing"):
        opened[100]


def test_output_shard_laid_out_otherwise_read_through_zarr(tmp_path: Path) -> None:
    """A shard whose inner chunks are not one run from its start (rewritten by another
    writer) is still read right, through zarr-python."""
    h5, opened = output_pair(tmp_path, 16 * 4, chunk_images=4)
    shard = tmp_path / "a.zarr" / "images" / "c.0.0.0"
    data = bytearray(shard.read_bytes())
    chunk = 4 * 6 * 7 * 4
    body, index = data[: 16 * chunk], np.frombuffer(data[16 * chunk :], "<u8").reshape(16, 2)
    # swap the first two chunks' bytes, and their index entries
    swapped = body[chunk : 2 * chunk] + body[:chunk] + body[2 * chunk :]
    index = index.copy()
    index[[0, 1], 0] = index[[1, 0], 0]
    shard.write_bytes(bytes(swapped) + index.tobytes())
    images = opened._data()
    assert same(opened[2], h5[2]) and same(opened[[1, 5, 60]], h5[[1, 5, 60]])
    assert images.maps[0] is not None and images.maps[0].size == 0
