"""Zarr v3 inputs: labels are checked as the images are, and no chunk is decoded past its size.

- A labels array must store every chunk (a missing one would read as fill value 0), and a
  float one is refused, as npz and Parquet refuse float labels.
- A compressed chunk decoding to more than its own size (zstd's declared content size, a
  zstd frame's blocks, gzip inflated incrementally) is refused before zarr-python decodes it,
  within a bounded address space, naming the chunk; codecs that cannot be bounded so are
  refused up front, naming the supported ones.
- A Zarr v2 store is recognised and named as such.
"""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from .conftest import assert_clean_failure, cli, run_child

zarr = pytest.importorskip("zarr", reason="zarr-python 3 is not installed")
numcodecs = pytest.importorskip("numcodecs", reason="numcodecs is not installed")
google_crc32c = pytest.importorskip("google_crc32c", reason="zarr-python's crc32c is missing")

SHAPE = (20, 8, 8)
#: Bytes of one stored chunk of five 8×8 uint8 images.
CHUNK = 5 * 8 * 8
GIB = 1 << 30
#: The address space a run fed a bomb gets: decoding a 1 GiB chunk cannot fit, and the run
#: must refuse it cleanly (a MemoryError would be a traceback).
ADDRESS_SPACE = 3 << 29
BOMB = "a decompression bomb?"


def pixels() -> np.ndarray:
    return (np.arange(np.prod(SHAPE)) % 251 + 1).astype(np.uint8).reshape(SHAPE)


def image_store(path: Path, **options: object) -> Path:
    """A Zarr v3 array of ``pixels()``, five images per chunk."""
    options.setdefault("chunks", (5, 8, 8))
    array = zarr.create_array(path, shape=SHAPE, dtype="u1", **options)
    array[:] = pixels()
    return path


def labelled_group(path: Path, labels: np.ndarray, **options: object) -> Path:
    """A group of ``images`` and ``labels`` (five entries per chunk)."""
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.create_array("images", shape=SHAPE, chunks=(5, 8, 8), dtype="u1")[:] = pixels()
    array = group.create_array(
        "labels", shape=labels.shape, chunks=(5,), dtype=labels.dtype, **options
    )
    array[:] = labels
    return path


def assert_refused(out: Path, outcome: object, name: str, reason: str) -> str:
    """Exit 1, one line naming ``name`` and giving ``reason``, nothing written."""
    line = assert_clean_failure(outcome, names=[name], reasons=[reason])  # type: ignore[arg-type]
    written = sorted(p.name for p in out.parent.iterdir() if not p.name.endswith(".zarr"))
    assert written == [], f"written: {written}"
    return line


def capped(*args: object) -> object:
    """Run the CLI in a child limited to ``ADDRESS_SPACE``."""
    return run_child(args, address_space=ADDRESS_SPACE)


