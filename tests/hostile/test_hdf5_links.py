"""HDF5 inputs that make the reader open other local files: refused by every command.

HDF5 can store a dataset's bytes in a raw external file, map it from other HDF5 files
(virtual datasets), or link a name to an object in another file. A file received from
elsewhere must not make pixscale read /etc/shadow or the user's other data.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from .conftest import assert_clean_failure, assert_unchanged, cli, snapshot

SHAPE = (10, 8, 8)


def pixels() -> np.ndarray:
    return (np.arange(np.prod(SHAPE)) % 251).astype(np.uint8).reshape(SHAPE)


def other_files(tmp_path: Path) -> tuple[Path, Path]:
    """A raw file and an HDF5 file outside the input folder that must stay unread."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    raw = elsewhere / "secret.bin"
    raw.write_bytes(pixels().tobytes())
    other = elsewhere / "private.h5"
    with h5py.File(other, "w") as handle:
        handle["data"] = pixels()
        handle["labels"] = np.arange(SHAPE[0], dtype=np.int64) % 10
    return raw, other


def make_hostile(tmp_path: Path, kind: str) -> tuple[Path, list[str]]:
    """The hostile file and the extra options needed to reach the link."""
    raw, other = other_files(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    path = folder / "hostile.h5"
    extra: list[str] = []
    with h5py.File(path, "w") as handle:
        if kind == "external storage":
            handle.create_dataset(
                "images", shape=SHAPE, dtype="u1", external=[(str(raw), 0, raw.stat().st_size)]
            )
        elif kind == "virtual dataset":
            layout = h5py.VirtualLayout(SHAPE, "u1")
            layout[:] = h5py.VirtualSource(str(other), "data", shape=SHAPE)
            handle.create_virtual_dataset("images", layout)
        elif kind == "external link via --key":
            handle["images"] = h5py.ExternalLink(str(other), "data")
            extra = ["--key", "images"]
        elif kind == "labels external link":
            handle["images"] = pixels()
            handle["labels"] = h5py.ExternalLink(str(other), "labels")
        else:
            raise AssertionError(kind)
    return path, extra


def converted_output(tmp_path: Path) -> Path:
    """A genuine pixscale output of the same shape, for verify --source / invert --verify."""
    source = tmp_path / "genuine.npy"
    np.save(source, pixels())
    out = tmp_path / "converted.npy"
    result = cli(["convert", source, "-o", out, "-q"])
    assert result.code == 0, result.describe()
    return out


REFUSED = "{}; refusing to read outside the input"
KINDS = ["external storage", "virtual dataset", "external link via --key", "labels external link"]
#: What the error says of each kind, after the file's name (``<tmp>``: the test's folder).
REASONS = {
    "external storage": "dataset 'images' stores its data in another file (external storage)",
    "virtual dataset": "dataset 'images' is a virtual dataset (its data is mapped from other "
    "datasets or files)",
    "external link via --key": "dataset 'images' is an external link to "
    "<tmp>/elsewhere/private.h5:data",
    "labels external link": "labels 'labels' is an external link to "
    "<tmp>/elsewhere/private.h5:labels",
}
#: verify and invert and fit have no --key: the link that only --key reaches does not apply.
NO_KEY_KINDS = [k for k in KINDS if k != "external link via --key"]


@pytest.mark.parametrize("kind", KINDS)
def test_convert_refuses(tmp_path: Path, kind: str) -> None:
    path, extra = make_hostile(tmp_path, kind)
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    result = cli(["convert", path, *extra, "-o", out / "x.h5"])
    assert_clean_failure(result, names=[f"{path}: "], reasons=[REFUSED.format(REASONS[kind])])
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("kind", KINDS)
def test_info_refuses(tmp_path: Path, kind: str) -> None:
    path, extra = make_hostile(tmp_path, kind)
    result = cli(["info", path, *extra])
    assert_clean_failure(result, names=[f"{path}: "], reasons=[REFUSED.format(REASONS[kind])])


@pytest.mark.parametrize("kind", NO_KEY_KINDS)
def test_fit_refuses(tmp_path: Path, kind: str) -> None:
    path, _ = make_hostile(tmp_path, kind)
    before = snapshot(tmp_path)
    result = cli(["fit", path, "-s", "standardize", "-o", tmp_path / "p.json"])
    assert_clean_failure(result, names=[f"{path}: "], reasons=[REFUSED.format(REASONS[kind])])
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("kind", NO_KEY_KINDS)
def test_verify_source_refuses(tmp_path: Path, kind: str) -> None:
    converted = converted_output(tmp_path)
    path, _ = make_hostile(tmp_path, kind)
    result = cli(["verify", converted, "--source", path])
    assert_clean_failure(result, names=[f"{path}: "], reasons=[REFUSED.format(REASONS[kind])])


@pytest.mark.parametrize("kind", NO_KEY_KINDS)
def test_invert_verify_refuses(tmp_path: Path, kind: str) -> None:
    converted = converted_output(tmp_path)
    path, _ = make_hostile(tmp_path, kind)
    before = snapshot(tmp_path)
    result = cli(["invert", converted, "-o", tmp_path / "back.npy", "--verify", path])
    assert_clean_failure(result, names=[f"{path}: "], reasons=[REFUSED.format(REASONS[kind])])
    assert_unchanged(tmp_path, before)


def test_control_plain_hdf5_with_the_same_pixels_converts(tmp_path: Path) -> None:
    """The same layout without links converts: the refusals above are about the links."""
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as handle:
        handle["images"] = pixels()
        handle["labels"] = np.arange(SHAPE[0], dtype=np.int64) % 10
    result = cli(["convert", path, "-o", tmp_path / "x.npy", "-q"])
    assert result.code == 0, result.describe()
    assert np.load(tmp_path / "x.npy").shape == SHAPE
