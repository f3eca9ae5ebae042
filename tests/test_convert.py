"""End-to-end conversion through the library API on real data."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import SAMPLE_IMAGES
from pixscale.core.spec import Spec
from pixscale.engine.local import convert
from pixscale.errors import OutputError
from pixscale.store.output import Output


def bits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float32).view(np.uint32)


def test_full_mnist_to_hdf5_is_exact_with_labels_and_record(
    tmp_path: Path, mnist_dir: Path, mnist_train
) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_train
    out = tmp_path / "train.h5"
    convert(mnist_dir / "train-images-idx3-ubyte.gz", out)
    with h5py.File(out, "r") as handle:
        data = handle["images"][()]
        assert data.dtype == np.float32 and data.shape == (60000, 28, 28)
        assert np.array_equal(bits(data), bits(np.float32(images) / np.float32(255)))
        assert np.array_equal(handle["labels"][()], labels)
        assert handle.attrs["strategy"] == "unit"
        assert handle.attrs["scale"] == 1 / 255 and handle.attrs["offset"] == 0
        record = json.loads(handle.attrs["pixscale_params"])
    assert record["format"] == "pixscale.params/1"
    assert record["source"]["sha256"] == (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    )
    assert record["source"]["shape"] == [60000, 28, 28]
    assert record["output"]["shape"] == [60000, 28, 28] and record["output"]["labels"] == "labels"
    assert record["target_range"] == [0.0, 1.0]


def test_full_mnist_to_npy_symmetric(tmp_path: Path, mnist_dir: Path, mnist_train) -> None:  # type: ignore[no-untyped-def]
    images, labels = mnist_train
    out = tmp_path / "train.npy"
    convert(mnist_dir / "train-images-idx3-ubyte.gz", out, Spec("symmetric"))
    data = np.load(out)
    expected = (images.astype(np.float64) * 2 / 255 - 1).astype(np.float32)
    assert data.shape == (60000, 28, 28) and np.array_equal(bits(data), bits(expected))
    record = json.loads((tmp_path / "train.npy.json").read_text())
    assert record["strategy"] == "symmetric" and record["target_range"] == [-1.0, 1.0]
    assert np.array_equal(np.load(tmp_path / record["output"]["labels"]), labels)


def test_range_from_npy_to_hdf5(tmp_path: Path, sample_npy: Path, sample) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "y.h5"
    record = convert(sample_npy, out, Spec("range", source_range=(0, 255), target_range=(-2, 3)))
    with h5py.File(out, "r") as handle:
        data = handle["images"][()]
        assert "labels" not in handle
    expected = ((sample[0].astype(np.float64) - 0) * 5 / 255 + -2).astype(np.float32)
    assert np.array_equal(bits(data), bits(expected))
    assert record["source_low"] == 0 and record["source_span"] == 255
    assert record["target_range"] == [-2.0, 3.0]


def test_none_is_a_plain_cast(tmp_path: Path, sample_npy: Path, sample) -> None:  # type: ignore[no-untyped-def]
    convert(sample_npy, tmp_path / "y.npy", Spec("none"))
    assert np.array_equal(np.load(tmp_path / "y.npy"), sample[0].astype(np.float32))


@pytest.mark.parametrize("name", ["a.h5", "a.npy"])
def test_same_input_gives_byte_identical_files(tmp_path: Path, name: str) -> None:
    first, second = tmp_path / "1", tmp_path / "2"
    first.mkdir()
    second.mkdir()
    convert(SAMPLE_IMAGES, first / name)
    convert(SAMPLE_IMAGES, second / name, chunk_mb=0.1)
    for path in first.iterdir():
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name


def test_existing_output_is_refused_and_untouched(tmp_path: Path) -> None:
    out = tmp_path / "y.npy"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists. Use --overwrite"):
        convert(SAMPLE_IMAGES, out)
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.npy"]
    convert(SAMPLE_IMAGES, Output(out, overwrite=True))
    assert np.load(out).shape == (1000, 28, 28)


def test_chunk_size_does_not_change_the_output(tmp_path: Path) -> None:
    convert(SAMPLE_IMAGES, tmp_path / "a.npy", chunk_mb=0.01)
    convert(SAMPLE_IMAGES, tmp_path / "b.npy", chunk_mb=64)
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
