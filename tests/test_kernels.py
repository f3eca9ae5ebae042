"""Every strategy is exact on all 256 inputs: the float32 nearest the float64 formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixscale.core.kernels import FLOAT32_KERNELS, Affine, Kernel, choose_kernel, reference
from pixscale.core.params import Params
from pixscale.core.spec import Geometry, Spec, build_params
from pixscale.core.transform import Transform

ALL = np.arange(256, dtype=np.uint8)
GEOMETRY = Geometry((256,), "nf", None)


def transform_all(spec: Spec) -> np.ndarray:
    params = build_params(spec, GEOMETRY)
    return Transform(params).apply(ALL[None, :], 0)[0]


def bits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float32).view(np.uint32)


def test_unit_is_float32_division_by_255() -> None:
    expected = np.float32(ALL) / np.float32(255)
    assert np.array_equal(bits(transform_all(Spec("unit"))), bits(expected))


def test_unit_is_not_the_reciprocal_multiply_that_keras_uses() -> None:
    keras_style = ALL.astype(np.float32) * np.float32(1 / 255)
    assert np.count_nonzero(bits(keras_style) != bits(transform_all(Spec("unit")))) > 100


@pytest.mark.parametrize(
    ("spec", "formula"),
    [
        (Spec("symmetric"), lambda x: (x - 0) * 2 / 255 - 1),
        (Spec("range", source_range=(0, 255), target_range=(-2, 3)), lambda x: x * 5 / 255 - 2),
        (Spec("range", source_range=(10, 200), target_range=(0, 1)), lambda x: (x - 10) / 190),
        (Spec("range", source_range=(0, 255), target_range=(1, -1)), lambda x: x * -2 / 255 + 1),
        (Spec("none"), lambda x: x),
        (
            Spec("standardize", mean=(0.1307,), std=(0.3081,)),
            lambda x: (x - 0.1307 * 255) / (0.3081 * 255),
        ),
    ],
)
def test_strategy_equals_float64_formula_rounded_once(spec: Spec, formula: object) -> None:
    expected = np.asarray(formula(ALL.astype(np.float64)), np.float64).astype(np.float32)  # type: ignore[operator]
    assert np.array_equal(bits(transform_all(spec)), bits(expected))


def test_clip_clamps_to_the_target_range() -> None:
    got = transform_all(Spec("range", source_range=(50, 100), target_range=(0, 1), clip=True))
    assert got.min() == 0 and got.max() == 1
    assert got[75] == np.float32((75 - 50) / 50)


@settings(max_examples=200, deadline=None)
@given(
    low=st.floats(-300, 300),
    span=st.floats(0.01, 1000),
    out_low=st.floats(-10, 10),
    out_span=st.floats(0.001, 100) | st.floats(-100, -0.001),
)
def test_chosen_kernel_is_exact_for_any_affine_map(
    low: float, span: float, out_low: float, out_span: float
) -> None:
    affine = Affine(*(np.asarray(v, np.float64) for v in (low, span, out_low, out_span)))
    params = Params(
        "range", "global", affine.low, affine.span_in, out_low, out_span, "nf", None, (256,)
    )
    got = Transform(params).apply(ALL[None, :], 0)[0]
    assert np.array_equal(bits(got), bits(reference(ALL, affine)))


def test_kernel_choice_prefers_float32_arithmetic_for_the_fixed_strategies() -> None:
    for name in ("unit", "symmetric", "none"):
        params = build_params(Spec(name), GEOMETRY)
        assert Transform(params).kernel_name in FLOAT32_KERNELS, name


def test_fitted_statistics_use_an_exact_float64_kernel() -> None:
    # 0.1307/0.3081 (MNIST) has no exact float32 form; the float64 multiply-add is exact.
    affine = Affine(*(np.asarray(v, np.float64) for v in (0.1307 * 255, 0.3081 * 255, 0, 1)))
    kernel = choose_kernel(affine)
    assert kernel.name == "multiply-add-f64"
    got = np.empty(256, np.float32)
    kernel(ALL, got)
    assert np.array_equal(bits(got), bits(reference(ALL, affine)))


def test_float64_kernel_is_exact_across_block_boundaries() -> None:
    affine = Affine(*(np.asarray(v, np.float64) for v in (33.3, 71.1, 0.1, 0.3)))
    x = np.random.default_rng(0).integers(0, 256, size=(700, 1000), dtype=np.uint8)
    for kernel in (choose_kernel(affine), Kernel("float64", (), None, affine)):
        got = np.empty(x.shape, np.float32)
        kernel(x, got)
        assert np.array_equal(bits(got), bits(reference(x, affine))), kernel.name
