"""``Scaler`` honours scikit-learn's estimator contract, as scikit-learn users expect."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

import pixscale
from pixscale.errors import ParamsError, TestSplitWarning

sklearn_base = pytest.importorskip("sklearn.base")
validation = pytest.importorskip("sklearn.utils.validation")
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


@pytest.fixture
def tiles() -> np.ndarray:
    rng = np.random.default_rng(24)
    x = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    x[..., 2] = 7  # one channel of zero std: scale_ is 1, as StandardScaler's
    return x


def test_clone_keeps_the_constructor_arguments_as_given() -> None:
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.2, 0.2]
    scaler = pixscale.Scaler("standardize", scope="channel", mean=mean, std=std, layout="nhwc")
    assert scaler.mean is mean  # stored unchanged
    copy = sklearn_base.clone(scaler)
    assert copy is not scaler and copy.get_params() == scaler.get_params()


def test_constructor_does_not_validate_fit_does() -> None:
    scaler = pixscale.Scaler("no-such-strategy")
    assert scaler.strategy == "no-such-strategy"
    with pytest.raises(ParamsError, match="unknown strategy"):
        scaler.fit(np.zeros((2, 3, 3), np.uint8))


def test_get_params_set_params_round_trip() -> None:
    scaler = pixscale.Scaler()
    params = scaler.get_params()
    assert params["strategy"] == "unit" and params["scope"] == "global"
    assert set(params) == {
        "strategy", "scope", "layout", "source_range", "target_range", "from_data",
        "mean", "std", "clip", "zero_std", "bits",
    }  # fmt: skip
    assert scaler.set_params(strategy="range", from_data=True, scope="pixel") is scaler
    assert scaler.get_params() == {**params, "strategy": "range", "from_data": True,
                                   "scope": "pixel"}  # fmt: skip
    assert pixscale.Scaler(**scaler.get_params()).get_params() == scaler.get_params()
    with pytest.raises(ValueError, match="invalid parameter 'nope'"):
        scaler.set_params(nope=1)


def test_repr_shows_the_non_default_arguments() -> None:
    assert repr(pixscale.Scaler()) == "Scaler()"
    text = repr(pixscale.Scaler("standardize", scope="channel", zero_std="error"))
    assert text == "Scaler('standardize', scope='channel', zero_std='error')"


def test_check_is_fitted_before_and_after(tiles: np.ndarray) -> None:
    scaler = pixscale.Scaler("standardize", scope="channel")
    with pytest.raises(NotFittedError):
        validation.check_is_fitted(scaler)
    for name in ("params_", "mean_", "scale_", "n_samples_seen_"):
        assert not hasattr(scaler, name)
    scaler.fit(tiles)
    validation.check_is_fitted(scaler)
    assert scaler.n_samples_seen_ == 40 and scaler.params_ is not None
    refit = sklearn_base.clone(scaler)
    with pytest.raises(NotFittedError):
        validation.check_is_fitted(refit)


@pytest.mark.parametrize(("scope", "shape"), [("global", (-1, 1)), ("channel", (-1, 3))])
def test_mean_and_scale_are_standard_scalers(tiles: np.ndarray, scope: str, shape: tuple) -> None:
    scaler = pixscale.Scaler("standardize", scope=scope).fit(tiles)
    flat = tiles.reshape(shape).astype(np.float64)
    reference = StandardScaler().fit(flat)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    assert np.array_equal(scaler.mean_, mean)
    # numpy's float std rounds more than once; pixscale's is the correctly rounded one
    np.testing.assert_allclose(scaler.scale_, np.where(std == 0, 1.0, std), rtol=1e-14)
    np.testing.assert_allclose(scaler.mean_, reference.mean_, rtol=1e-12)
    np.testing.assert_allclose(scaler.scale_, reference.scale_, rtol=1e-12)
    assert scaler.n_samples_seen_ == tiles.shape[0]


def test_pixel_scope_mean_has_the_image_shape(tiles: np.ndarray) -> None:
    scaler = pixscale.Scaler("standardize", scope="pixel").fit(tiles)
    assert np.array_equal(scaler.mean_, tiles.astype(np.float64).mean(axis=0))


def test_mean_and_scale_are_for_standardize_only(tiles: np.ndarray) -> None:
    scaler = pixscale.Scaler("range", from_data=True).fit(tiles)
    with pytest.raises(AttributeError, match="standardize"):
        _ = scaler.mean_


def test_image_scope_fit_is_a_no_op_and_transform_is_stateless(tiles: np.ndarray) -> None:
    scaler = pixscale.Scaler("standardize", scope="image")
    before = scaler.transform(tiles)
    assert scaler.fit(tiles) is scaler and scaler.n_samples_seen_ == 40
    validation.check_is_fitted(scaler)
    assert scaler.params_ is None
    assert np.array_equal(scaler.transform(tiles), before)
    assert np.array_equal(scaler.fit_transform(tiles), before)
    # per image: an image's output does not depend on the others in the batch
    assert np.array_equal(scaler.transform(tiles[3:4]), before[3:4])


@pytest.mark.parametrize("scope", ["global", "channel", "pixel", "image"])
def test_fit_transform_everywhere(tiles: np.ndarray, scope: str) -> None:
    scaler = pixscale.Scaler("range", scope=scope, from_data=True)
    y = scaler.fit_transform(tiles)
    assert y.dtype == np.float32 and y.shape == tiles.shape
    assert np.array_equal(scaler.inverse_transform(y), tiles)


def test_image_scope_inverse_does_not_depend_on_the_last_transform(tiles: np.ndarray) -> None:
    scaler = pixscale.Scaler("range", scope="image", from_data=True)
    first = scaler.transform(tiles[:10])
    scaler.transform(tiles[10:])  # another transform in between
    assert np.array_equal(scaler.inverse_transform(first), tiles[:10])
    with pytest.raises(ParamsError, match="image scope cannot be inverted without"):
        scaler.inverse_transform(first.copy())
    with pytest.raises(ParamsError, match="image scope cannot be inverted without"):
        sklearn_base.clone(scaler).inverse_transform(first)


def test_fitted_scaler_pickles_and_clones_unfitted(tiles: np.ndarray) -> None:
    scaler = pixscale.Scaler("standardize", scope="channel").fit(tiles)
    again = pickle.loads(pickle.dumps(scaler))
    assert np.array_equal(again.transform(tiles).view(np.uint32),
                          scaler.transform(tiles).view(np.uint32))  # fmt: skip
    image = pixscale.Scaler(scope="image", strategy="standardize")
    image.transform(tiles)
    pickle.loads(pickle.dumps(image))


@pytest.mark.parametrize("name", ["test.npy", "t10k-images.npy"])
def test_fit_on_a_test_split_path_warns(tmp_path: Path, tiles: np.ndarray, name: str) -> None:
    path = tmp_path / name
    np.save(path, tiles)
    with pytest.warns(TestSplitWarning, match="test/validation split") as caught:
        pixscale.Scaler("standardize", scope="channel").fit(path)
    assert caught[0].filename == __file__  # points at the caller


def test_fit_on_a_training_path_does_not_warn(tmp_path: Path, tiles: np.ndarray) -> None:
    path = tmp_path / "train.npy"
    np.save(path, tiles)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TestSplitWarning)
        scaler = pixscale.Scaler("standardize", scope="channel").fit(path)
    assert scaler.n_samples_seen_ == 40 and scaler.fitted_on is not None
