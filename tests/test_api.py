"""The Python API: Scaler, open, and the functions taking str or PathLike, equal to the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

import pixscale
from cli_helpers import run_cli
from conftest import ROOT, SAMPLE_IMAGES
from pixscale.errors import InputError, ParamsError


def cli(*args: str) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output


def stored_images(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path)
    with h5py.File(path) as handle:
        return handle["images"][()]


@pytest.mark.parametrize(
    ("strategy", "scope"),
    [("unit", "global"), ("standardize", "channel"), ("standardize", "pixel"), ("range", "image")],
)
def test_scaler_transform_is_bit_identical_to_convert(
    tmp_path: Path, photo_npy: Path, photo_tiles: np.ndarray, strategy: str, scope: str
) -> None:
    options = {"from_data": True} if strategy == "range" else {}
    scaler = pixscale.Scaler(strategy, scope=scope, **options)
    y = scaler.fit_transform(photo_tiles) if scope != "image" else scaler.transform(photo_tiles)
    flags = ["--from-data"] if strategy == "range" else []
    out = tmp_path / "cli.npy"
    cli("convert", str(photo_npy), "-o", str(out), "-s", strategy, "--scope", scope, *flags)
    assert y.dtype == np.float32
    assert np.array_equal(y.view(np.uint32), np.load(out).view(np.uint32))
    assert np.array_equal(scaler.inverse_transform(y), photo_tiles)


def test_partial_fit_equals_fit_on_the_whole(photo_tiles: np.ndarray) -> None:
    whole = pixscale.Scaler("standardize", scope="channel").fit(photo_tiles)
    parts = pixscale.Scaler("standardize", scope="channel")
    for chunk in np.array_split(photo_tiles, 7):
        parts.partial_fit(chunk)
    assert parts.to_record() == whole.to_record()
    assert whole.params_ is not None and whole.params_.source_low.shape == (3,)


def test_fit_on_a_path_saves_what_pixscale_fit_writes(tmp_path: Path) -> None:
    saved = tmp_path / "api.json"
    pixscale.Scaler("standardize").fit(str(SAMPLE_IMAGES)).save(saved)
    cli("fit", str(SAMPLE_IMAGES), "-s", "standardize", "-o", str(tmp_path / "cli.json"))
    assert saved.read_text() == (tmp_path / "cli.json").read_text()


def test_load_from_params_or_output_and_convert_with_it(tmp_path: Path) -> None:
    params = tmp_path / "p.json"
    cli("fit", str(SAMPLE_IMAGES), "-s", "standardize", "-o", str(params))
    scaler = pixscale.Scaler.load(str(params))
    record = pixscale.convert(str(SAMPLE_IMAGES), str(tmp_path / "api.h5"), scaler=scaler)
    cli("convert", str(SAMPLE_IMAGES), "-o", str(tmp_path / "cli.h5"), "--params-from", str(params))
    assert np.array_equal(stored_images(tmp_path / "api.h5"), stored_images(tmp_path / "cli.h5"))
    assert record["fitted_on"]["sha256"] == json.loads(params.read_text())["fitted_on"]["sha256"]
    again = pixscale.Scaler.load(tmp_path / "api.h5")
    assert again.to_record()["source_low"] == scaler.to_record()["source_low"]


def test_transform_refuses_what_is_not_uint8(photo_tiles: np.ndarray) -> None:
    scaler = pixscale.Scaler("unit")
    with pytest.raises(InputError, match="uint8"):
        scaler.transform(photo_tiles.astype(np.float32))
    with pytest.raises(ParamsError, match="not fitted"):
        pixscale.Scaler("standardize").transform(photo_tiles)


def test_reused_parameters_must_fit_the_data(photo_tiles: np.ndarray) -> None:
    scaler = pixscale.Scaler("standardize", scope="channel").fit(photo_tiles)
    with pytest.raises(ParamsError, match="3 channels, data has 1"):
        scaler.transform(photo_tiles[..., 0])


def test_open_reads_any_output_lazily(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    for suffix in (".h5", ".npy"):
        out = tmp_path / f"o{suffix}"
        pixscale.convert(str(SAMPLE_IMAGES), out, pixscale.Spec("standardize"))
        with pixscale.open(out) as data:
            assert len(data) == 1000 and data.shape == (1000, 28, 28)
            batch = data[100:200]
            assert np.array_equal(batch, stored_images(out)[100:200])
            assert np.array_equal(data.labels, sample[1])
            assert data.record["strategy"] == "standardize"
        scaler = pixscale.Scaler.load(out)
        assert np.array_equal(scaler.inverse_transform(batch), sample[0][100:200])


def test_params_from_with_strategy_options_is_refused_in_the_library(tmp_path: Path) -> None:
    params = tmp_path / "p.json"
    pixscale.fit(SAMPLE_IMAGES, params, pixscale.Spec("standardize"))
    with pytest.raises(ParamsError, match="replaces the strategy options"):
        pixscale.convert(
            SAMPLE_IMAGES, tmp_path / "x.h5", pixscale.Spec("symmetric"), params_from=params
        )


def test_test_split_warning_reaches_python_users(tmp_path: Path) -> None:
    test_like = tmp_path / "t10k-images.npy"
    np.save(test_like, np.arange(64, dtype=np.uint8).reshape(4, 4, 4))
    with pytest.warns(pixscale.PixscaleWarning, match="test/validation split"):
        pixscale.fit(test_like, None, pixscale.Spec("standardize"))


def test_public_names_have_docstrings() -> None:
    for name in pixscale.__all__:
        if name != "__version__":
            assert getattr(pixscale, name).__doc__, name
    assert set(pixscale.__all__) <= set(dir(pixscale))


def test_readme_python_api_example_runs(tmp_path: Path, photo_tiles: np.ndarray) -> None:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"## Python API\n.*?```python\n(.*?)```", text, re.DOTALL)
    assert match, "README has a Python API section with an example"
    np.save(tmp_path / "train.npy", photo_tiles)
    code = compile(match.group(1), "README.md", "exec")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        exec(code, {})
    assert (tmp_path / "train.h5").is_file() and (tmp_path / "p.json").is_file()
