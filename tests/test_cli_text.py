"""The exact text of info, export, --dry-run, the convert report, and the shared input options
on every command that reads a dataset."""

from __future__ import annotations

import re
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from conftest import SAMPLE_IMAGES, SAMPLE_LABELS
from pixscale.cli import main

SHA = "2ac99ff5a3d8394892213fcbf0383ba98c1a173e282a74877fccaae87917f1db"


def run(*args: str, code: int = 0) -> tuple[str, str]:
    result = run_cli(*args)
    assert result.exit_code == code, result.output
    return result.stdout, result.stderr


def test_info_text_of_an_input() -> None:
    stdout, _ = run("info", str(SAMPLE_IMAGES))
    assert stdout == (
        "mnist-train-1k-images-idx3-ubyte.gz: input, idx\n"
        "  shape      1000×28×28 uint8, layout nhw\n"
        "  labels     1000, 10 classes\n"
        "  all pixels min 0  max 255  mean 32.7009  std 77.8104 (exact)\n"
    )


def test_info_text_of_an_output(tmp_path: Path) -> None:
    run("convert", str(SAMPLE_IMAGES), "-o", str(tmp_path / "a.h5"), "-s", "standardize", "-q")
    lines = run("info", str(tmp_path / "a.h5"))[0].splitlines()
    assert lines[:3] == [
        "a.h5: pixscale output, hdf5",
        "  shape      1000×28×28 float32, layout nhw",
        "  labels     1000, 10 classes",
    ]
    # float64 sums of float32 values: the mean is 0 to within rounding, shown as such
    assert re.fullmatch(
        r"  all pixels min -0\.420264  max 2\.85693  mean -?[0-9.e-]+  std 1 \(float64 sums\)",
        lines[3],
    )
    assert abs(float(lines[3].split("mean ")[1].split()[0])) < 1e-6
    assert lines[4:] == [
        "  strategy   standardize, scope global",
        "  source_low         [32.700934948979594]",
        "  source_low_unit    [0.1282389605842337]",
        "  source_span        [77.81040410762031]",
        "  source_span_unit   [0.3051388396377267]",
        f"  source     mnist-train-1k-images-idx3-ubyte.gz sha256 {SHA}",
        f"  fitted on  mnist-train-1k-images-idx3-ubyte.gz sha256 {SHA}",
    ]


@pytest.mark.parametrize(
    ("target", "text"),
    [
        ("torchvision", "transforms.Normalize(mean=(0.1282,), std=(0.3051,))  # after ToTensor()"),
        (
            "keras",
            "keras.layers.Normalization(mean=(32.7009,), variance=(6054.459,))  # on 0-255 pixels",
        ),
        ("dali", "fn.crop_mirror_normalize(images, mean=[32.7009], std=[77.8104])  # 0-255 units"),
    ],
)
def test_export_text(tmp_path: Path, target: str, text: str) -> None:
    params = tmp_path / "p.json"
    run("fit", str(SAMPLE_IMAGES), "-s", "standardize", "-o", str(params), "-q")
    assert run("export", str(params), "--to", target)[0] == text + "\n"


def test_export_never_rounds_a_small_std_to_zero(tmp_path: Path) -> None:
    params = tmp_path / "p.json"
    run("fit", str(SAMPLE_IMAGES), "-s", "standardize", "-o", str(params), "-q")
    stdout, _ = run("export", str(params), "--digits", "1")
    assert stdout.startswith("transforms.Normalize(mean=(0.1,), std=(0.3,))")
    run("export", str(params), "--digits", "0", code=2)


def test_dry_run_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda _: Usage(10**12, 0, 5 * 10**11))
    out = tmp_path / "b.npy"
    stdout, _ = run("convert", str(SAMPLE_IMAGES), "-o", str(out), "-s", "standardize", "--dry-run")
    assert stdout == (
        "read    1 file(s), 161,728 bytes on disk: 1,000 images [1000, 28, 28]\n"
        f"write   {out}: 3,136,000 bytes float32 [1000, 28, 28]\n"
        "passes  2 (chunks of 1,000 images)\n"
        "writes  buffered\n"
        "memory  about 73 MiB peak\n"
        "disk    500,000,000,000 bytes free\n"
    )
    assert not out.exists()


