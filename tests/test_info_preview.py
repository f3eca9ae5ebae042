"""info and preview on inputs and outputs; --dry-run; the usage examples run."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import PIXSCALE, run_cli
from conftest import ROOT, SAMPLE_IMAGES
from pixscale.core.spec import Spec
from pixscale.engine.local import convert


def info_json(path: Path) -> dict:  # type: ignore[type-arg]
    result = run_cli("info", path, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_info_on_idx_input_matches_numpy(sample) -> None:  # type: ignore[no-untyped-def]
    details = info_json(SAMPLE_IMAGES)
    images = sample[0].astype(np.float64)
    assert details["format"] == "idx" and details["shape"] == [1000, 28, 28]
    assert details["layout"] == "nhw" and details["labels"] == 1000 and details["classes"] == 10
    assert details["stats"]["mean"] == [pytest.approx(images.mean(), rel=1e-12)]
    assert details["stats"]["std"] == [pytest.approx(images.std(), rel=1e-12)]
    assert details["stats"]["min"] == [0] and details["stats"]["max"] == [255]


def test_info_on_rgb_input_per_channel(photo_npy: Path, photo_tiles: np.ndarray) -> None:
    details = info_json(photo_npy)
    as_float = photo_tiles.astype(np.float64)
    np.testing.assert_allclose(details["stats"]["mean"], as_float.mean(axis=(0, 1, 2)), rtol=1e-12)
    assert details["channels"] == 3 and details["labels"] is None


@pytest.mark.parametrize(
    "spec",
    [
        Spec(),
        Spec("symmetric"),
        Spec("none"),
        Spec("range", source_range=(0, 255), target_range=(-2, 3)),
        Spec("standardize"),
        Spec("standardize", scope="pixel"),
        Spec("standardize", scope="image"),
    ],
)
@pytest.mark.parametrize("suffix", [".h5", ".npy"])
def test_info_on_outputs_of_every_strategy(tmp_path: Path, spec: Spec, suffix: str) -> None:
    out = tmp_path / f"o{suffix}"
    convert(SAMPLE_IMAGES, out, spec)
    details = info_json(out)
    data = np.load(out) if suffix == ".npy" else __import__("h5py").File(out)["images"][()]
    assert details["kind"] == "pixscale output" and details["strategy"] == spec.strategy
    assert details["stats"]["min"] == [pytest.approx(float(data.min()))]
    assert details["stats"]["max"] == [pytest.approx(float(data.max()))]
    assert details["stats"]["mean"] == [
        pytest.approx(float(data.astype(np.float64).mean()), abs=1e-9)
    ]
    assert details["source"]["name"] == SAMPLE_IMAGES.name and details["labels"] == 1000
    text = run_cli("info", out)
    assert f"strategy   {spec.strategy}, scope {spec.scope}" in text.output


def test_info_parameters_in_both_units(tmp_path: Path) -> None:
    convert(SAMPLE_IMAGES, tmp_path / "s.h5", Spec("standardize"))
    details = info_json(tmp_path / "s.h5")
    parameters = details["parameters"]
    assert parameters["source_low_unit"][0] == pytest.approx(parameters["source_low"][0] / 255)


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.size


@pytest.mark.parametrize("kind", ["idx", "npy-rgb", "h5-standardize", "npy-image-scope", "folder"])
def test_preview_draws_a_png_of_the_expected_size(
    tmp_path: Path, photo_npy: Path, kind: str
) -> None:
    path = {"idx": SAMPLE_IMAGES, "npy-rgb": photo_npy}.get(kind)
    if kind == "h5-standardize":
        path = tmp_path / "s.h5"
        convert(SAMPLE_IMAGES, path, Spec("standardize", scope="channel"))
    elif kind == "npy-image-scope":
        path = tmp_path / "i.npy"
        convert(photo_npy, path, Spec("standardize", scope="image"))
    elif kind == "folder":
        from PIL import Image

        path = tmp_path / "folder"
        for name in ("cats", "dogs"):
            (path / name).mkdir(parents=True)
            Image.fromarray(np.full((20, 30, 3), 100, np.uint8)).save(path / name / "a.png")
    out = tmp_path / "preview.png"
    result = run_cli("preview", path, "-o", out, "-n", "12")
    assert result.exit_code == 0, result.output
    from pixscale.tasks.preview import CELL, HIST_SIZE, LABEL_HEIGHT

    images = 2 if kind == "folder" else 12
    columns = min(8, images)
    rows = -(-images // columns)
    width = max(columns * CELL, 2 * HIST_SIZE[0]) + 20
    height = 24 + rows * (CELL + LABEL_HEIGHT) + HIST_SIZE[1] + 20
    assert png_size(out) == (width, height)
    assert_first_tile_is_drawn(out, kind)


def assert_first_tile_is_drawn(png: Path, kind: str) -> None:
    """The first grid cell holds the first image, not a blank (folder images are flat)."""
    from PIL import Image

    from pixscale.tasks.preview import CELL

    with Image.open(png) as image:
        tile = np.asarray(image.convert("L").crop((10, 24, 10 + CELL - 8, 24 + CELL - 8)))
    if kind == "folder":
        assert (tile == 100).all()  # the flat grey the test images were made of
    else:
        assert tile.std() > 20 and len(np.unique(tile)) > 8


def test_preview_of_an_output_shows_the_source_pixels(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    from pixscale.tasks.preview import output_preview

    convert(SAMPLE_IMAGES, tmp_path / "s.npy", Spec("standardize"))
    data = output_preview(tmp_path / "s.npy", 5)
    assert np.array_equal(data.images, sample[0][:5])
    assert np.array_equal(data.source_hist, np.bincount(sample[0].reshape(-1), minlength=256))
    assert data.labels is not None and data.labels.tolist() == sample[1][:5].tolist()


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    result = run_cli(
        "convert", SAMPLE_IMAGES, "-o", tmp_path / "x.h5", "--dry-run", "-s", "standardize"
    )
    assert result.exit_code == 0, result.output
    assert "write   " in result.stdout and f"{1000 * 784 * 4:,} bytes" in result.stdout
    assert "passes  2" in result.stdout and "MiB peak" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_makefile_converts_train_and_test_once(tmp_path: Path, mnist_dir: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    command = [
        "make",
        "-f",
        str(ROOT / "examples" / "Makefile"),
        f"DATA={mnist_dir}",
        f"PIXSCALE={shlex.join(PIXSCALE)}",
    ]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"train.h5", "test.h5", "mnist.params.json"}
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert "Nothing to be done" in again.stdout
    import h5py

    with h5py.File(tmp_path / "test.h5", "r") as handle:
        record = json.loads(handle.attrs["pixscale_params"])
    assert record["fitted_on"]["name"] == "train-images-idx3-ubyte.gz"


def test_numpy_mmap_example(tmp_path: Path) -> None:
    convert(SAMPLE_IMAGES, tmp_path / "train.npy")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "numpy_mmap.py"), str(tmp_path / "train.npy")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("unit (1000, 28, 28) float32 [5, 0, 4, 1, 9, 2, 1, 3]")


def test_torch_dataset_example_with_workers(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="PyTorch is not installed")
    convert(SAMPLE_IMAGES, tmp_path / "train.h5")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "torch_dataset.py"), str(tmp_path / "train.h5")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("unit (64, 28, 28) torch.float32")


@pytest.mark.parametrize("kind", ["npz", "hdf5", "cifar", "folder"])
def test_info_on_every_input_format(tmp_path: Path, sample, kind: str) -> None:  # type: ignore[no-untyped-def]
    images, labels = sample[0][:40], sample[1][:40]
    if kind == "npz":
        path = tmp_path / "m.npz"
        np.savez(path, x_train=images, y_train=labels)
        args = ["--key", "x_train"]
    elif kind == "hdf5":
        import h5py

        path = tmp_path / "m.h5"
        with h5py.File(path, "w") as handle:
            handle["images"] = images
            handle["labels"] = labels
        args = []
    elif kind == "cifar":
        path = tmp_path / "data_batch_1.bin"
        rgb = np.ascontiguousarray(
            np.repeat(np.pad(images, ((0, 0), (2, 2), (2, 2)))[..., None], 3, -1)
        )
        planar = rgb.transpose(0, 3, 1, 2).reshape(40, -1)
        path.write_bytes(np.concatenate([labels[:, None], planar], axis=1).tobytes())
        images = rgb
        args = []
    else:
        from PIL import Image

        path = tmp_path / "digits"
        path.mkdir()
        for index, image in enumerate(images):
            Image.fromarray(image).save(path / f"{index:02d}.png")
        args = []
    result = run_cli("info", path, "--json", *args)
    assert result.exit_code == 0, result.output
    details = json.loads(result.stdout)
    as_float = images.astype(np.float64)
    axes = (0, 1, 2) if images.ndim == 4 else None
    expected_mean = np.atleast_1d(as_float.mean(axis=axes))
    np.testing.assert_allclose(details["stats"]["mean"], expected_mean, rtol=1e-12)
    assert details["shape"] == list(images.shape)
    assert details["labels"] == (None if kind == "folder" else 40)
