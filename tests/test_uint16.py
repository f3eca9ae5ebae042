"""uint16 sources: the same exactness promise as uint8, checked against float64 references.

Real data: MNIST widened to 16 bits (``x * 257``, 0..65535) and to 12 bits
(``x * 16 + x % 16``, 0..4095); synthetic arrays hit 0 and 65535 exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import pixscale
from cli_helpers import fails_with, run_cli, run_process
from pixscale.core.kernels import Affine, choose_kernel, is_exact, reference
from pixscale.core.pixels import source_dtype
from pixscale.core.spec import Geometry, Spec, build_params
from pixscale.core.stats import PixelSums, image_stats
from pixscale.core.storage import choose_half_kernel, float16_collisions, reference16
from pixscale.core.transform import Transform, flat_affine
from pixscale.errors import InputError, OutputError, ParamsError
from pixscale.sources import open_source
from pixscale.store.records import load_params

IMAGES = 1500  # of MNIST: enough for every code path, light on a shared machine


@pytest.fixture(scope="module")
def mnist16(mnist_train: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return mnist_train[0][:IMAGES].astype(np.uint16) * 257


@pytest.fixture(scope="module")
def mnist12(mnist_train: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    x = mnist_train[0][:IMAGES]
    return x.astype(np.uint16) * 16 + (x % 16)


@pytest.fixture(scope="module")
def synthetic() -> np.ndarray:
    """Colour images over the whole uint16 range, 0 and 65535 in every channel."""
    rng = np.random.default_rng(16)
    x = rng.integers(0, 1 << 16, (40, 6, 5, 3), dtype=np.uint16)
    x[0, 0, 0] = 0
    x[1, 0, 0] = 65535
    x[2, :, :, 1] = 65535
    return x


# ------------------------------------------------------------------ the references


def expected(x: np.ndarray, low: Any, span: Any, out_low: float, span_out: float) -> np.ndarray:
    """The definition, in the test's own words."""
    return ((x.astype(np.float64) - low) * span_out / span + out_low).astype(np.float32)


