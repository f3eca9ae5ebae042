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

from .conftest import (
    Outcome,
    assert_clean_failure,
    assert_unchanged,
    snapshot,
    start_cli,
    wait_for,
)

REASONS = ("file too large", "file-size limit", "write failed", "too large", "limit")
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
    assert wait_for(lambda: any(out_dir.iterdir()) or not child.alive()), "nothing written"
    limit = written(out_dir) + (2 << 20)
    try:
        resource.prlimit(child.pid, resource.RLIMIT_FSIZE, (limit, limit))
    except ProcessLookupError:
        pass
    outcome: Outcome = child.finish(timeout=120)
    if outcome.code == 0:
        # Only a complete, correct output excuses exit 0: the run beat the new limit.
        with h5py.File(out_dir / "x.h5", "r") as handle:
            stored = handle["images"][()]
        expected = np.load(noise).astype(np.float32) / np.float32(255)
        assert np.array_equal(stored, expected), "exit 0 with a damaged output\n" + (
            outcome.describe()
        )
        pytest.skip("the conversion finished before the limit was lowered")
    assert_clean_failure(outcome, names=["x.h5"], reasons=REASONS)
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("layout", ["lzf", "gzip, chunks of 10"])
def test_limit_set_from_the_start(
    tmp_path: Path, out_dir: Path, child_tmp: Path, noise: Path, layout: str
) -> None:
    """4 MiB: far less than the 48 MiB of values; refusing up front and failing at the limit
    are both fine, as long as the failure is clean."""
    before = snapshot(tmp_path)
    outcome = start_cli(
        ["convert", noise, "-o", out_dir / "x.h5", "-q", *LAYOUTS[layout]],
        tmpdir=child_tmp,
        file_size_limit=4 << 20,
    ).finish(timeout=120)
    assert_clean_failure(outcome, names=["x.h5"], reasons=REASONS)
    assert_unchanged(tmp_path, before)