def test_convert_report_text(tmp_path: Path) -> None:
    out = tmp_path / "c.npy"
    _, stderr = run("convert", str(SAMPLE_IMAGES), "-o", str(out), "-s", "symmetric")
    assert stderr == "c.npy: float32 1000×28×28, strategy symmetric, labels in c.labels.npy\n"
    _, quiet = run("convert", str(SAMPLE_IMAGES), "-o", str(out), "--overwrite", "-q")
    assert quiet == ""


# -- the shared input options ---------------------------------------------------------------


@pytest.fixture
def keras_npz(tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]) -> Path:
    path = tmp_path / "keras.npz"
    images, labels = sample
    np.savez(
        path, x_train=images[:600], y_train=labels[:600], x_test=images[600:], y_test=labels[600:]
    )
    return path


@pytest.fixture
def nchw_npy(tmp_path: Path, photo_tiles: np.ndarray) -> Path:
    path = tmp_path / "nchw.npy"
    np.save(path, np.ascontiguousarray(photo_tiles.transpose(0, 3, 1, 2)))
    return path


def test_fit_takes_key_and_input_layout(tmp_path: Path, keras_npz: Path, nchw_npy: Path) -> None:
    import json

    run(
        "fit",
        str(keras_npz),
        "--key",
        "x_train",
        "-s",
        "standardize",
        "-o",
        str(tmp_path / "k.json"),
    )
    record = json.loads((tmp_path / "k.json").read_text())
    assert record["fitted_on"]["name"] == "keras.npz:x_train"
    run(
        "fit",
        str(nchw_npy),
        "--input-layout",
        "nchw",
        "-s",
        "standardize",
        "--scope",
        "channel",
        "-o",
        str(tmp_path / "c.json"),
    )
    record = json.loads((tmp_path / "c.json").read_text())
    assert len(record["source_low"]) == 3 and record["layout"] == "nchw"
    run(
        "convert",
        str(nchw_npy),
        "--input-layout",
        "nchw",
        "-o",
        str(tmp_path / "c.h5"),
        "--params-from",
        str(tmp_path / "c.json"),
        "-q",
    )


def test_info_and_preview_take_the_input_options(
    tmp_path: Path, keras_npz: Path, nchw_npy: Path
) -> None:
    stdout, _ = run("info", str(nchw_npy), "--input-layout", "nchw")
    assert "layout nchw" in stdout and "channel 2" in stdout
    run("preview", str(keras_npz), "--key", "x_test", "-o", str(tmp_path / "p.png"), "-q")
    assert (tmp_path / "p.png").is_file()
    stdout, _ = run("info", str(SAMPLE_IMAGES), "--labels", str(SAMPLE_LABELS))
    assert "labels     1000, 10 classes" in stdout


def test_verify_and_invert_take_the_key_from_the_record(tmp_path: Path, keras_npz: Path) -> None:
    out = tmp_path / "test.h5"
    run("convert", str(keras_npz), "--key", "x_test", "-o", str(out), "-q")
    stdout, _ = run("verify", str(out), "--source", str(keras_npz))
    assert "FAIL" not in stdout and "source sha256" in stdout
    _, stderr = run(
        "invert", str(out), "-o", str(tmp_path / "back.npy"), "--verify", str(keras_npz), "-q"
    )
    assert stderr == ""
    run("verify", str(out), "--source", str(keras_npz), "--key", "x_train", code=1)


def test_every_command_has_quiet_and_help() -> None:
    for name, command in main.commands.items():
        flags = {opt for p in command.params for opt in getattr(p, "opts", [])}
        assert "-q" in flags, name
        assert command.help and "pixscale" in command.help, name