def exact_stats(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std over ``axes`` from Python-integer sums (no float before the
    one division)."""
    wide = x.astype(np.uint64)
    s1 = np.asarray(wide.sum(axis=axes, dtype=np.uint64), dtype=object)
    s2 = np.asarray((wide * wide).sum(axis=axes, dtype=np.uint64), dtype=object)
    count = math.prod(x.shape[a] for a in axes)
    mean = [int(a) / count for a in s1.reshape(-1)]
    var = [(count * int(b) - int(a) * int(a)) / (count * count) for a, b in zip(
        s1.reshape(-1), s2.reshape(-1), strict=True)]  # fmt: skip
    shape = s1.shape
    return np.reshape(mean, shape), np.sqrt(np.reshape(var, shape))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and bool(np.array_equal(a.view("u1"), b.view("u1")))
    )


def want_for(x: np.ndarray, spec: Spec, top: int, layout: str) -> np.ndarray:
    """The float32 the strategy must give, with parameters derived in the test."""
    if spec.strategy == "unit":
        return expected(x, 0.0, float(top), 0.0, 1.0)
    if spec.strategy == "symmetric":
        return expected(x, 0.0, float(top), -1.0, 2.0)
    if spec.strategy == "none":
        return x.astype(np.float32)
    if spec.strategy == "range" and not spec.from_data:
        lo, hi = spec.source_range or (0.0, float(top))
        a, b = spec.target_range or (0.0, 1.0)
        return expected(x, lo, hi - lo, a, b - a)
    assert spec.strategy == "standardize"
    if spec.scope == "image":
        axes = tuple(range(1, x.ndim))
        mean, std = exact_stats(x, axes)
        shape = (-1,) + (1,) * (x.ndim - 1)
        std = np.where(std == 0, 1.0, std)
        return expected(x, mean.reshape(shape), std.reshape(shape), 0.0, 1.0)
    if spec.scope == "pixel":
        mean, std = exact_stats(x, (0,))
    elif spec.scope == "channel" and layout == "nhwc":
        mean, std = exact_stats(x, (0, 1, 2))
    else:
        mean, std = exact_stats(x, tuple(range(x.ndim)))
    std = np.where(std == 0, 1.0, std)
    return expected(x, mean, std, 0.0, 1.0)


SPECS = [
    Spec("unit"),
    Spec("symmetric"),
    Spec("range", target_range=(-2.0, 3.0)),
    Spec("range", source_range=(1000.0, 40000.0), target_range=(0.0, 1.0)),
    Spec("none"),
    Spec("standardize"),
    Spec("standardize", scope="channel"),
    Spec("standardize", scope="pixel"),
    Spec("standardize", scope="image"),
]


def spec_id(spec: Spec) -> str:
    return f"{spec.strategy}-{spec.scope}" + ("-from" if spec.source_range else "")


def convert_npy(tmp_path: Path, x: np.ndarray, spec: Spec, name: str = "y") -> np.ndarray:
    source = tmp_path / f"{name}-in.npy"
    np.save(source, x)
    out = tmp_path / f"{name}.npy"
    pixscale.convert(source, out, spec)
    return np.load(out)


# ------------------------------------------------------------------ every strategy, scope


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_mnist16_every_strategy_bit_for_bit(
    tmp_path: Path, mnist16: np.ndarray, spec: Spec
) -> None:
    got = convert_npy(tmp_path, mnist16, spec)
    assert same_bits(got, want_for(mnist16, spec, 65535, "nhw"))
    back = tmp_path / "back.npy"
    pixscale.invert(tmp_path / "y.npy", back)
    restored = np.load(back)
    assert restored.dtype == np.uint16 and np.array_equal(restored, mnist16)


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_synthetic_full_range_every_strategy(
    tmp_path: Path, synthetic: np.ndarray, spec: Spec
) -> None:
    got = convert_npy(tmp_path, synthetic, spec)
    assert same_bits(got, want_for(synthetic, spec, 65535, "nhwc"))
    report = pixscale.invert(tmp_path / "y.npy", tmp_path / "back.h5")
    with h5py.File(tmp_path / "back.h5") as handle:
        assert handle["images"].dtype == np.uint16
        assert np.array_equal(handle["images"][()], synthetic)
    assert not report.lossy


def test_synthetic_hits_both_ends(tmp_path: Path, synthetic: np.ndarray) -> None:
    got = convert_npy(tmp_path, synthetic, Spec("unit"))
    assert got.min() == 0.0 and got.max() == 1.0
    assert got[1, 0, 0, 0] == np.float32(1.0) and got[0, 0, 0, 0] == np.float32(0.0)


@pytest.mark.parametrize(
    "spec", [Spec("unit", bits=12), Spec("symmetric", bits=12), Spec("standardize", bits=12),
             Spec("standardize", scope="pixel", bits=12), Spec("range", from_data=True, bits=12)],
    ids=lambda s: f"{s.strategy}-{s.scope}",
)  # fmt: skip
def test_mnist12_with_bits(tmp_path: Path, mnist12: np.ndarray, spec: Spec) -> None:
    got = convert_npy(tmp_path, mnist12, spec)
    if spec.from_data:
        low, high = float(mnist12.min()), float(mnist12.max())
        want = expected(mnist12, low, high - low, 0.0, 1.0)
    else:
        want = want_for(mnist12, spec, 4095, "nhw")
    assert same_bits(got, want)
    record = json.loads((tmp_path / "y.npy.json").read_text())
    assert record["source"]["dtype"] == "uint16"
    assert record["source_dtype"] == "uint16" and record["bits"] == 12
    pixscale.invert(tmp_path / "y.npy", tmp_path / "back.npy")
    assert np.array_equal(np.load(tmp_path / "back.npy"), mnist12)


def test_unit_bits12_is_x_over_4095(tmp_path: Path, mnist12: np.ndarray) -> None:
    got = convert_npy(tmp_path, mnist12[:50], Spec(bits=12))
    assert same_bits(got, (mnist12[:50].astype(np.float64) / 4095).astype(np.float32))
    assert float(got.max()) == 1.0


# ------------------------------------------------------------------ statistics


def test_stats_exact_near_65535() -> None:
    """Sums of x² near 2**32 each: per-position uint64, reductions across positions exact."""
    x = np.full((300, 64, 64), 65535, np.uint16)
    x[::2] = 65534
    sums = PixelSums.empty(x.shape[1:], "uint16")
    sums.add(x)
    stats = sums.reduce("global", None)
    mean, std = exact_stats(x, (0, 1, 2))
    assert stats.mean.item() == mean.item() == 65534.5
    assert stats.std.item() == std.item() == 0.5
    assert int(sums.s2.sum(dtype=object)) == 150 * 4096 * (65535**2 + 65534**2)


def test_reduction_beyond_uint64_is_exact() -> None:
    """Totals over positions past 2**64 (4.3e9 values of 65535²) still come out exact."""
    shape = (2048, 2048)
    sums = PixelSums(
        count=2**20,
        s1=np.full(shape, 65535 * 2**20, np.uint64),
        s2=np.full(shape, 65535**2 * 2**20, np.uint64),
        minimum=np.full(shape, 65535, np.uint16),
        maximum=np.full(shape, 65535, np.uint16),
    )
    assert 4 * 1024 * 1024 * 65535**2 * 2**20 > 2**64
    stats = sums.reduce("global", None)
    assert stats.mean.item() == 65535.0 and stats.std.item() == 0.0


def test_image_stats_uint16(synthetic: np.ndarray) -> None:
    stats = image_stats(synthetic)
    mean, std = exact_stats(synthetic, (1, 2, 3))
    assert np.array_equal(stats.mean, mean) and np.array_equal(stats.std, std)
    assert stats.maximum[1] == 65535


def test_info_shows_uint16_statistics(tmp_path: Path, mnist16: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", mnist16)
    result = run_cli("info", tmp_path / "x.npy", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    mean, std = exact_stats(mnist16, (0, 1, 2))
    assert info["dtype"] == "uint16" and info["stats"]["max"] == [65535.0]
    assert info["stats"]["mean"] == [mean.item()] and info["stats"]["std"] == [std.item()]
    text = run_cli("info", tmp_path / "x.npy").stdout
    assert "uint16" in text and "max 65535" in text


# ------------------------------------------------------------------ proofs over 65,536 inputs


def test_kernels_proven_on_all_65536_inputs() -> None:
    rng = np.random.default_rng(3)
    low = rng.uniform(0, 65535, 70)
    span = rng.uniform(1, 20000, 70)
    affine = Affine(low, span, np.asarray(0.0), np.asarray(1.0), dtype_max=65535, value_max=65535)
    kernel = choose_kernel(affine)
    x = np.ascontiguousarray(
        np.broadcast_to(np.arange(65536, dtype=np.uint16)[:, None], (65536, 70))
    )
    got = np.empty(x.shape, np.float32)
    kernel(x, got)
    assert same_bits(got, reference(x, affine))
    assert is_exact(kernel, affine)


def test_uint8_trick_fails_on_uint16_and_is_not_chosen() -> None:
    """x * float32(1/65535) is wrong for many inputs; the search never picks it."""
    x = np.arange(65536, dtype=np.uint16)
    wrong = x * np.float32(1 / 65535)
    assert np.count_nonzero(wrong != (x / 65535).astype(np.float32)) > 0
    params = build_params(Spec(), Geometry((4,), "nf", None, "uint16"))
    assert Transform(params).kernel_name == "divide"


def test_float16_proven_and_lossy_inversion_reported(tmp_path: Path, mnist16: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", mnist16[:200])
    out = pixscale.Output(tmp_path / "y.h5", dtype="float16")
    pixscale.convert(tmp_path / "x.npy", out, Spec("standardize"))
    params, record = load_params(tmp_path / "y.h5")
    with h5py.File(tmp_path / "y.h5") as handle:
        got = handle["images"][()]
    want = (mnist16[:200] - record["source_low"]) / record["source_span"]  # float64
    assert same_bits(got, want.astype(np.float16))
    assert params.source_dtype == "uint16" and record["kernel"].endswith(">float16")
    affine = flat_affine(params)
    kernel = choose_half_kernel(affine)
    x = np.arange(65536, dtype=np.uint16)[:, None]
    out16 = np.empty(x.shape, np.float16)
    kernel(x, out16)
    assert same_bits(out16, reference16(x, affine))
    # 65,536 inputs, 11 significant bits: neighbours share float16 values
    unit = flat_affine(build_params(Spec(), Geometry((1,), "nf", None, "uint16")))
    assert float16_collisions(unit) > 0
    pixscale.convert(tmp_path / "x.npy", pixscale.Output(tmp_path / "u.h5", dtype="float16"))
    report = pixscale.invert(tmp_path / "u.h5", tmp_path / "back.npy")
    assert report.lossy and report.shared_float16 > 0


def test_per_pixel_proof_memory_is_bounded() -> None:
    """4,096 distinct per-pixel parameter pairs × 65,536 inputs = 268 M values: proven in
    blocks of 2 Mi values, so well under 100 MiB at any time."""
    import tracemalloc

    rng = np.random.default_rng(5)
    affine = Affine(
        rng.uniform(0, 1000, 512), rng.uniform(1, 5000, 512), np.asarray(0.0), np.asarray(1.0),
        dtype_max=65535, value_max=65535,
    )  # fmt: skip
    tracemalloc.start()
    choose_kernel(affine)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100 << 20


# ------------------------------------------------------------------ formats


def test_npz_h5_zarr_inputs(tmp_path: Path, mnist16: np.ndarray) -> None:
    x, y = mnist16[:300], np.arange(300) % 10
    want = expected(x, 0.0, 65535.0, 0.0, 1.0)
    np.savez_compressed(tmp_path / "d.npz", x_train=x, y_train=y)
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["images"] = x.astype(">u2")  # big-endian on disk, read back natively
        handle["labels"] = y
    inputs = [(tmp_path / "d.npz", {"key": "x_train"}), (tmp_path / "d.h5", {})]
    try:
        import zarr
    except ImportError:  # the zarr extra is optional
        zarr = None
    if zarr is not None:
        group = zarr.open_group(str(tmp_path / "d.zarr"), mode="w", zarr_format=3)
        group.create_array("images", data=x)
        inputs.append((tmp_path / "d.zarr", {}))
    for path, reading in inputs:
        out = tmp_path / f"{path.suffix[1:]}-out.h5"
        record = pixscale.convert(path, out, **reading)
        assert record["source"]["dtype"] == "uint16", path
        with h5py.File(out) as handle:
            assert same_bits(handle["images"][()], want), path
        back = tmp_path / f"{path.suffix[1:]}-back.npy"
        pixscale.invert(out, back)
        assert np.array_equal(np.load(back), x)
        assert pixscale.verify(out, path).ok


def test_big_endian_npy_and_stdin(tmp_path: Path, mnist12: np.ndarray) -> None:
    x = mnist12[:100]
    np.save(tmp_path / "be.npy", x.astype(">u2"))
    source = open_source(tmp_path / "be.npy")
    assert source.dtype == "uint16" and np.array_equal(next(source.chunks(1000)), x)
    with (tmp_path / "be.npy").open("rb") as stdin:
        done = run_process(
            ["convert", "-", "-o", "-", "--bits", "12", "-q"], stdin=stdin, text=False
        )
    assert done.returncode == 0, done.stderr
    (tmp_path / "out.npy").write_bytes(done.stdout)
    assert same_bits(np.load(tmp_path / "out.npy"), expected(x, 0.0, 4095.0, 0.0, 1.0))


def test_idx_refuses_uint16_inversion(tmp_path: Path, synthetic: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", synthetic)
    pixscale.convert(tmp_path / "x.npy", tmp_path / "y.h5")
    with pytest.raises(OutputError, match="IDX has no unsigned 16-bit type"):
        pixscale.invert(tmp_path / "y.h5", tmp_path / "back-idx3-ubyte")
    assert not (tmp_path / "back-idx3-ubyte").exists()


def test_other_dtypes_still_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "i16.npy", np.zeros((2, 3, 3), np.int16))
    with pytest.raises(InputError, match="dtype is int16, expected uint8 or uint16"):
        open_source(tmp_path / "i16.npy")
    assert source_dtype(">u2") == "uint16" and source_dtype("u4") is None


# ------------------------------------------------------------------ --bits


def test_bits_value_above_is_one_error_line_naming_the_file(
    tmp_path: Path, mnist12: np.ndarray
) -> None:
    x = mnist12[:64].copy()
    x[7, 3, 4] = 4096
    np.save(tmp_path / "x.npy", x)
    for strategy in ("unit", "standardize"):
        out = tmp_path / f"{strategy}.h5"
        args = ["convert", tmp_path / "x.npy", "-o", out, "--bits", "12", "-s", strategy]
        fails_with(args, "12-bit maximum 4095", names=[tmp_path / "x.npy", "4096"])
        assert not out.exists()


def test_bits_names_the_shard_holding_the_value(tmp_path: Path, mnist12: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", mnist12[:10])
    bad = mnist12[10:20].copy()
    bad[4, 0, 0] = 5000
    np.save(tmp_path / "b.npy", bad)
    with pytest.raises(InputError, match=r"b\.npy: value 5000 \(image 14\)"):
        pixscale.convert([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "y.h5", Spec(bits=12))


def test_bits_on_uint8(tmp_path: Path, sample_npy: Path) -> None:
    args = ["convert", sample_npy, "-o", tmp_path / "y.h5", "--bits", "12"]
    fails_with(args, "--bits 12 is more than uint8 data holds (8 bits)")
    assert not (tmp_path / "y.h5").exists()
    x = np.load(sample_npy) // 2  # 0..127
    np.save(tmp_path / "x7.npy", x)
    record = pixscale.convert(tmp_path / "x7.npy", tmp_path / "y7.npy", Spec(bits=7))
    assert record["source_span"] == 127.0 and record["bits"] == 7
    assert same_bits(np.load(tmp_path / "y7.npy"), expected(x, 0.0, 127.0, 0.0, 1.0))
    pixscale.invert(tmp_path / "y7.npy", tmp_path / "back.npy")
    back = np.load(tmp_path / "back.npy")
    assert back.dtype == np.uint8 and np.array_equal(back, x)
    with pytest.raises(InputError, match=r"sample\.npy: value \d+ \(image 0\) is above the 7-bit"):
        pixscale.convert(sample_npy, tmp_path / "z.npy", Spec(bits=7))


def test_bits_out_of_range_is_a_usage_error(tmp_path: Path, sample_npy: Path) -> None:
    assert run_cli("convert", sample_npy, "-o", tmp_path / "y.h5", "--bits", "17").exit_code == 2
    with pytest.raises(ParamsError, match="--bits must be an integer from 1 to 16"):
        Spec(bits=0)


def test_uint8_records_unchanged(tmp_path: Path, sample_npy: Path) -> None:
    record = pixscale.convert(sample_npy, tmp_path / "y.npy")
    assert "source_dtype" not in record and "bits" not in record
    assert record["source"]["dtype"] == "uint8" and record["kernel"] == "divide"


# ------------------------------------------------------------------ reuse, storage, verify


def test_params_from_refuses_the_other_dtype(
    tmp_path: Path, mnist16: np.ndarray, sample_npy: Path
) -> None:
    np.save(tmp_path / "x16.npy", mnist16[:100])
    fit = run_cli("fit", tmp_path / "x16.npy", "-s", "standardize", "-o", tmp_path / "p16.json")
    assert fit.exit_code == 0, fit.output
    args = ["convert", sample_npy, "-o", tmp_path / "y.h5", "--params-from", tmp_path / "p16.json"]
    fails_with(args, "parameters for uint16 pixels, data is uint8")
    pixscale.fit(sample_npy, tmp_path / "p8.json", Spec("standardize"))
    with pytest.raises(ParamsError, match="parameters for uint8 pixels, data is uint16"):
        pixscale.convert(tmp_path / "x16.npy", tmp_path / "z.h5", params_from=tmp_path / "p8.json")
    # the same dtype: applied unchanged, bit for bit
    np.save(tmp_path / "t16.npy", mnist16[100:200])
    pixscale.convert(tmp_path / "t16.npy", tmp_path / "t.npy", params_from=tmp_path / "p16.json")
    record = json.loads((tmp_path / "p16.json").read_text())
    want = expected(mnist16[100:200], record["source_low"], record["source_span"], 0.0, 1.0)
    assert same_bits(np.load(tmp_path / "t.npy"), want)


def test_store_uint8_refused_with_one_line(tmp_path: Path, synthetic: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", synthetic)
    args = ["convert", tmp_path / "x.npy", "-o", tmp_path / "p.h5", "--store", "uint8"]
    fails_with(args, "uint16 pixels do not fit uint8")
    assert not (tmp_path / "p.h5").exists()


def test_verify_counts_values_outside_the_allowed_ones(tmp_path: Path, mnist12: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", mnist12[:50])
    pixscale.convert(tmp_path / "x.npy", tmp_path / "y.npy", Spec(bits=12))
    report = pixscale.verify(tmp_path / "y.npy", tmp_path / "x.npy")
    assert report.ok
    detail = dict((name, text) for name, _, text in report.checks)
    assert "among the 4,096" in detail["values allowed by the record"]
    data = np.load(tmp_path / "y.npy", mmap_mode="r+")
    data[0, 0, 0] = np.float32(4096 / 4095)  # an input of 4096: beyond 12 bits
    data[0, 0, 1] = np.float32(0.5)  # between two allowed outputs
    data.flush()
    del data
    report = pixscale.verify(tmp_path / "y.npy")
    assert "values allowed by the record" in report.failed
    assert (
        "2 values are not among"
        in dict((n, t) for n, _, t in report.checks)["values allowed by the record"]
    )


# ------------------------------------------------------------------ the library


def test_scaler_on_uint16_arrays(mnist16: np.ndarray, mnist12: np.ndarray) -> None:
    x = mnist16[:500]
    scaler = pixscale.Scaler("standardize", scope="pixel").fit(x)
    y = scaler.transform(x)
    assert same_bits(y, want_for(x, Spec("standardize", scope="pixel"), 65535, "nhw"))
    back = scaler.inverse_transform(y)
    assert back.dtype == np.uint16 and np.array_equal(back, x)
    with pytest.raises(ParamsError, match="parameters for uint16 pixels, data is uint8"):
        scaler.transform(x.astype(np.uint8))
    twelve = pixscale.Scaler(bits=12)
    assert same_bits(twelve.fit_transform(mnist12[:10]), expected(mnist12[:10], 0, 4095.0, 0, 1))
    bad = mnist12[:10].copy()
    bad[2, 1, 1] = 4096
    with pytest.raises(InputError, match="value 4096"):
        twelve.transform(bad)
    with pytest.raises(InputError, match="uint8 or uint16"):
        pixscale.Scaler().fit(np.zeros((2, 3, 3), np.int16))


def test_partial_fit_matches_fit(mnist16: np.ndarray) -> None:
    whole = pixscale.Scaler("standardize", scope="channel").fit(mnist16[:600])
    parts = pixscale.Scaler("standardize", scope="channel")
    for start in range(0, 600, 150):
        parts.partial_fit(mnist16[start : start + 150])
    assert np.array_equal(whole.fitted().source_low, parts.fitted().source_low)
    assert np.array_equal(whole.fitted().source_span, parts.fitted().source_span)