def gzip_of_zeros(size: int) -> bytes:
    """A gzip stream of ``size`` zero bytes, made without holding them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [packer.compress(block[: min(len(block), size - at)]) for at in range(0, size, 1 << 20)]
    return b"".join([*parts, packer.flush()])


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize("sharded", [False, True])
def test_labels_with_a_missing_chunk_are_refused(tmp_path: Path, sharded: bool) -> None:
    labels = np.arange(20) % 3 + 1
    options = {"shards": (10,)} if sharded else {}
    store = labelled_group(tmp_path / "g.zarr", labels.astype(np.int64), **options)
    if sharded:
        shard = store / "labels" / "c" / "1"
        data = shard.read_bytes()
        index = np.frombuffer(data[-36:-4], "<u8").copy()
        index[2:4] = 2**64 - 1  # inner chunk 0 of shard 1 listed as absent
        body = index.tobytes()
        crc = google_crc32c.value(body).to_bytes(4, "little")
        shard.write_bytes(data[:-36] + body + crc)
    else:
        os.remove(store / "labels" / "c" / "2")
    out = tmp_path / "o.h5"
    outcome = cli(["convert", store, "--key", "images", "-o", out])
    line = assert_refused(out, outcome, "g.zarr", "array 'labels' has 1 of 4 chunks not stored")
    assert "fill values" in line


def test_float_labels_are_refused(tmp_path: Path) -> None:
    store = labelled_group(tmp_path / "g.zarr", np.linspace(0, 1, 20).astype(np.float32))
    out = tmp_path / "o.h5"
    outcome = cli(["convert", store, "--key", "images", "-o", out])
    line = assert_refused(out, outcome, "g.zarr", "labels must be integers, got float32")
    assert "labels" in line.split("must")[0]


def test_a_labels_chunk_bomb_is_refused(tmp_path: Path) -> None:
    store = labelled_group(tmp_path / "g.zarr", np.arange(20, dtype=np.int64))
    (store / "labels" / "c" / "1").write_bytes(numcodecs.Zstd(level=19).encode(bytes(GIB)))
    out = tmp_path / "o.h5"
    outcome = capped("convert", store, "--key", "images", "-o", out)
    assert_refused(out, outcome, "labels/c/1", "would decode to more than its 40 bytes")


# --------------------------------------------------------------------------- bombs


def test_a_zstd_chunk_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    store = image_store(tmp_path / "s.zarr")
    (store / "c" / "1" / "0" / "0").write_bytes(numcodecs.Zstd(level=19).encode(bytes(GIB)))
    out = tmp_path / "o.h5"
    outcome = capped("convert", store, "-o", out)
    line = assert_refused(out, outcome, "s.zarr", "chunk c/1/0/0 would decode to more than")
    assert f"its {CHUNK} bytes ({BOMB})" in line


def test_a_zstd_chunk_of_several_frames_counts_them_all(tmp_path: Path) -> None:
    store = image_store(tmp_path / "s.zarr")
    zstd = numcodecs.Zstd(level=1)
    chunk = store / "c" / "2" / "0" / "0"
    chunk.write_bytes(zstd.encode(bytes(CHUNK)) + zstd.encode(bytes(64 << 20)))
    out = tmp_path / "o.h5"
    outcome = cli(["convert", store, "-o", out])
    assert_refused(out, outcome, "s.zarr", f"chunk c/2/0/0 would decode to more than its {CHUNK}")


def zstd_frame_without_size(data: bytes) -> bytes:
    """One zstd frame of raw blocks whose header declares no content size."""
    header = (0xFD2FB528).to_bytes(4, "little") + bytes([0x00, 0x38])  # 8 MiB window
    blocks = []
    for at in range(0, len(data), 1 << 17):
        piece = data[at : at + (1 << 17)]
        last = at + len(piece) >= len(data)
        blocks.append(((len(piece) << 3) | int(last)).to_bytes(3, "little") + piece)
    return header + b"".join(blocks)


def test_a_zstd_frame_without_a_size_is_read_within_its_bound(tmp_path: Path) -> None:
    """Blocks regenerating at most the chunk's size are read; one byte more is refused."""
    store = image_store(tmp_path / "s.zarr")
    shutil.copytree(store, tmp_path / "same.zarr")
    chunk = store / "c" / "1" / "0" / "0"
    chunk.write_bytes(zstd_frame_without_size(pixels()[5:10].tobytes()))
    for name in ("s", "same"):
        outcome = cli(["convert", tmp_path / f"{name}.zarr", "-o", tmp_path / f"{name}.npy"])
        assert outcome.code == 0, outcome.describe()
    assert np.array_equal(np.load(tmp_path / "s.npy"), np.load(tmp_path / "same.npy"))
    chunk.write_bytes(zstd_frame_without_size(bytes(CHUNK + 1)))
    out = tmp_path / "o.h5"
    outcome = cli(["convert", store, "-o", out])
    line = assert_clean_failure(outcome, names=["chunk c/1/0/0"], reasons=["declares no size"])
    assert f"could decode to more than its {CHUNK} bytes" in line and not out.exists()


