"""Smaller outputs are exact: float16 values are the float16 nearest the float64 formula,
and packed uint8 decodes (in CF readers' own arithmetic) to the float32 output, bit for bit,
on real MNIST for every strategy and scope."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pixscale
from pixscale.core.kernels import Affine, reference
from pixscale.core.params import Params
from pixscale.core.spec import Geometry, Spec, build_params
from pixscale.core.stats import image_stats
from pixscale.core.storage import (
    FLOAT16_MAX,
    FLOAT16_OVERFLOW,
    cf_decode,
    check_per_image_float16,
    choose_half_kernel,
    find_packing,
    float16_collisions,
    float16_reach,
    per_image_float16_bound,
    reference16,
)
from pixscale.core.transform import Transform, flat_affine
from pixscale.errors import ParamsError

ALL = np.arange(256, dtype=np.uint8)
#: (strategy, scope, Spec options) — every strategy, every scope it allows.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("unit", "global", {}),
    ("symmetric", "global", {}),
    ("none", "global", {}),
    ("range", "global", {"source_range": (10, 200), "target_range": (-2, 3)}),
    ("range", "global", {"source_range": (10, 200), "target_range": (0, 1), "clip": True}),
    ("range", "global", {"from_data": True}),
    ("range", "channel", {"from_data": True}),
    ("range", "pixel", {"from_data": True}),
    ("range", "image", {"from_data": True, "target_range": (-1, 1)}),
    ("standardize", "global", {}),
    ("standardize", "global", {"mean": (0.1307,), "std": (0.3081,)}),
    ("standardize", "channel", {}),
    ("standardize", "pixel", {}),
    ("standardize", "image", {}),
]
IDS = [f"{s}-{c}-{'-'.join(o) or 'plain'}" for s, c, o in CASES]


def bits(values: np.ndarray) -> np.ndarray:
    return values.view(np.uint16 if values.dtype == np.float16 else np.uint32)


def params_for(x: np.ndarray, strategy: str, scope: str, options: dict[str, Any]) -> Params:
    spec = Spec(strategy, scope, **options)
    geometry = Geometry(tuple(x.shape[1:]), "nhw" if x.ndim == 3 else "nhwc", None)
    if x.ndim == 4:
        geometry = Geometry(tuple(x.shape[1:]), "nhwc", 2)
    if scope == "image":
        return build_params(spec, geometry, image_stats(x))
    scaler = pixscale.Scaler(strategy, scope=scope, **options)
    return scaler.fit(x).params_ if spec.needs_stats else build_params(spec, geometry)


def float64_reference(params: Params, chunk: np.ndarray, start: int) -> np.ndarray:
    """The formula in float64 per pixel, broadcast by hand (independent of the kernels)."""
    flat = chunk.reshape(chunk.shape[0], -1).astype(np.float64)
    low, span = params.source_low, params.source_span
    if params.scope == "image":
        low, span = low[start : start + len(chunk), None], span[start : start + len(chunk), None]
    elif params.scope == "channel" and low.ndim == 1:
        low = np.broadcast_to(low, chunk.shape[1:]).reshape(-1)
        span = np.broadcast_to(span, chunk.shape[1:]).reshape(-1)
    elif params.scope == "pixel":
        low, span = low.reshape(-1), span.reshape(-1)
    values = (flat - low) * params.target_span / span + params.target_low
    if params.clip:
        lo, hi = sorted(params.target_range)
        values = np.clip(values, lo, hi)
    return values.reshape(chunk.shape)


def per_element(packing_values: np.ndarray, params: Params, count: int, start: int) -> np.ndarray:
    """CF attributes broadcast over a flattened chunk (per image: a column)."""
    if params.scope == "image":
        return packing_values[start : start + count, None]
    if params.scope == "channel" and packing_values.ndim == 1:
        return np.broadcast_to(packing_values, params.image_shape).reshape(-1)
    return packing_values.reshape(-1) if packing_values.ndim else packing_values


@pytest.mark.parametrize(("strategy", "scope", "options"), CASES, ids=IDS)
def test_float16_and_packed_outputs_are_exact_on_mnist(
    mnist_train: tuple[np.ndarray, np.ndarray], strategy: str, scope: str, options: dict[str, Any]
) -> None:
    images = mnist_train[0]
    params = params_for(images, strategy, scope, options)
    half, single = Transform(params, "float16"), Transform(params)
    clip_merges = params.clip
    if clip_merges:
        with pytest.raises(ParamsError, match="clip"):
            single.packing()
    else:
        packing = single.packing()
    for start in range(0, len(images), 15000):
        chunk = images[start : start + 15000]
        want64 = float64_reference(params, chunk, start)
        got16 = half.apply(chunk, start)
        assert got16.dtype == np.float16 and np.isfinite(got16).all()
        assert np.array_equal(bits(got16), bits(want64.astype(np.float16)))
        got32 = single.apply(chunk, start)
        assert np.array_equal(bits(got32), bits(want64.astype(np.float32)))
        positions = np.arange(start, start + len(chunk))
        assert np.array_equal(bits(single.decode(chunk, positions)), bits(got32))
        for i in (0, len(chunk) - 1):  # one image: through the lookup table
            got = single.decode(chunk[i : i + 1], positions[i : i + 1])
            assert np.array_equal(bits(got), bits(got32[i : i + 1]))
        picks = np.asarray([len(chunk) - 1, 0, 0, 7])
        again = single.decode(chunk[picks], positions[picks])
        assert np.array_equal(bits(again), bits(got32[picks]))
        if clip_merges:
            continue
        flat = chunk.reshape(len(chunk), -1)
        scale = per_element(packing.scale_factor, params, len(chunk), start)
        offset = per_element(packing.add_offset, params, len(chunk), start)
        decoded = cf_decode(flat, scale, offset).reshape(chunk.shape)
        assert np.array_equal(bits(decoded), bits(got32))


@settings(max_examples=200, deadline=None)
@given(
    low=st.floats(-300, 300),
    span=st.floats(0.01, 1000),
    out_low=st.floats(-10, 10),
    out_span=st.floats(0.001, 100) | st.floats(-100, -0.001),
)
@example(low=1.192092896e-07, span=0.01, out_low=0.0, out_span=0.001)  # refused: truly
@example(low=1.0, span=1.0, out_low=6.535681402917714e-39, out_span=1.0)  # a subnormal
def test_chosen_half_kernel_and_packing_are_exact_for_any_affine_map(
    low: float, span: float, out_low: float, out_span: float
) -> None:
    affine = Affine(*(np.asarray(v, np.float64) for v in (low, span, out_low, out_span)))
    if float16_reach(affine) >= FLOAT16_OVERFLOW:
        with pytest.raises(ParamsError, match="float16"):
            choose_half_kernel(affine)
    else:
        got = np.empty((256, 1), np.float16)
        choose_half_kernel(affine)(ALL[:, None], got)
        assert np.array_equal(bits(got[:, 0]), bits(reference16(ALL, affine)))
        assert np.isfinite(got).all()
    want = reference(ALL, affine)
    try:
        packing = find_packing(affine)
    except ParamsError:
        # A refusal must be true: the record's own pair does not decode exactly (what is
        # left, e.g. a -0.0 or a value below the line's float64 rounding near zero, no
        # pair a few ulps away reaches either)
        scale = affine.span_out / affine.span_in
        plain = cf_decode(ALL, scale, affine.out_low - affine.low * scale)
        assert not np.array_equal(bits(plain), bits(want))
        return
    assert np.array_equal(bits(packing.decode(ALL)), bits(want))


def test_double_rounding_cases_exist_and_are_avoided() -> None:
    # Search maps where float32 -> float16 differs from float64 -> float16 for some input;
    # the chosen kernel must still give the single rounding.
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(400):
        low, span = rng.uniform(0, 255), rng.uniform(1, 300)
        affine = Affine(*(np.asarray(v, np.float64) for v in (low, span, 0.0, 1.0)))
        once = reference16(ALL, affine)
        twice = reference(ALL, affine).astype(np.float16)
        if np.array_equal(bits(once), bits(twice)):
            continue
        found += 1
        got = np.empty((256, 1), np.float16)
        choose_half_kernel(affine)(ALL[:, None], got)
        assert np.array_equal(bits(got[:, 0]), bits(once))
    assert found > 0


def test_float16_overflow_is_refused_before_any_value_is_computed() -> None:
    params = build_params(
        Spec("range", source_range=(0, 255), target_range=(0, 70000)), Geometry((4,), "nf", None)
    )
    with pytest.raises(ParamsError, match="beyond float16's range"):
        Transform(params, "float16")
    Transform(params)  # float32 holds it
    # Just below the rounding threshold is finite: 65519.99 rounds to 65504.
    edge = Affine(*(np.asarray(v, np.float64) for v in (0.0, 255.0, 0.0, 65519.99)))
    got = np.empty((256, 1), np.float16)
    choose_half_kernel(edge)(ALL[:, None], got)
    assert got.max() == FLOAT16_MAX
    over = Affine(*(np.asarray(v, np.float64) for v in (0.0, 255.0, 0.0, FLOAT16_OVERFLOW)))
    with pytest.raises(ParamsError):
        choose_half_kernel(over)


def test_per_image_float16_is_checked_on_a_bound_up_front() -> None:
    assert per_image_float16_bound("standardize", (0.0, 1.0), 784) == 255.0
    assert per_image_float16_bound("range", (-1.0, 1.0), 784) == 1.0
    check_per_image_float16("standardize", (0.0, 1.0), 4096 * 4096 * 3)
    with pytest.raises(ParamsError, match="per-image"):
        check_per_image_float16("range", (0.0, 1e6), 10)


def test_unknown_dtype_and_wrong_buffer_are_refused(sample: tuple[np.ndarray, np.ndarray]) -> None:
    params = build_params(Spec(), Geometry((28, 28), "nhw", None))
    with pytest.raises(ParamsError, match="dtype"):
        Transform(params, "float64")
    with pytest.raises(ParamsError, match="buffer"):
        Transform(params, "float16").apply(sample[0][:2], 0, np.empty((2, 28, 28), np.float32))


def test_float16_outputs_invert_exactly_where_values_stay_distinct(
    mnist_train: tuple[np.ndarray, np.ndarray],
) -> None:
    images = mnist_train[0][:5000]
    params = params_for(images, "standardize", "pixel", {})
    half = Transform(params, "float16")
    values = half.apply(images, 0)
    pixels, mismatches = half.invert(values, 0)
    assert mismatches == 0 and np.array_equal(pixels, images)
    assert float16_collisions(flat_affine(params)) == 0
    # A map finer than float16's spacing merges inputs: counted, and invert says so.
    fine = build_params(
        Spec("range", source_range=(0, 255), target_range=(1000, 1001)),
        Geometry((256,), "nf", None),
    )
    assert float16_collisions(flat_affine(fine)) > 0
    half_fine = Transform(fine, "float16")
    _, lost = half_fine.invert(half_fine.apply(ALL[None, :], 0), 0)
    assert lost == 0  # every stored value re-derives from some uint8, even if not unique


def test_unit_packing_is_the_records_own_scale() -> None:
    params = build_params(Spec(), Geometry((28, 28), "nhw", None))
    packing = Transform(params).packing()
    assert packing.is_scalar and packing.nudged == 0
    assert packing.scale_factor == 1 / 255 and packing.add_offset == 0.0


# ------------------------------------------------------------- through xarray + h5netcdf


def write_packed_h5(path: Path, pixels: np.ndarray, params: Params) -> None:
    """A packed file laid out as the store's writer hunk writes it (the CF part only).

    Global scope: CF attributes on ``images``. Channel scope on colour data: one virtual
    dataset per channel, ``images_c<k>``, selecting that channel of ``images`` (no copy),
    each with its channel's scalar attributes.
    """
    packing = Transform(params).packing()
    with h5py.File(path, "w") as handle:
        images = handle.create_dataset("images", data=pixels)
        if packing.is_scalar:
            images.attrs["scale_factor"] = np.float64(packing.scale_factor)
            images.attrs["add_offset"] = np.float64(packing.add_offset)
            return
        axis = 1 + (params.channel_axis or 0)
        for c in range(pixels.shape[axis]):
            shape = pixels.shape[:axis] + pixels.shape[axis + 1 :]
            layout = h5py.VirtualLayout(shape=shape, dtype=np.uint8)
            source = h5py.VirtualSource(".", "images", shape=pixels.shape, dtype=np.uint8)
            index = tuple(c if i == axis else slice(None) for i in range(pixels.ndim))
            layout[...] = source[index]
            view = handle.create_virtual_dataset(f"images_c{c}", layout)
            view.attrs["scale_factor"] = np.float64(packing.scale_factor[c])
            view.attrs["add_offset"] = np.float64(packing.add_offset[c])


XARRAY_CASES = [c for c in CASES if c[1] in ("global", "channel") and not c[2].get("clip")]


@pytest.mark.parametrize(
    ("strategy", "scope", "options"),
    XARRAY_CASES,
    ids=[f"{s}-{c}-{'-'.join(o) or 'plain'}" for s, c, o in XARRAY_CASES],
)
def test_xarray_decodes_packed_mnist_to_the_float32_output(
    tmp_path: Path,
    mnist_train: tuple[np.ndarray, np.ndarray],
    strategy: str,
    scope: str,
    options: dict[str, Any],
) -> None:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    images = mnist_train[0]
    params = params_for(images, strategy, scope, options)
    write_packed_h5(tmp_path / "packed.h5", images, params)
    with xr.open_dataset(tmp_path / "packed.h5", engine="h5netcdf", phony_dims="sort") as ds:
        decoded = ds["images"].values
    assert decoded.dtype == np.float64  # xarray's own arithmetic: float64, not float32
    want = Transform(params).apply(images, 0)
    assert np.array_equal(bits(decoded.astype(np.float32)), bits(want))
    assert np.array_equal(bits(want), bits(float64_reference(params, images, 0).astype("f4")))


def test_xarray_decodes_per_channel_packing_through_channel_views(
    tmp_path: Path, photo_npy: Path, photo_tiles: np.ndarray
) -> None:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    pixscale.convert(photo_npy, tmp_path / "f32.h5", pixscale.Spec("standardize", "channel"))
    with pixscale.open(tmp_path / "f32.h5") as converted:
        want, params = converted[:], converted.params
    write_packed_h5(tmp_path / "packed.h5", photo_tiles, params)
    with xr.open_dataset(tmp_path / "packed.h5", engine="h5netcdf", phony_dims="sort") as ds:
        assert ds["images"].dtype == np.uint8  # no CF attributes on the shared pixels
        for c in range(3):
            got = ds[f"images_c{c}"].values.astype(np.float32)
            assert np.array_equal(bits(got), bits(np.ascontiguousarray(want[..., c])))


def test_array_valued_cf_attributes_break_xarray(tmp_path: Path) -> None:
    """Why per-channel parameters are not put on ``images`` itself: xarray refuses them."""
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    with h5py.File(tmp_path / "bad.h5", "w") as handle:
        images = handle.create_dataset("images", data=np.zeros((2, 2, 2, 3), np.uint8))
        images.attrs["scale_factor"] = np.array([0.1, 0.2, 0.3])
        images.attrs["add_offset"] = np.array([0.0, 0.0, 0.0])
    with pytest.raises(ValueError):  # noqa: PT011 (xarray's own message varies)
        with xr.open_dataset(tmp_path / "bad.h5", engine="h5netcdf", phony_dims="sort") as ds:
            ds["images"].values  # noqa: B018


def test_decode_tables_follow_channels_and_pixels(photo_tiles: np.ndarray) -> None:
    """The lookup-table decoder equals the kernel for colour data, NHWC and NCHW."""
    for layout, pixels in (("nhwc", photo_tiles), ("nchw", photo_tiles.transpose(0, 3, 1, 2))):
        pixels = np.ascontiguousarray(pixels)
        axis = 2 if layout == "nhwc" else 0
        geometry = Geometry(tuple(pixels.shape[1:]), layout, axis)
        for scope in ("channel", "pixel", "global"):
            params = build_params(Spec("standardize", scope), geometry, _stats(pixels, scope))
            transform = Transform(params)
            want = transform.apply(pixels, 0)
            got = np.concatenate([transform.decode(pixels[i : i + 1]) for i in range(8)])
            assert np.array_equal(bits(got), bits(want[:8])), (layout, scope)
            assert np.array_equal(bits(transform.decode(pixels)), bits(want))  # the kernel
            half = Transform(params, "float16")
            assert np.array_equal(bits(half.decode(pixels[:2])), bits(half.apply(pixels[:2], 0)))


def _stats(pixels: np.ndarray, scope: str) -> Any:
    from pixscale.core.stats import PixelSums

    sums = PixelSums.empty(tuple(pixels.shape[1:]))
    sums.add(pixels)
    axis = 2 if pixels.shape[-1] == 3 else 0
    return sums.reduce(scope, axis)


def test_per_image_decode_needs_positions(sample: tuple[np.ndarray, np.ndarray]) -> None:
    images = sample[0][:10]
    params = params_for(images, "standardize", "image", {})
    transform = Transform(params)
    with pytest.raises(ParamsError, match="positions"):
        transform.decode(images)
    order = np.asarray([9, 2, 2, 0])
    got = transform.decode(images[order], order)
    assert np.array_equal(bits(got), bits(transform.apply(images, 0)[order]))


def test_packing_hits_an_exact_zero_that_the_plain_offset_misses() -> None:
    # (x - 11) * 7.5 / 11 + 7.5 is exactly 0 at x = 0, but 7.5 - 11 * (7.5 / 11) is not.
    affine = Affine(*(np.asarray(v, np.float64) for v in (11.0, 11.0, 7.5, 7.5)))
    plain = cf_decode(ALL, 7.5 / 11, 7.5 - 11 * (7.5 / 11))
    assert not np.array_equal(bits(plain), bits(reference(ALL, affine)))
    packing = find_packing(affine)
    assert packing.nudged == 1
    assert np.array_equal(bits(packing.decode(ALL)), bits(reference(ALL, affine)))
