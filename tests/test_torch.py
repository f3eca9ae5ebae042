"""pixscale.torch.ImageDataset: (tensor, label) pairs equal to pixscale.open's values, in the
asked layout, and the same through DataLoader workers (fork and spawn)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import pixscale

torch = pytest.importorskip("torch")  # the [torch] extra; CI installs it, so this runs there

from torch.utils.data import DataLoader  # noqa: E402

from pixscale.torch import NO_LABEL, ImageDataset  # noqa: E402

KINDS = {
    "h5": ("out.h5", {}),
    "h5-chunked": ("out.h5", {"compression": "lzf"}),
    "npy": ("out.npy", {}),
}


@pytest.fixture(params=sorted(KINDS))
def output(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sample_npy: Path,
    sample: tuple[np.ndarray, np.ndarray],
) -> Path:
    name, options = KINDS[request.param]
    labels = tmp_path / "labels.npy"
    np.save(labels, sample[1])
    target = tmp_path / name
    pixscale.convert(
        sample_npy,
        pixscale.Output(target, **options),
        pixscale.Spec("standardize"),
        labels=labels,
    )
    return target


def stored(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with pixscale.open(path) as data:
        assert data.labels is not None
        return np.asarray(data[:]), data.labels


def test_items_are_the_stored_values_and_labels(output: Path) -> None:
    values, labels = stored(output)
    ds = ImageDataset(output)
    assert len(ds) == len(values) == 1000
    image, label = ds[3]
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
    assert image.shape == (28, 28)
    assert np.array_equal(image.numpy(), values[3]) and label == int(labels[3])
    assert np.array_equal(ds[-1][0].numpy(), values[-1])
    with pytest.raises(IndexError):
        ds[1000]


def test_nchw_layout_adds_the_channel_axis(output: Path) -> None:
    values, _ = stored(output)
    ds = ImageDataset(output, layout="nchw")
    assert ds[0][0].shape == (1, 28, 28)
    assert np.array_equal(ds[7][0].numpy()[0], values[7])


def test_colour_nhwc_becomes_nchw(tmp_path: Path, photo_npy: Path) -> None:
    pixscale.convert(photo_npy, tmp_path / "p.h5", pixscale.Spec("standardize", "channel"))
    values, _ = (pixscale.open(tmp_path / "p.h5")[:], None)
    ds = ImageDataset(tmp_path / "p.h5", layout="nchw")
    image, label = ds[2]
    assert image.shape == (3, 64, 64) and label == NO_LABEL
    assert np.array_equal(image.numpy(), values[2].transpose(2, 0, 1))
    assert ImageDataset(tmp_path / "p.h5")[2][0].shape == (64, 64, 3)


def check_loader(path: Path, context: str) -> None:
    values, labels = stored(path)
    order = np.random.default_rng(0).permutation(len(values)).tolist()
    loader = DataLoader(
        ImageDataset(path, layout="nchw"),
        batch_size=256,
        sampler=order,
        num_workers=2,
        multiprocessing_context=context,
    )
    batches = list(loader)
    images = torch.cat([batch for batch, _ in batches]).numpy()
    got_labels = torch.cat([label for _, label in batches]).numpy()
    assert images.shape == (1000, 1, 28, 28)
    assert np.array_equal(images[:, 0], values[order])
    assert np.array_equal(got_labels, labels[order])


def test_forked_dataloader_workers_read_the_same_values(output: Path) -> None:
    check_loader(output, "fork")


def test_spawned_dataloader_workers_reopen_the_file(tmp_path: Path, sample_npy: Path) -> None:
    # Spawned workers get a pickled dataset: the path, never the parent's open handle.
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(1000) % 10)
    pixscale.convert(sample_npy, tmp_path / "s.h5", labels=labels)
    check_loader(tmp_path / "s.h5", "spawn")


def test_batches_with_repeats_and_any_order(output: Path) -> None:
    values, labels = stored(output)
    ds = ImageDataset(output)
    picks = [5, 3, 5, 999, 0, 3]
    items = ds.__getitems__(picks)
    assert [label for _, label in items] == [int(labels[i]) for i in picks]
    for (image, _), i in zip(items, picks, strict=True):
        assert np.array_equal(image.numpy(), values[i])


def test_transforms_and_bad_options(output: Path) -> None:
    ds = ImageDataset(output, transform=lambda t: t * 2, target_transform=lambda y: y + 100)
    image, label = ds[0]
    assert np.array_equal(image.numpy(), stored(output)[0][0] * 2) and label >= 100
    with pytest.raises(pixscale.ParamsError, match="layout"):
        ImageDataset(output, layout="chw")
    with pytest.raises(pixscale.ParamsError, match="dtype"):
        ImageDataset(output, dtype="float64")


def test_missing_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "pixscale.torch")
    with pytest.raises(ImportError, match=r"pip install 'pixscale\[torch\]'"):
        importlib.import_module("pixscale.torch")
    monkeypatch.undo()
    importlib.import_module("pixscale.torch")
