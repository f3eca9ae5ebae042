"""--resize: each fit on real digits (the bundled MNIST slice), JPEG reduced-size decoding,
and the option's parsing and limits."""

from __future__ import annotations

import io

import numpy as np
import pytest

from pixscale.errors import ParamsError
from pixscale.sources.resize import Resize, apply, draft_size, parse_size, prepare

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def digits(sample: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return sample[0][:8]


def test_an_image_of_the_target_size_is_unchanged_by_every_fit(digits: np.ndarray) -> None:
    for fit in ("stretch", "crop", "pad"):
        got = np.asarray(apply(Image.fromarray(digits[0]), Resize(28, 28, fit)))
        assert np.array_equal(got, digits[0])


def test_crop_keeps_the_centre_and_pad_adds_black_borders(digits: np.ndarray) -> None:
    pair = np.concatenate([digits[0], digits[1]], axis=1)  # 28 × 56: two digits side by side
    cropped = np.asarray(apply(Image.fromarray(pair), Resize(28, 28, "crop")))
    assert np.array_equal(cropped, pair[:, 14:42])  # the same scale: the centre columns
    padded = np.asarray(apply(Image.fromarray(digits[2]), Resize(56, 28, "pad")))
    assert padded.shape == (28, 56)
    assert not padded[:, :14].any() and not padded[:, 42:].any()
    assert np.array_equal(padded[:, 14:42], digits[2])


def test_stretch_gives_the_size_and_nearest_repeats_pixels(digits: np.ndarray) -> None:
    got = np.asarray(apply(Image.fromarray(digits[3]), Resize(56, 28, "stretch", "nearest")))
    assert got.shape == (28, 56)
    assert np.array_equal(got[:, ::2], digits[3])
    assert np.array_equal(got[:, 1::2], digits[3])


def test_downscaling_filters_keep_the_mean_brightness(digits: np.ndarray) -> None:
    for name in ("box", "bilinear", "hamming", "bicubic", "lanczos"):
        small = np.asarray(apply(Image.fromarray(digits[4]), Resize(14, 14, "stretch", name)))
        assert small.shape == (14, 14)
        assert abs(float(small.mean()) - float(digits[4].mean())) < 4.0, name


def test_jpeg_draft_decodes_smaller_and_stays_close(digits: np.ndarray) -> None:
    tiles = np.tile(digits.reshape(2, 4, 28, 28).transpose(0, 2, 1, 3).reshape(56, 112), (8, 4))
    big = Image.fromarray(tiles).resize((448, 448), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=95)
    resize = Resize(64, 64, "crop")
    fast = Image.open(io.BytesIO(buffer.getvalue()))
    prepare(fast, resize)
    fast.load()
    assert fast.size == (112, 112)  # 1/4 of 448: the smallest DCT scale that still covers 64
    full = Image.open(io.BytesIO(buffer.getvalue()))
    full.load()
    assert full.size == (448, 448)
    a = np.asarray(apply(fast, resize), np.int16)
    b = np.asarray(apply(full, resize), np.int16)
    assert a.shape == b.shape == (64, 64)
    assert float(np.abs(a - b).mean()) < 3.0
    unreduced = Image.open(io.BytesIO(buffer.getvalue()))
    prepare(unreduced, Resize(64, 64, "crop", draft=False))
    unreduced.load()
    assert unreduced.size == (448, 448)


def test_draft_size_covers_what_each_fit_uses() -> None:
    assert draft_size(Resize(128, 128, "stretch"), 1024, 512) == (128, 128)
    assert draft_size(Resize(128, 128, "crop"), 1024, 512) == (256, 128)
    assert draft_size(Resize(128, 128, "pad"), 1024, 512) == (128, 64)


def test_sizes_are_parsed_and_limited() -> None:
    assert parse_size("128x96") == (128, 96)
    assert parse_size(" 64 X 32 ") == (64, 32)
    for bad in ("128", "x128", "128x", "-1x4", "12.5x3"):
        with pytest.raises(ParamsError, match="WIDTHxHEIGHT"):
            parse_size(bad)
    with pytest.raises(ParamsError, match="1..32768"):
        Resize(0, 10)
    with pytest.raises(ParamsError, match="pixels per image"):
        Resize(32768, 32768)
    with pytest.raises(ParamsError, match="unknown fit"):
        Resize(8, 8, "squash")
    with pytest.raises(ParamsError, match="unknown filter"):
        Resize(8, 8, "crop", "sinc")
    assert Resize(8, 4, "pad", "box").record() == {
        "size": [8, 4],
        "fit": "pad",
        "filter": "box",
        "jpeg_draft": True,
    }
