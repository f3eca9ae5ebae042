"""The command line: exit codes, one-line errors, help, and the installed entry point."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import fails_with, run_cli
from conftest import SAMPLE_IMAGES
from pixscale import __version__, convert
from pixscale.cli import main
from pixscale.cli import progress as cli


def test_version_prints_the_bare_version() -> None:
    result = run_cli("--version")
    assert result.exit_code == 0 and result.output.strip() == __version__


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.exit_code == 0
    assert f"pixscale {command}" in result.output


def test_convert_writes_output_and_reports_on_stderr(tmp_path: Path) -> None:
    out = tmp_path / "s.npy"
    result = run_cli(
        "convert", SAMPLE_IMAGES, "-o", out, "-s", "range", "--from", 0, 255, "--to", -2, 3
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "float32 1000×28×28" in result.stderr
    assert np.load(out).min() == -2 and np.load(out).max() == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.gz"], "missing.gz: no such file"),
        (["{bad}"], "unknown format"),
        (["{float}"], "dtype is float64, expected uint8"),
    ],
)
def test_bad_input_is_one_line_error_exit_1_and_no_output(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "bad").write_bytes(b"not an image file")
    np.save(tmp_path / "float.npy", np.zeros((2, 2, 2)))
    out = tmp_path / "o" / "out.h5"
    out.parent.mkdir()
    paths = [a.format(bad=tmp_path / "bad", float=tmp_path / "float.npy") for a in args]
    paths = [p if p.startswith(str(tmp_path)) else str(tmp_path / p) for p in paths]
    fails_with(["convert", *paths, "-o", out], message)
    assert list(out.parent.iterdir()) == []


def test_existing_output_refused_with_hint(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    out.write_text("keep")
    fails_with(
        ["convert", SAMPLE_IMAGES, "-o", out], "already exists. Use --overwrite", names=[out]
    )
    assert out.read_text() == "keep"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run_cli("convert", SAMPLE_IMAGES, "-o", tmp_path / "x.h5", "-s", "bogus")
    assert result.exit_code == 2
    assert "Invalid value for '-s'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_inconsistent_options_are_one_line_errors(tmp_path: Path) -> None:
    fails_with(
        ["convert", SAMPLE_IMAGES, "-o", tmp_path / "x.h5", "--from", 0, 255], "range strategy only"
    )
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_extension(tmp_path: Path) -> None:
    fails_with(["convert", SAMPLE_IMAGES, "-o", tmp_path / "x.dat"], "--format h5|npy")
    assert list(tmp_path.iterdir()) == []


def test_installed_entry_point_runs(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    scripts = Path(sys.executable).parent
    result = subprocess.run(
        [str(scripts / "pixscale"), "convert", str(SAMPLE_IMAGES), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and result.stdout == ""


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so the progress bar draws."""

    def isatty(self) -> bool:
        return True


def test_progress_bar_shows_images_bytes_and_rate_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(cli, "PROGRESS_AFTER_SECONDS", 0.0)
    advance, close = cli.progress_bar(False, "converting")
    assert advance is not None
    convert(SAMPLE_IMAGES, tmp_path / "s.npy", chunk_mb=0.1, progress=advance)
    close()
    drawn = terminal.getvalue().split("\r")[-1]
    assert "converting" in drawn and "100%" in drawn
    assert re.search(r"766 KiB at [\d.]+ [KMG]iB/s", drawn), drawn  # 1000 × 784 bytes


def test_progress_bar_stays_hidden_for_short_runs_and_with_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    advance, close = cli.progress_bar(False, "converting")
    assert advance is not None
    advance(10, 20, 7840)  # within the first second
    close()
    assert terminal.getvalue() == ""
    assert cli.progress_bar(True, "converting")[0] is None


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 B"), (1000, "1000 B"), (1536, "1.5 KiB"), (3 << 30, "3 GiB")]
)
def test_format_bytes(count: int, text: str) -> None:
    assert cli.format_bytes(count) == text
