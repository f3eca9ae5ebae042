"""The file-size limit reached while writing chunked or compressed HDF5.

A full disk and ``ulimit -f`` both make a write fail half-way (ENOSPC, EFBIG). Compressed and
chunked HDF5 goes through the HDF5 library, which must report it as one clean error: exit code
exactly 1 (not a crash, not a signal), one ``Error:`` line, and no partial or temporary file.
The limit is either lowered while the output is being written (``prlimit``) or set from the
start (``setrlimit`` in the child); SIGXFSZ is ignored, as the brief for this suite says.
"""

from __future__ import annotations

import resource
from pathlib import Path

import h5py
import numpy as np
import pytest

from pixscale.engine.local import convert

from .conftest import (
    SAMPLE_IMAGES,
    Outcome,
    assert_clean_failure,
    assert_unchanged,
    snapshot,
    start_cli,
    wait_for,
)

WRITE_FAILED = "x.h5: write failed: File too large"
LAYOUTS = {
    "gzip": ["--compression", "gzip"],
    "lzf": ["--compression", "lzf"],
    "chunks of 10": ["--chunk-images", "10"],
    "gzip, chunks of 10": ["--compression", "gzip", "--chunk-images", "10"],
}


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 MiB of random colour images: 48 MiB of float32 that compresses poorly."""
    path = tmp_path_factory.mktemp("noise") / "noise.npy"
    rng = np.random.default_rng(11)
    np.save(path, rng.integers(0, 256, (1000, 64, 64, 3), dtype=np.uint8))
    return path


def written(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_limit_lowered_while_writing(
    tmp_path: Path, out_dir: Path, child_tmp: Path, noise: Path, layout: str
) -> None:
    before = snapshot(tmp_path)
    child = start_cli(
        ["convert", noise, "-o", out_dir / "x.h5", "-q", *LAYOUTS[layout]],
        tmpdir=child_tmp,
        file_size_limit=resource.RLIM_INFINITY,  # SIGXFSZ ignored, no limit yet
    )
    # The limit goes below what is already written: the next write fails, however fast.
    assert wait_for(lambda: written(out_dir) > 1 << 20 or not child.alive()), "nothing written"
    resource.prlimit(child.pid, resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    outcome: Outcome = child.finish(timeout=120)
    assert_clean_failure(outcome, names=[out_dir / "x.h5"], reasons=[WRITE_FAILED])
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("layout", ["lzf", "gzip, chunks of 10"])
def test_limit_set_from_the_start(
    tmp_path: Path, out_dir: Path, child_tmp: Path, noise: Path, layout: str
) -> None:
    """4 MiB: far less than the 48 MiB of values, which compress poorly; a compressed
    output is not refused up front for its uncompressed size, so the write fails."""
    before = snapshot(tmp_path)
    outcome = start_cli(
        ["convert", noise, "-o", out_dir / "x.h5", "-q", *LAYOUTS[layout]],
        tmpdir=child_tmp,
        file_size_limit=4 << 20,
    ).finish(timeout=120)
    assert_clean_failure(outcome, names=[out_dir / "x.h5"], reasons=[WRITE_FAILED])
    assert_unchanged(tmp_path, before)


def test_compressed_output_is_not_refused_for_its_uncompressed_size(
    tmp_path: Path, out_dir: Path, child_tmp: Path
) -> None:
    """32 MB of float32 zeros compress to almost nothing: an 8 MiB limit is no reason to
    refuse them up front."""
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((2000, 64, 64), np.uint8))
    outcome = start_cli(
        ["convert", flat, "-o", out_dir / "x.h5", "--compression", "gzip"],
        tmpdir=child_tmp,
        file_size_limit=8 << 20,
    ).finish(timeout=120)
    assert outcome.code == 0, outcome.describe()
    assert (out_dir / "x.h5").stat().st_size < 8 << 20
    with h5py.File(out_dir / "x.h5", "r") as handle:
        assert handle["images"].shape == (2000, 64, 64) and not handle["images"][-1].any()


def test_limit_hit_by_invert_to_hdf5(tmp_path: Path, out_dir: Path, child_tmp: Path) -> None:
    converted = tmp_path / "x.npy"
    convert(SAMPLE_IMAGES, converted)
    before = snapshot(tmp_path)
    outcome = start_cli(
        ["invert", converted, "-o", out_dir / "back.h5"],
        tmpdir=child_tmp,
        file_size_limit=256 << 10,
    ).finish(timeout=120)
    reason = "back.h5: write failed: File too large"
    assert_clean_failure(outcome, names=[out_dir / "back.h5"], reasons=[reason])
    assert_unchanged(tmp_path, before)
