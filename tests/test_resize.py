"""--resize: each fit on real digits (the bundled MNIST slice), JPEG reduced-size decoding,
and the option's parsing and limits."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import pixscale
from cli_helpers import run_cli
from image_datasets import assert_clean_error, cli, encode, write_zip
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


# End to end: folders and archives of digits of mixed sizes, through the CLI.


def mixed_sizes(digits: np.ndarray) -> list[np.ndarray]:
    """The digits, every other one widened to 56×28 (two digits side by side)."""
    out = []
    for i, digit in enumerate(digits):
        out.append(
            np.concatenate([digit, digits[(i + 1) % len(digits)]], axis=1) if i % 2 else digit
        )
    return out


def expected(images: list[np.ndarray], resize: Resize) -> np.ndarray:
    rows = [np.asarray(apply(Image.fromarray(image), resize)) for image in images]
    return np.stack(rows).astype(np.float32) / np.float32(255)


def write_folder(root: Path, images: list[np.ndarray], labels: np.ndarray) -> Path:
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    return root


@pytest.mark.parametrize("fit", ["stretch", "crop", "pad"])
def test_a_folder_of_mixed_sizes_converts_with_resize_and_inverts_to_the_resized_pixels(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray], fit: str
) -> None:
    images, labels = mixed_sizes(list(sample[0][:12])), np.sort(sample[1][:12])
    folder = write_folder(tmp_path / "digits", images, labels)
    code, stderr = cli("convert", folder, "-o", tmp_path / "plain.h5")
    assert_clean_error(code, stderr, "no silent resize")
    assert not (tmp_path / "plain.h5").exists()

    out = tmp_path / "out.h5"
    code, stderr = cli("convert", folder, "-o", out, "--resize", "24x20", "--fit", fit)
    assert code == 0, stderr
    order = sorted(range(12), key=lambda i: (labels[i], i))  # class folders, then names
    want = expected([images[i] for i in order], Resize(24, 20, fit))
    with pixscale.open(out) as data:
        assert data.shape == (12, 20, 24)
        assert np.array_equal(data[:].view(np.uint32), want.view(np.uint32))
        assert data.record["source"]["resize"] == Resize(24, 20, fit).record()
    code, stderr = cli("invert", out, "-o", tmp_path / "back.npy", "--verify", folder)
    assert code == 0, stderr
    assert "resized when read (24x20, " in stderr
    back = np.load(tmp_path / "back.npy")
    assert np.array_equal(back, np.round(want * 255).astype(np.uint8))
    code, stderr = cli("verify", out, "--source", folder)
    assert code == 0, stderr


def test_resize_reads_archives_and_refuses_arrays(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    images = mixed_sizes(list(sample[0][:6]))
    members = [(f"digits/{i:03d}.png", encode(image)) for i, image in enumerate(images)]
    archive = write_zip(tmp_path / "digits.zip", members)
    out = tmp_path / "zip.npy"
    code, stderr = cli("convert", archive, "-o", out, "--resize", "16x16", "--filter", "box")
    assert code == 0, stderr
    want = expected(images, Resize(16, 16, "stretch", "box"))
    assert np.array_equal(np.load(out).view(np.uint32), want.view(np.uint32))
    np.save(tmp_path / "x.npy", sample[0][:4])
    code, stderr = cli("convert", tmp_path / "x.npy", "-o", tmp_path / "y.h5", "--resize", "8x8")
    assert_clean_error(code, stderr, "x.npy", "--resize applies to images")
    for bad in (["--fit", "crop"], ["--resize", "0x8"], ["--resize", "8"]):
        result = run_cli("convert", archive, "-o", "z.h5", *bad)
        assert result.exit_code == 2 and "Traceback" not in result.output


def test_jpeg_draft_is_recorded_and_can_be_turned_off(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    big = Image.fromarray(np.tile(sample[0][0], (8, 8))).convert("RGB")  # 224 × 224
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        big.rotate(90 * i).save(folder / f"{i}.jpg", quality=95)
    outs = {}
    for flag in ("--jpeg-draft", "--no-jpeg-draft"):
        outs[flag] = tmp_path / f"{flag}.h5"
        code, stderr = cli("convert", folder, "-o", outs[flag], "--resize", "28x28", flag)
        assert code == 0, stderr
    with (
        pixscale.open(outs["--jpeg-draft"]) as fast,
        pixscale.open(outs["--no-jpeg-draft"]) as full,
    ):
        assert fast.record["source"]["resize"]["jpeg_draft"] is True
        assert full.record["source"]["resize"]["jpeg_draft"] is False
        assert fast.shape == full.shape == (3, 28, 28, 3)
        difference = np.abs(fast[:].astype(np.float64) - full[:].astype(np.float64))
        # 1/8-scale DCT decoding of sharp digits against a full decode and a bilinear
        # reduction: close (a few levels of 255 on average), not identical
        assert 0 < difference.mean() < 0.06
