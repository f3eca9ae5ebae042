"""Output backends: reproducible Zarr gzip chunks, and invert's pixel writers per format."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pixscale.cli import main
from pixscale.errors import OutputError
from pixscale.store.backends import open_pixel_writer
from pixscale.store.io.atomic import staged_outputs

zarr = pytest.importorskip("zarr", reason="zarr-python 3 is not installed")


def convert(source: Path, target: Path, *options: str) -> None:
    result = CliRunner().invoke(main, ["convert", str(source), "-o", str(target), "-q", *options])
    assert result.exit_code == 0, result.output


def chunk_files(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((store / "images").glob("c.*"))}


def test_gzip_zarr_chunks_are_the_same_bytes_in_two_runs(tmp_path: Path) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (23, 6, 5), np.uint8)
    np.save(tmp_path / "x.npy", pixels)
    for run in ("one", "two"):
        (tmp_path / run).mkdir()
        convert(
            tmp_path / "x.npy",
            tmp_path / run / "x.zarr",
            "--compression",
            "gzip",
            "--chunk-images",
            "10",
            "--labels",
            "none",
        )
    first = chunk_files(tmp_path / "one" / "x.zarr")
    assert list(first) == ["c.0.0.0", "c.1.0.0", "c.2.0.0"]
    assert first == chunk_files(tmp_path / "two" / "x.zarr")
    assert all(data[4:8] == b"\0\0\0\0" for data in first.values())  # gzip MTIME
    images = zarr.open_group(str(tmp_path / "one" / "x.zarr"), mode="r")["images"]
    assert np.array_equal(images[...], pixels.astype(np.float32) / np.float32(255))
    last = np.frombuffer(gzip.decompress(first["c.2.0.0"]), "<f4").reshape(10, 6, 5)
    assert np.isnan(last[3:]).all()  # the edge chunk padded with the fill value


@pytest.mark.parametrize("name", ["p.npy", "p.h5", "p-idx3-ubyte", "p-idx3-ubyte.gz"])
def test_pixel_writer_of_each_invert_format_writes_the_pixels(tmp_path: Path, name: str) -> None:
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    target = tmp_path / name
    with staged_outputs(False, []) as staged:
        writer = open_pixel_writer(target, pixels.shape, staged)
        writer.write(pixels[:1])
        writer.write(pixels[1:])
        writer.finish(None)
    data = target.read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    if "idx" in name:
        assert data == bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]) + pixels.tobytes()
    elif name.endswith(".npy"):
        assert np.array_equal(np.load(target), pixels)
    else:
        import h5py

        with h5py.File(target, "r") as handle:
            assert np.array_equal(handle["images"][...], pixels)


def test_pixel_writer_refuses_uint16_to_idx_before_writing(tmp_path: Path) -> None:
    target = tmp_path / "p-idx3-ubyte"
    with pytest.raises(OutputError, match="IDX has no unsigned 16-bit type"):
        with staged_outputs(False, []) as staged:
            open_pixel_writer(target, (1, 2, 2), staged, "uint16")
    assert not target.exists()
