"""Image folders that are not 8-bit greyscale or RGB: refused, never silently converted.

16-bit, 32-bit integer and float images lose their values in a conversion to 8 bits (Pillow
clips or wraps them), and RGBA loses its alpha: pixscale must say so instead of guessing. A
folder mixing greyscale and colour images needs ``--mode`` to say which one is meant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import (
    assert_clean_failure,
    assert_unchanged,
    cli,
    snapshot,
)

Image = pytest.importorskip("PIL.Image")

SIZE = 8


def grey(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)


def save(folder: Path, name: str, array: np.ndarray, mode: str | None = None) -> Path:
    path = folder / name
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(path)
    return path


def make_folder(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A folder of two images: one ordinary 8-bit greyscale, one of the hostile kind.

    Returns the folder and the name of the hostile image.
    """
    folder = tmp_path / "pictures"
    folder.mkdir()
    save(folder, "a.png", grey(0))
    wide = grey(1).astype(np.uint32) * 257
    if case == "16-bit PNG (I;16)":
        path = save(folder, "b.png", wide.astype(np.uint16))
    elif case == "32-bit int TIFF (I)":
        path = save(folder, "b.tif", (wide * 65537).astype(np.int32))
    elif case == "float TIFF (F)":
        path = save(folder, "b.tif", wide.astype(np.float32) / 65535)
    elif case == "RGBA PNG":
        rgba = np.dstack([grey(1), grey(2), grey(3), grey(4)])
        path = save(folder, "b.png", rgba, "RGBA")
    elif case == "mixed L and RGB":
        path = save(folder, "b.png", np.dstack([grey(1), grey(2), grey(3)]), "RGB")
    else:
        raise AssertionError(case)
    expected = case.split(" (")[-1].rstrip(")") if "(" in case else None
    if expected:
        with Image.open(path) as image:
            assert image.mode == expected, f"Pillow wrote {image.mode}, not {expected}"
    return folder, path.name


ONLY_8_BIT = "only 8-bit images and 16-bit greyscale images are read"
#: What the error says of the pixels, without --mode.
REASONS = {
    "16-bit PNG (I;16)": "mixes 16-bit (b.png) and 8-bit (a.png) images",
    "32-bit int TIFF (I)": f"b.tif: 32-bit integer image (mode I): {ONLY_8_BIT}",
    "float TIFF (F)": f"b.tif: 32-bit float image (mode F): {ONLY_8_BIT}",
    "RGBA PNG": "b.png: has an alpha channel (mode RGBA); use --mode RGB to drop it",
    "mixed L and RGB": "mixes greyscale (a.png) and colour (b.png) images; choose one with",
}
#: What the error says with --mode, where that differs.
WITH_MODE = {
    "16-bit PNG (I;16)": "b.png: 16-bit greyscale images are read as they are; --mode would "
    "convert them to 8 bits",
}
WIDE = ["16-bit PNG (I;16)", "32-bit int TIFF (I)", "float TIFF (F)"]


@pytest.mark.parametrize("case", sorted(REASONS))
@pytest.mark.parametrize("command", ["convert", "info"])
def test_refused_without_mode(tmp_path: Path, case: str, command: str) -> None:
    folder, offender = make_folder(tmp_path, case)
    before = snapshot(tmp_path)
    args = (
        ["convert", folder, "-o", tmp_path / "x.h5"] if command == "convert" else ["info", folder]
    )
    result = cli(args)
    assert_clean_failure(result, names=[offender, folder.name], reasons=[REASONS[case]])
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("case", WIDE)
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_wide_images_refused_even_with_mode(tmp_path: Path, case: str, mode: str) -> None:
    """--mode says how to arrange 8-bit channels; it cannot make 16 or 32 bits fit in 8."""
    folder, offender = make_folder(tmp_path, case)
    before = snapshot(tmp_path)
    result = cli(["convert", folder, "--mode", mode, "-o", tmp_path / "x.npy"])
    reason = WITH_MODE.get(case, REASONS[case])
    assert_clean_failure(result, names=[offender, folder.name], reasons=[reason])
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_mixed_folder_with_mode_converts(tmp_path: Path, mode: str) -> None:
    """With --mode the user has said what to do (docs/inputs.md): every image is brought to
    that mode as Pillow's ``convert`` does, and the folder converts."""
    folder, offender = make_folder(tmp_path, "mixed L and RGB")
    out = tmp_path / "x.npy"
    result = cli(["convert", folder, "--mode", mode, "-o", out, "-q"])
    assert result.code == 0 and result.exception is None and not result.note, result.describe()
    assert result.stderr == "", result.describe()
    expected = []
    for name in sorted(["a.png", offender]):
        with Image.open(folder / name) as image:
            expected.append(np.asarray(image.convert(mode)))
    assert np.array_equal(np.load(out), (np.stack(expected) / 255.0).astype(np.float32))


def test_control_plain_greyscale_folder_converts(tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    save(folder, "a.png", grey(0))
    save(folder, "b.png", grey(1))
    result = cli(["convert", folder, "-o", tmp_path / "x.npy", "-q"])
    assert result.code == 0, result.describe()
    values = np.load(tmp_path / "x.npy")
    assert values.shape == (2, SIZE, SIZE)
    assert np.array_equal(values[1], (grey(1) / 255.0).astype(np.float32))
