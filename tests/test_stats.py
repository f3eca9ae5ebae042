"""Exact integer statistics equal numpy's float64 on the whole array."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pixscale.core.stats import PixelSums, image_stats
from pixscale.engine.scan import dataset_sums
from pixscale.errors import InputError
from pixscale.sources import open_source


def sums_of(data: np.ndarray, rows: int) -> PixelSums:
    sums = PixelSums.empty(data.shape[1:])
    for start in range(0, len(data), rows):
        sums.add(data[start : start + rows])
    return sums


def write_idx_gz(path: Path, images: np.ndarray) -> None:
    header = bytes([0, 0, 8, images.ndim]) + b"".join(n.to_bytes(4, "big") for n in images.shape)
    path.write_bytes(gzip.compress(header + images.tobytes(), mtime=0))


def test_mnist_global_statistics_equal_numpy_float64(mnist_train) -> None:  # type: ignore[no-untyped-def]
    images = mnist_train[0]
    stats = sums_of(images, 7000).reduce("global", None)
    as_float = images.astype(np.float64)
    assert stats.count == images.size
    assert abs(stats.mean - as_float.mean()) <= 1e-12 * as_float.mean()
    assert abs(stats.std - as_float.std()) <= 1e-12 * as_float.std()
    assert round(float(stats.mean) / 255, 4) == 0.1307
    assert round(float(stats.std) / 255, 4) == 0.3081


def test_per_channel_and_per_pixel_statistics_on_a_photograph(photo_tiles: np.ndarray) -> None:
    sums = sums_of(photo_tiles, 13)
    channel = sums.reduce("channel", 2)
    as_float = photo_tiles.astype(np.float64)
    np.testing.assert_allclose(channel.mean, as_float.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(channel.std, as_float.std(axis=(0, 1, 2)), rtol=1e-12)
    assert channel.minimum.tolist() == photo_tiles.min(axis=(0, 1, 2)).tolist()
    pixel = sums.reduce("pixel", 2)
    np.testing.assert_allclose(pixel.mean, as_float.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(pixel.std, as_float.std(axis=0), rtol=1e-12, atol=1e-12)


def test_merging_shards_equals_one_pass(photo_tiles: np.ndarray) -> None:
    whole = sums_of(photo_tiles, 1000).reduce("channel", 2)
    merged = sums_of(photo_tiles[:20], 7).merge(sums_of(photo_tiles[20:], 7)).reduce("channel", 2)
    assert np.array_equal(whole.mean, merged.mean) and np.array_equal(whole.std, merged.std)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 6), st.integers(1, 5))))
def test_statistics_equal_numpy_for_random_arrays(data: np.ndarray) -> None:
    stats = sums_of(data, 4).reduce("global", None)
    as_float = data.astype(np.float64)
    np.testing.assert_allclose(stats.mean, as_float.mean(), rtol=1e-12)
    np.testing.assert_allclose(stats.std, as_float.std(), rtol=1e-9, atol=1e-12)
    per_image = image_stats(data)
    np.testing.assert_allclose(per_image.mean, as_float.mean(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(per_image.std, as_float.std(axis=(1, 2)), rtol=1e-9, atol=1e-12)


def exact_sums(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    wide = data.astype(np.uint64)
    return wide.sum(axis=0), (wide * wide).sum(axis=0)


def test_integer_sums_are_exact_in_the_worst_case_and_on_mnist(mnist_train) -> None:  # type: ignore[no-untyped-def]
    # All 255 makes every float32 partial sum as large as it gets (blocks of 256 images).
    brightest = np.full((1000, 3, 5), 255, np.uint8)
    sums = sums_of(brightest, 1000)
    assert sums.s1.tolist() == [[255 * 1000] * 5] * 3
    assert sums.s2.tolist() == [[255 * 255 * 1000] * 5] * 3
    images = mnist_train[0]
    sums = sums_of(images, 7000)
    s1, s2 = exact_sums(images)
    assert np.array_equal(sums.s1, s1) and np.array_equal(sums.s2, s2)
    assert np.array_equal(sums.minimum, images.min(axis=0))
    assert np.array_equal(sums.maximum, images.max(axis=0))


@pytest.mark.parametrize("count", [1, 2, 4999])
def test_dataset_pass_gives_the_same_sums_from_any_reader(
    tmp_path: Path, mnist_train: tuple[np.ndarray, np.ndarray], count: int
) -> None:
    """Random-access sources (each thread reads its own range) and streamed ones (each
    chunk split between the threads) give the sums of one sequential pass, exactly."""
    images = mnist_train[0][:count]
    np.save(tmp_path / "x.npy", images)
    write_idx_gz(tmp_path / "x-idx3-ubyte.gz", images)
    reported: list[int] = []
    ranged = open_source(tmp_path / "x.npy")
    streamed = open_source(tmp_path / "x-idx3-ubyte.gz")
    assert ranged.random_access and not streamed.random_access
    want = sums_of(images, 1000)
    for source in (ranged, streamed):
        got = dataset_sums(source, 0.1, lambda n, total, nbytes: reported.append(n))
        assert got.count == count
        for name in ("s1", "s2", "minimum", "maximum"):
            assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert sum(reported) == 2 * count


def test_an_error_while_reading_one_range_is_raised_as_it_is(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from PIL import Image

    folder = tmp_path / "digits"
    folder.mkdir()
    for index in range(40):
        Image.fromarray(np.full((8, 8), index, np.uint8)).save(folder / f"{index:02d}.png")
    source = open_source(folder)
    (folder / "03.png").write_bytes(b"not a png any more")
    with pytest.raises(InputError, match="03.png"):
        dataset_sums(source, 0.0001)
