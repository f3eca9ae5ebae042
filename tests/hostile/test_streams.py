"""Signals, special files as input, standard input and output, and odd file names."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import (
    assert_clean_failure,
    assert_unchanged,
    cli,
    isolated_cli,
    skip_unless_fifo_supported,
    snapshot,
    start_cli,
    wait_for,
)

# ------------------------------------------------------------------ signals

#: Exit codes a shell reports for these signals: 128 + N, whether the process exits with it
#: after cleaning up or re-raises the signal (then the wait status says "killed by N").
SIGNAL_CODES = {
    signal.SIGTERM: (143, -signal.SIGTERM),
    signal.SIGINT: (130, -signal.SIGINT),
    signal.SIGHUP: (129, -signal.SIGHUP),
}


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 MiB of colour tiles: long enough a conversion to interrupt mid-way."""
    path = tmp_path_factory.mktemp("big") / "tiles.npy"
    rng = np.random.default_rng(0)
    np.save(path, rng.integers(0, 256, (3000, 64, 64, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize("sig", sorted(SIGNAL_CODES), ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("suffix", [".h5", ".npy"])
def test_signal_during_a_long_convert(
    tmp_path: Path, out_dir: Path, child_tmp: Path, big_input: Path, sig: int, suffix: str
) -> None:
    before = snapshot(tmp_path)
    child = start_cli(
        [
            "convert",
            big_input,
            "-o",
            out_dir / f"x{suffix}",
            "-s",
            "standardize",
            "--scope",
            "channel",
            "--chunk-mb",
            "1",
        ],
        tmpdir=child_tmp,
    )
    started = wait_for(lambda: any(out_dir.iterdir()) or not child.alive())
    assert started, "the conversion never started writing"
    if not child.alive():
        outcome = child.finish()
        pytest.skip(f"the conversion finished before the signal (exit {outcome.code})")
    child.send_signal(sig)
    outcome = child.finish(timeout=30)
    assert outcome.code in SIGNAL_CODES[sig], outcome.describe()
    assert "Traceback" not in outcome.stderr, outcome.describe()
    assert len(outcome.stderr.splitlines()) <= 1, outcome.describe()
    assert_unchanged(tmp_path, before)


def feed(fd: int, data: bytes, timeout: float) -> bool:
    """Write all of ``data`` to the pipe ``fd`` within ``timeout``; False if the reader
    went away or stopped reading."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    while view and time.monotonic() < deadline:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            time.sleep(0.005)
        except BrokenPipeError:
            return False
    return not view


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_while_reading_stdin_leaves_nothing(
    tmp_path: Path, out_dir: Path, child_tmp: Path, number: int
) -> None:
    """Standard input that stops mid-way (the writer is still there): SIGTERM, or the
    hang-up of a closed terminal, ends the run with nothing left behind, temporary copies of
    the stream included (TMPDIR is watched)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (5000, 28, 28)}
    )
    read_end, write_end = os.pipe()
    before = snapshot(tmp_path)
    child = start_cli(["convert", "-", "-o", out_dir / "x.npy"], stdin=read_end, tmpdir=child_tmp)
    os.close(read_end)
    # More than a pipe holds: once it is all written, pixscale is reading the stream.
    if not feed(write_end, header.getvalue() + bytes(256 << 10), timeout=30):
        os.close(write_end)
        pytest.fail("pixscale did not read standard input\n" + child.finish().describe())
    try:
        assert child.alive(), child.finish().describe()
        child.send_signal(number)
        # A process that ends only once its input closes counts as ignoring the signal.
        outcome = child.finish(timeout=20)
    finally:
        os.close(write_end)
    assert outcome.code == SIGNAL_CODES[number][0], outcome.describe()
    assert outcome.stderr == "Error: terminated; no output was written\n", outcome.describe()
    assert "Traceback" not in outcome.stderr, outcome.describe()
    assert len(outcome.stderr.splitlines()) <= 1, outcome.describe()
    assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------ special files as input


@pytest.mark.parametrize("command", ["convert", "info"])
def test_fifo_as_input_gets_a_specific_reason(tmp_path: Path, out_dir: Path, command: str) -> None:
    skip_unless_fifo_supported(tmp_path)
    fifo = tmp_path / "queue.npy"
    os.mkfifo(fifo)
    before = snapshot(tmp_path)
    args: list[object] = [command, fifo] + (
        ["-o", out_dir / "x.npy"] if command == "convert" else []
    )
    result = isolated_cli(args, timeout=30)
    assert_clean_failure(result, names=[f"{fifo}: "], reasons=["not a regular file (a FIFO)"])
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("command", ["convert", "info"])
def test_dev_zero_as_input_gets_a_specific_reason(
    tmp_path: Path, out_dir: Path, command: str
) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    before = snapshot(tmp_path)
    args: list[object] = [command, "/dev/zero"]
    if command == "convert":
        args += ["-o", out_dir / "x.npy"]
    result = isolated_cli(args, timeout=30)
    assert_clean_failure(
        result, names=["/dev/zero: "], reasons=["not a regular file (a character device)"]
    )
    assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------ standard input


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "no data on standard input"),
        (b"GIF89a and more bytes", "not an IDX or .npy stream (it starts with 0x4749463839612061)"),
        (b"\x93NUMPY\x01", "truncated: the stream ends inside its header"),
    ],
    ids=["empty", "unknown format", "damaged npy header"],
)
def test_stdin_errors_name_stdin(
    tmp_path: Path, out_dir: Path, content: bytes, reason: str
) -> None:
    before = snapshot(tmp_path)
    result = cli(["convert", "-", "-o", out_dir / "x.npy"], input=content)
    assert_clean_failure(
        result, names=["<stdin>: "], reasons=[reason], forbidden=["pixscale-stdin", "/tmp"]
    )
    assert_unchanged(tmp_path, before)


FITTED = {
    "standardize": ["-s", "standardize"],
    "standardize per pixel": ["-s", "standardize", "--scope", "pixel"],
    "range --from-data": ["-s", "range", "--from-data"],
    "standardize per image": ["-s", "standardize", "--scope", "image"],
}


@pytest.mark.parametrize("case", sorted(FITTED))
def test_fitted_record_to_stdout_is_not_silently_dropped(small_npy: Path, case: str) -> None:
    """-o - writes only the array; a fitted strategy's parameters would be lost without
    --params-out: refused, naming the option."""
    result = cli(["convert", small_npy, "-o", "-", *FITTED[case]])
    assert_clean_failure(
        result,
        reasons=("-o - writes only the data: give --params-out FILE to keep the fitted",),
    )
    assert result.stdout == b""


# ------------------------------------------------------------------ odd file names


@pytest.mark.parametrize("odd", ["\n", "\r"], ids=["newline", "carriage return"])
def test_control_characters_in_an_input_name_stay_on_one_line(
    tmp_path: Path, out_dir: Path, odd: str
) -> None:
    path = tmp_path / f"bad{odd}name.npy"
    path.write_bytes(b"not an array at all")
    before = snapshot(tmp_path)
    result = cli(["convert", path, "-o", out_dir / "x.npy"])
    assert_clean_failure(result, names=["name.npy"], reasons=["unknown format"])
    assert_unchanged(tmp_path, before)


def test_newline_in_an_output_name_stays_on_one_line(
    tmp_path: Path, out_dir: Path, small_npy: Path
) -> None:
    before = snapshot(tmp_path)
    result = cli(["convert", small_npy, "-o", out_dir / "out\nput.txt"])
    assert_clean_failure(
        result, names=["put.txt"], reasons=["cannot tell the output format from the extension"]
    )
    assert_unchanged(tmp_path, before)