def test_a_gzip_chunk_bomb_is_inflated_no_further_than_its_size(tmp_path: Path) -> None:
    """A chunk of 1 MiB, its stored bytes no larger: only inflating tells, and inflating stops
    one byte past the chunk's size."""
    shape = (32, 256, 256)
    array = zarr.create_array(
        tmp_path / "s.zarr",
        shape=shape,
        chunks=(16, 256, 256),
        dtype="u1",
        compressors=zarr.codecs.GzipCodec(level=1),
    )
    array[:] = 1
    (tmp_path / "s.zarr" / "c" / "1" / "0" / "0").write_bytes(gzip_of_zeros(GIB))
    out = tmp_path / "o.h5"
    outcome = capped("convert", tmp_path / "s.zarr", "-o", out)
    assert_refused(out, outcome, "chunk c/1/0/0", f"more than its {1 << 20:,} bytes ({BOMB})")


def test_a_small_chunk_holding_a_gzip_bomb_is_refused_by_its_stored_size(tmp_path: Path) -> None:
    store = image_store(tmp_path / "s.zarr", compressors=zarr.codecs.GzipCodec())
    (store / "c" / "1" / "0" / "0").write_bytes(gzip_of_zeros(GIB))
    out = tmp_path / "o.h5"
    outcome = capped("convert", store, "-o", out)
    assert_refused(out, outcome, "chunk c/1/0/0", f"more than its {CHUNK} bytes could need")


def test_an_inner_chunk_bomb_in_a_shard_is_refused(tmp_path: Path) -> None:
    store = image_store(tmp_path / "s.zarr", shards=(10, 8, 8))
    shard = store / "c" / "0" / "0" / "0"
    data = shard.read_bytes()
    index = np.frombuffer(data[-36:-4], "<u8").reshape(2, 2)
    first = data[int(index[0, 0]) : int(index[0, 0] + index[0, 1])]
    bomb = numcodecs.Zstd(level=19).encode(bytes(GIB))
    table = np.array([[0, len(first)], [len(first), len(bomb)]], "<u8").tobytes()
    crc = google_crc32c.value(table).to_bytes(4, "little")
    shard.write_bytes(first + bomb + table + crc)
    out = tmp_path / "o.h5"
    outcome = capped("convert", store, "-o", out)
    assert_refused(
        out, outcome, "shard c/0/0/0", "inner chunk (1, 0, 0) would decode to more than its 320"
    )


def test_a_codec_that_cannot_be_bounded_is_refused_up_front(tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        store = image_store(tmp_path / "s.zarr", compressors=zarr.codecs.LZ4())
    out = tmp_path / "o.h5"
    outcome = cli(["convert", store, "-o", out])
    line = assert_refused(out, outcome, "s.zarr", "codec 'numcodecs.lz4' is not supported")
    assert "zstd, gzip, blosc" in line


def test_a_chunk_that_is_not_zstd_gives_a_reason(tmp_path: Path) -> None:
    store = image_store(tmp_path / "s.zarr")
    (store / "c" / "1" / "0" / "0").write_bytes(b"\x01" * 40)
    out = tmp_path / "o.h5"
    outcome = cli(["convert", store, "-o", out])
    assert_refused(out, outcome, "chunk c/1/0/0", "is not zstd data")


def test_decode_failures_always_give_a_reason() -> None:
    from pixscale.sources.zarr import reason

    assert reason(ValueError("")) == "ValueError"
    assert reason(RuntimeError("bad\nchunk")) == "bad chunk"


# --------------------------------------------------------------------------- Zarr v2


@pytest.mark.parametrize("group", [False, True])
def test_a_zarr_v2_store_is_named(tmp_path: Path, group: bool) -> None:
    path = tmp_path / "s.zarr"
    if group:
        root = zarr.open_group(path, mode="w", zarr_format=2)
        root.create_array("images", shape=SHAPE, dtype="u1")[:] = pixels()
    else:
        zarr.create_array(path, shape=SHAPE, dtype="u1", zarr_format=2)[:] = pixels()
    out = tmp_path / "o.h5"
    outcome = cli(["convert", path, "-o", out])
    line = assert_refused(out, outcome, "s.zarr", "is a Zarr v2 store; pixscale reads Zarr v3")
    assert "zarr_format=3" in line
