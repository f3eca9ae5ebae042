"""Exactness on a synthetic array that holds all 256 uint8 values at every position.

Every output value must be the float64 formula of the record rounded once to the output
dtype (docs/strategies.md, ``pixscale.core.kernels.reference``), whichever kernel was chosen.
Image ``i`` holds ``(i + 37 * k) % 256`` at flat position ``k``, so each position, each
channel and the dataset see every value once per 256 images, and every image differs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pixscale

SHAPE = (4, 4, 3)
STRIDE = 37  # odd: the 48 positions of one image hold 48 different values


def all_values() -> np.ndarray:
    image = np.arange(256)[:, None]
    position = np.arange(int(np.prod(SHAPE)))[None, :] * STRIDE
    return ((image + position) % 256).astype(np.uint8).reshape(256, *SHAPE)


SPECS = {
    "unit": pixscale.Spec("unit"),
    "range odd bounds": pixscale.Spec("range", source_range=(3.0, 251.0), target_range=(-1.7, 2.3)),
    "range odd bounds clipped": pixscale.Spec(
        "range", source_range=(13.0, 201.0), target_range=(-0.3, 0.9), clip=True
    ),
    "symmetric": pixscale.Spec("symmetric"),
    "standardize dataset": pixscale.Spec("standardize", scope="global"),
    "standardize channel": pixscale.Spec("standardize", scope="channel"),
    "standardize pixel": pixscale.Spec("standardize", scope="pixel"),
    "standardize image": pixscale.Spec("standardize", scope="image"),
    "none": pixscale.Spec("none"),
}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("exact") / "all-values.npy"
    np.save(path, all_values())
    return path


def reference(x: np.ndarray, params: pixscale.Params, dtype: str) -> np.ndarray:
    """The float64 formula with the record's parameters, rounded once to ``dtype``."""
    low = np.asarray(params.source_low, np.float64)
    span = np.asarray(params.source_span, np.float64)
    if params.scope == "image":
        low, span = (a.reshape(-1, *[1] * len(SHAPE)) for a in (low, span))
    target_low = np.float64(params.target_low)
    target_span = np.float64(params.target_span)
    values = (x.astype(np.float64) - low) * target_span / span + target_low
    if params.clip:
        end = target_low + target_span
        values = np.clip(values, min(target_low, end), max(target_low, end))
    return values.astype(np.float16 if dtype == "float16" else np.float32)


def convert(
    source: Path, out: Path, spec: pixscale.Spec, **output: str
) -> tuple[np.ndarray, pixscale.Params]:
    pixscale.convert(source, pixscale.Output(out, **output), spec)
    data = pixscale.open(out)
    try:
        return np.asarray(data[:]), data.params
    finally:
        data.close()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("case", sorted(SPECS))
def test_every_value_is_the_rounded_float64_formula(
    tmp_path: Path, source: Path, case: str, dtype: str
) -> None:
    values, params = convert(source, tmp_path / "out.npy", SPECS[case], dtype=dtype)
    assert values.dtype == np.dtype(dtype)
    expected = reference(all_values(), params, dtype)
    assert values.tobytes() == expected.tobytes()
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)


PACKED = sorted(set(SPECS) - {"range odd bounds clipped"})


@pytest.mark.parametrize("case", PACKED)
def test_packed_uint8_decodes_to_the_rounded_float64_formula(
    tmp_path: Path, source: Path, case: str
) -> None:
    values, params = convert(source, tmp_path / "out.npy", SPECS[case], store="uint8")
    assert values.dtype == np.float32
    assert values.tobytes() == reference(all_values(), params, "float32").tobytes()


def test_packed_uint8_of_a_clipped_range_is_refused(tmp_path: Path, source: Path) -> None:
    with pytest.raises(pixscale.ParamsError, match=r"^--store uint8 would not decode exactly"):
        convert(source, tmp_path / "out.npy", SPECS["range odd bounds clipped"], store="uint8")
    assert list(tmp_path.iterdir()) == []
