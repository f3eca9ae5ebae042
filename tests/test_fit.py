"""Fitted strategies: exact statistics, fit on train and reuse on test, every scope, export."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_helpers import fails_with, run_cli
from pixscale.core.spec import Spec
from pixscale.engine.local import convert, fit
from pixscale.errors import ParamsError

TRAIN_SHA = "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"


def bits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float32).view(np.uint32)


def float64_then_float32(x: np.ndarray, mean: object, std: object) -> np.ndarray:
    return ((x.astype(np.float64) - mean) * 1.0 / std + 0.0).astype(np.float32)


def test_fit_mnist_reports_the_known_mean_and_std(
    tmp_path: Path, mnist_dir: Path, mnist_train
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "mnist.params.json"
    result = run_cli(
        "fit", mnist_dir / "train-images-idx3-ubyte.gz", "-s", "standardize", "-o", out
    )
    assert result.exit_code == 0, result.output
    assert "mean (0.1307), std (0.3081)" in result.stderr
    record = json.loads(out.read_text())
    as_float = mnist_train[0].astype(np.float64)
    assert record["source_low"] == pytest.approx(as_float.mean(), rel=1e-12)
    assert record["source_span"] == pytest.approx(as_float.std(), rel=1e-12)
    assert round(record["stats"]["mean_unit"], 4) == 0.1307
    assert round(record["stats"]["std_unit"], 4) == 0.3081
    assert record["fitted_on"]["sha256"] == TRAIN_SHA
    exported = run_cli("export", out, "--to", "torchvision")
    assert exported.output.strip() == (
        "transforms.Normalize(mean=(0.1307,), std=(0.3081,))  # after ToTensor()"
    )


def test_test_set_with_training_parameters(tmp_path: Path, mnist_dir: Path, mnist_train) -> None:  # type: ignore[no-untyped-def]
    params = tmp_path / "p.json"
    fit(mnist_dir / "train-images-idx3-ubyte.gz", params, Spec("standardize"))
    out = tmp_path / "test.h5"
    result = run_cli(
        "convert", mnist_dir / "t10k-images-idx3-ubyte.gz", "-o", out, "--params-from", params
    )
    assert result.exit_code == 0, result.output
    train = mnist_train[0].astype(np.float64)
    test_images = np.frombuffer(
        __import__("gzip").open(mnist_dir / "t10k-images-idx3-ubyte.gz").read()[16:], np.uint8
    ).reshape(-1, 28, 28)
    with h5py.File(out, "r") as handle:
        data = handle["images"][()]
        record = json.loads(handle.attrs["pixscale_params"])
    expected = float64_then_float32(test_images, train.mean(), train.std())
    ulps = np.abs(bits(data).astype(np.int64) - bits(expected).astype(np.int64))
    assert ulps.max() <= 1
    assert record["fitted_on"]["sha256"] == TRAIN_SHA
    assert record["source"]["name"] == "t10k-images-idx3-ubyte.gz"


def test_fitting_on_a_test_split_warns(mnist_dir: Path) -> None:
    result = run_cli("fit", mnist_dir / "t10k-images-idx3-ubyte.gz", "-s", "standardize")
    assert result.exit_code == 0
    assert "Warning: fitting on what looks like a test" in result.stderr
    assert json.loads(result.stdout)["strategy"] == "standardize"


def test_per_channel_standardize_on_a_photograph(
    tmp_path: Path, photo_npy: Path, photo_tiles
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "p.h5"
    record = convert(photo_npy, out, Spec("standardize", scope="channel"))
    as_float = photo_tiles.astype(np.float64)
    mean, std = as_float.mean(axis=(0, 1, 2)), as_float.std(axis=(0, 1, 2))
    np.testing.assert_allclose(record["stats"]["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(record["stats"]["std"], std, rtol=1e-12)
    assert record["channel_axis"] == 2 and len(record["source_low"]) == 3
    with h5py.File(out, "r") as handle:
        data = handle["images"][()]
    low = np.asarray(record["source_low"])
    span = np.asarray(record["source_span"])
    assert np.array_equal(bits(data), bits(float64_then_float32(photo_tiles, low, span)))


def test_channel_axis_one_reads_nchw(tmp_path: Path, photo_tiles) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "nchw.npy"
    np.save(path, np.ascontiguousarray(photo_tiles.transpose(0, 3, 1, 2)))
    record = fit(path, None, Spec("standardize", scope="channel"), layout="nchw")
    expected = photo_tiles.astype(np.float64).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(record["stats"]["mean"], expected, rtol=1e-12)


def test_range_from_data_per_channel(tmp_path: Path, photo_npy: Path, photo_tiles) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.npy"
    convert(photo_npy, out, Spec("range", scope="channel", from_data=True, target_range=(-1, 1)))
    data = np.load(out)
    assert np.array_equal(data.min(axis=(0, 1, 2)), [-1, -1, -1])
    assert np.array_equal(data.max(axis=(0, 1, 2)), [1, 1, 1])


def test_per_image_standardization_is_exact_and_stored(
    tmp_path: Path, sample_npy: Path, sample
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "img.h5"
    record = convert(sample_npy, out, Spec("standardize", scope="image"), chunk_mb=0.3)
    images = sample[0].astype(np.float64)
    mean = images.mean(axis=(1, 2), keepdims=True)
    std = images.std(axis=(1, 2), keepdims=True)
    with h5py.File(out, "r") as handle:
        data = handle["images"][()]
        stored_low = handle["params/source_low"][()]
    assert np.array_equal(bits(data), bits(float64_then_float32(sample[0], mean, std)))
    np.testing.assert_allclose(stored_low, mean.ravel(), rtol=1e-12)
    assert record["source_low"] == {"array": "source_low", "shape": [1000]}


def test_per_pixel_training_params_on_test_set_are_finite(tmp_path: Path, mnist_dir: Path) -> None:
    params = tmp_path / "pixel.json"
    record = fit(
        mnist_dir / "train-images-idx3-ubyte.gz", params, Spec("standardize", scope="pixel")
    )
    assert record["zero_std"]["constant_count"] > 0  # MNIST's corners are always 0
    out = tmp_path / "t.npy"
    convert(mnist_dir / "t10k-images-idx3-ubyte.gz", out, params_from=params)
    assert np.isfinite(np.load(out)).all()


def test_constant_images_and_channels_stay_finite_and_are_reported(tmp_path: Path) -> None:
    data = np.zeros((6, 4, 4, 3), np.uint8)
    data[:, :, :, 1] = 7  # a constant channel
    data[:3, :, :, 0] = np.arange(16, dtype=np.uint8).reshape(4, 4)
    path = tmp_path / "c.npy"
    np.save(path, data)
    result = run_cli(
        "convert", path, "-o", tmp_path / "c.h5", "-s", "standardize", "--scope", "channel"
    )
    assert result.exit_code == 0, result.output
    assert "2 constant channel element(s)" in result.stderr
    with h5py.File(tmp_path / "c.h5", "r") as handle:
        assert np.isfinite(handle["images"][()]).all()
        record = json.loads(handle.attrs["pixscale_params"])
    assert record["zero_std"]["constant"] == [[1], [2]]
    args = [
        "-o",
        tmp_path / "e.h5",
        "-s",
        "standardize",
        "--scope",
        "channel",
        "--zero-std",
        "error",
    ]
    fails_with(["convert", path, *args], "zero spread")
    assert not (tmp_path / "e.h5").exists()
    data[5] = 9  # a constant image
    np.save(path, data)
    record = convert(path, tmp_path / "i.npy", Spec("standardize", scope="image"))
    assert record["zero_std"]["constant_count"] == 1
    per_image = np.load(tmp_path / "i.npy")
    assert np.isfinite(per_image).all() and np.array_equal(per_image[5], np.zeros((4, 4, 3)))


def test_channel_mismatch_is_a_clear_error(
    tmp_path: Path, photo_npy: Path, sample_npy: Path
) -> None:
    params = tmp_path / "rgb.json"
    fit(photo_npy, params, Spec("standardize", scope="channel"))
    with pytest.raises(ParamsError, match="parameters for 3 channels, data has 1"):
        convert(sample_npy, tmp_path / "x.h5", params_from=params)
    assert not (tmp_path / "x.h5").exists()


def test_given_imagenet_constants_in_unit_scale(
    tmp_path: Path, photo_npy: Path, photo_tiles
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "n.npy"
    result = run_cli(
        "convert",
        photo_npy,
        "-o",
        out,
        "-s",
        "standardize",
        "--mean",
        "0.485,0.456,0.406",
        "--std",
        "0.229,0.224,0.225",
    )
    assert result.exit_code == 0, result.output
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    assert np.array_equal(bits(np.load(out)), bits(float64_then_float32(photo_tiles, mean, std)))
    exported = run_cli("export", out, "--to", "torchvision")
    assert "mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)" in exported.output


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("albumentations", "A.Normalize(mean=(0.5,), std=(0.5,), max_pixel_value=255.0)"),
        ("keras", "keras.layers.Normalization(mean=(127.5,), variance=(16256.25,))"),
        ("dali", "fn.crop_mirror_normalize(images, mean=[127.5], std=[127.5])"),
    ],
)
def test_export_of_symmetric_to_each_framework(tmp_path: Path, target: str, expected: str) -> None:
    from conftest import SAMPLE_IMAGES

    out = tmp_path / "s.h5"
    convert(SAMPLE_IMAGES, out, Spec("symmetric"))
    result = run_cli("export", out, "--to", target)
    assert result.exit_code == 0 and expected in result.output


def test_shards_fit_as_one_dataset(tmp_path: Path, photo_tiles) -> None:  # type: ignore[no-untyped-def]
    np.save(tmp_path / "a.npy", photo_tiles[:11])
    np.save(tmp_path / "b.npy", photo_tiles[11:])
    np.save(tmp_path / "all.npy", photo_tiles)
    spec = Spec("standardize", scope="channel")
    sharded = fit([tmp_path / "a.npy", tmp_path / "b.npy"], None, spec)
    whole = fit(tmp_path / "all.npy", None, spec)
    assert sharded["source_low"] == whole["source_low"]
    assert sharded["source_span"] == whole["source_span"]
