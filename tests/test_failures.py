"""The bad-input catalogue: one-line errors, exit 1, and the output folder as it was."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import (
    assert_one_error_line,
    fails_with,
    invoke,
    run_cli,
    run_process,
    start_process,
)
from conftest import SAMPLE_IMAGES
from pixscale.errors import InputError


def idx_header(*shape: int, dtype: int = 0x08) -> bytes:
    return bytes([0, 0, dtype, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


CATALOGUE = {
    "missing": (None, "no such file"),
    "empty": (b"", "file is empty"),
    "unknown format": (b"GIF89a and more bytes", "unknown format"),
    "wrong IDX magic": (b"\x00\x00\x08\x00" + b"\x00" * 20, "unknown format"),
    "IDX not uint8": (idx_header(2, 2, 2, dtype=0x0D) + b"\0" * 32, "IDX data type is float32"),
    "IDX header promises more": (idx_header(10, 28, 28) + b"\0" * 100, "truncated"),
    "truncated gzip": (SAMPLE_IMAGES.read_bytes()[:20000], "corrupt or truncated gzip"),
    "corrupt gzip": (
        SAMPLE_IMAGES.read_bytes()[:3000] + b"\x00" * 500 + SAMPLE_IMAGES.read_bytes()[3500:],
        "corrupt or truncated gzip",
    ),
    "zero images": (idx_header(0, 28, 28), "holds zero images"),
    "npy truncated": (None, "truncated"),
    "npy float64": (None, "dtype is float64, expected uint8"),
    "pickle in npy": (None, "dtype is object, expected uint8"),
}


def make_input(folder: Path, case: str) -> Path:
    path = folder / "input.bin"
    content, _ = CATALOGUE[case]
    if content is not None:
        path.write_bytes(content)
    elif case == "npy truncated":
        np.save(folder / "input.npy", np.zeros((10, 8, 8), np.uint8))
        path = folder / "input.npy"
        path.write_bytes(path.read_bytes()[:-100])
    elif case == "npy float64":
        path = folder / "input.npy"
        np.save(path, np.zeros((3, 4, 4)))
    elif case == "pickle in npy":
        path = folder / "input.npy"
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return path


@pytest.mark.parametrize("case", sorted(CATALOGUE))
@pytest.mark.parametrize("suffix", [".h5", ".npy"])
def test_bad_input(tmp_path: Path, case: str, suffix: str) -> None:
    source_dir, out_dir = tmp_path / "in", tmp_path / "out"
    source_dir.mkdir()
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("already here")
    path = make_input(source_dir, case)
    before = listing(out_dir)
    fails_with(["convert", path, "-o", out_dir / f"x{suffix}"], CATALOGUE[case][1], names=[path])
    assert listing(out_dir) == before


def test_params_that_do_not_fit(tmp_path: Path) -> None:
    params = tmp_path / "p.json"
    rgb = tmp_path / "rgb.npy"
    np.save(rgb, np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3))
    assert (
        run_cli("fit", rgb, "-s", "standardize", "--scope", "channel", "-o", params).exit_code == 0
    )
    args = ["convert", SAMPLE_IMAGES, "-o", tmp_path / "x.h5", "--params-from", params]
    fails_with(args, "3 channels, data has 1", names=[params])
    assert not (tmp_path / "x.h5").exists()


def test_params_file_that_is_not_a_record(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text('{"format": "something else"}')
    args = ["convert", SAMPLE_IMAGES, "-o", tmp_path / "x.h5", "--params-from", bad]
    fails_with(args, "not a pixscale.params/1 record", names=[bad])
    assert not (tmp_path / "x.h5").exists()


def test_output_folder_missing(tmp_path: Path) -> None:
    fails_with(["convert", SAMPLE_IMAGES, "-o", tmp_path / "nope" / "x.h5"], "output folder")
    assert not (tmp_path / "nope").exists()


def test_output_never_overwrites_an_input(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((2, 3, 3), np.uint8))
    before = path.read_bytes()
    fails_with(["convert", path, "-o", path, "--overwrite"], "refusing to overwrite an input")
    assert path.read_bytes() == before


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = invoke(["--debug", "convert", tmp_path / "missing", "-o", tmp_path / "x.h5"])
    # The library's own error escapes with its traceback (not click's SystemExit).
    assert result.exit_code == 1 and isinstance(result.exception, InputError)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.npy"
    np.save(path, np.zeros((2, 3, 3), np.uint8))
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running with privileges that read any file")
    fails_with(["convert", path, "-o", tmp_path / "x.h5"], "Permission denied", names=[path])


def limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_output_larger_than_the_file_size_limit_is_refused_up_front(
    tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"big{suffix}"
    args = ["convert", SAMPLE_IMAGES, "-o", out, "--chunk-mb", "0.1"]
    done = run_process(args, preexec_fn=limit_file_size)
    assert_one_error_line(done, "file-size limit")
    assert list(tmp_path.iterdir()) == []


def big_input(folder: Path) -> Path:
    big = folder / "big.npy"
    np.save(big, np.random.default_rng(0).integers(0, 256, (6000, 64, 64, 3), dtype=np.uint8))
    return big


def wait_for_output(folder: Path) -> None:
    deadline = time.monotonic() + 30
    while not list(folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert list(folder.iterdir()), "the conversion never started writing"


def test_file_size_limit_hit_mid_write_fails_cleanly(tmp_path: Path) -> None:
    big = big_input(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    process = start_process(["convert", big, "-o", out_dir / "x.npy", "--chunk-mb", "1"])
    wait_for_output(out_dir)
    limit = 8 << 20  # lowered while the output is being written
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (limit, limit))
    _, stderr = process.communicate(timeout=60)
    assert_one_error_line(
        subprocess.CompletedProcess(process.args, process.returncode, "", stderr),
        "x.npy: write failed: File too large",
    )
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_conversion_leaves_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    big = big_input(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    options = ["-s", "standardize", "--scope", "channel", "--chunk-mb", "1"]
    process = start_process(["convert", big, "-o", out_dir / "x.h5", *options])
    wait_for_output(out_dir)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + sig, stderr  # as shells report a signal
    assert ("interrupted" if sig == signal.SIGINT else "terminated") in stderr
    assert list(out_dir.iterdir()) == []


def test_fitted_stream_without_params_out_is_refused(tmp_path: Path) -> None:
    result = fails_with(["convert", SAMPLE_IMAGES, "-o", "-", "-s", "standardize"], "--params-out")
    assert result.stdout == ""


def test_a_newline_in_a_file_name_stays_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "evil\nname.npy"
    path.write_bytes(b"not an array")
    fails_with(["convert", path, "-o", tmp_path / "x.h5"], "evil\\nname.npy")


def test_closed_standard_output_is_refused(tmp_path: Path) -> None:
    done = run_process(["convert", SAMPLE_IMAGES, "-o", "-"], preexec_fn=lambda: os.close(1))
    assert_one_error_line(done, "-o -: standard output is closed")
