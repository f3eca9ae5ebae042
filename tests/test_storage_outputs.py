"""--dtype float16 and --store uint8 end to end: written by convert, read by pixscale.open
(and xarray + h5netcdf), bit-exact against the float64 reference on real MNIST; info,
verify, invert, preview and --params-from accept them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import pixscale
from pixscale.cli import main
from pixscale.core.transform import Transform

SPECS: list[tuple[str, str, dict[str, Any]]] = [
    ("unit", "global", {}),
    ("symmetric", "global", {}),
    ("none", "global", {}),
    ("range", "global", {"source_range": (10, 200), "target_range": (-2, 3)}),
    ("range", "channel", {"from_data": True}),
    ("range", "image", {"from_data": True}),
    ("standardize", "global", {}),
    ("standardize", "channel", {}),
    ("standardize", "pixel", {}),
    ("standardize", "image", {}),
]
IDS = [f"{s}-{c}" + ("-from-data" if o.get("from_data") else "") for s, c, o in SPECS]


def bits(values: np.ndarray) -> np.ndarray:
    return values.view(np.uint16 if values.dtype == np.float16 else np.uint32)


@pytest.fixture(scope="module")
def mnist_npy(tmp_path_factory: pytest.TempPathFactory, mnist_train: Any) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("mnist")
    np.save(folder / "x.npy", mnist_train[0])
    np.save(folder / "y.npy", mnist_train[1])
    return folder / "x.npy", folder / "y.npy"


@pytest.mark.parametrize(("strategy", "scope", "options"), SPECS, ids=IDS)
@pytest.mark.parametrize("ext", ["h5", "npy"])
def test_float16_and_packed_outputs_equal_the_float64_reference(
    tmp_path: Path,
    mnist_npy: tuple[Path, Path],
    mnist_train: Any,
    strategy: str,
    scope: str,
    options: dict[str, Any],
    ext: str,
) -> None:
    x, y = mnist_npy
    spec = pixscale.Spec(strategy, scope, **options)
    pixscale.convert(x, tmp_path / f"f32.{ext}", spec, labels=y)
    pixscale.convert(x, pixscale.Output(tmp_path / f"f16.{ext}", dtype="float16"), spec, labels=y)
    pixscale.convert(x, pixscale.Output(tmp_path / f"u8.{ext}", store="uint8"), spec, labels=y)
    images = mnist_train[0]
    with pixscale.open(tmp_path / f"f32.{ext}") as f32:
        params, float32 = f32.params, f32[:]
    # the float64 reference, independently broadcast
    exact = reference64(params, images)
    assert np.array_equal(bits(float32), bits(exact.astype(np.float32)))
    with pixscale.open(tmp_path / f"f16.{ext}") as f16:
        assert f16.dtype == np.float16
        assert np.array_equal(bits(f16[:]), bits(exact.astype(np.float16)))
    with pixscale.open(tmp_path / f"u8.{ext}") as u8:
        assert u8.packed and u8.dtype == np.float32
        assert np.array_equal(bits(u8[:]), bits(float32))
        picks = [59999, 3, 3, 0, 17]
        assert np.array_equal(bits(u8[picks]), bits(float32[picks]))
        assert np.array_equal(bits(u8[5]), bits(float32[5]))
    sizes = [(tmp_path / f"{kind}.{ext}").stat().st_size for kind in ("f32", "f16", "u8")]
    assert sizes[1] < 0.52 * sizes[0] and sizes[2] < 0.27 * sizes[0]
    if ext == "h5" and scope in ("global", "channel"):
        xr = pytest.importorskip("xarray")
        pytest.importorskip("h5netcdf")
        with xr.open_dataset(tmp_path / "u8.h5", engine="h5netcdf", phony_dims="sort") as ds:
            decoded = ds["images"].values.astype(np.float32)
        assert np.array_equal(bits(decoded), bits(float32))


def reference64(params: pixscale.Params, images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1).astype(np.float64)
    low, span = params.source_low, params.source_span
    low = low[:, None] if params.scope == "image" else low.reshape(-1)
    span = span[:, None] if params.scope == "image" else span.reshape(-1)
    values = (flat - low) * params.target_span / span + params.target_low
    return values.reshape(images.shape)


def test_per_channel_packing_gives_cf_readers_one_view_per_channel(
    tmp_path: Path, photo_npy: Path
) -> None:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    spec = pixscale.Spec("standardize", "channel")
    pixscale.convert(photo_npy, tmp_path / "f32.h5", spec)
    record = pixscale.convert(photo_npy, pixscale.Output(tmp_path / "u8.h5", store="uint8"), spec)
    assert record["output"]["packing"]["cf_variables"] == ["images_c0", "images_c1", "images_c2"]
    want = pixscale.open(tmp_path / "f32.h5")[:]
    assert np.array_equal(bits(pixscale.open(tmp_path / "u8.h5")[:]), bits(want))
    with xr.open_dataset(tmp_path / "u8.h5", engine="h5netcdf", phony_dims="sort") as ds:
        for c in range(3):
            got = ds[f"images_c{c}"].values.astype(np.float32)
            assert np.array_equal(bits(got), bits(np.ascontiguousarray(want[..., c])))
    with h5py.File(tmp_path / "u8.h5") as handle:
        assert handle["images"].nbytes == want.size  # stored once, as uint8


@pytest.mark.parametrize("store", ["float", "uint8"])
def test_no_object_of_an_hdf5_output_carries_a_time(
    tmp_path: Path, photo_npy: Path, store: str
) -> None:
    """Byte-reproducible outputs (for Make and data-versioning tools): the per-channel views
    of a packed output included."""
    out = tmp_path / "x.h5"
    pixscale.convert(
        photo_npy, pixscale.Output(out, store=store), pixscale.Spec("standardize", "channel")
    )
    with h5py.File(out) as handle:
        names = ["/", *handle]
        times = {name: h5py.h5o.get_info(handle[name].id).mtime for name in names}
    assert ("images_c0" in times) == (store == "uint8")  # the views exist only when packed
    assert times == dict.fromkeys(names, 0)


def test_commands_accept_the_smaller_outputs(tmp_path: Path, sample_npy: Path) -> None:
    runner = CliRunner()
    for name, flags in (("f16.h5", ["--dtype", "float16"]), ("u8.npy", ["--store", "uint8"])):
        out = tmp_path / name
        result = runner.invoke(main, ["convert", str(sample_npy), "-o", str(out), *flags])
        assert result.exit_code == 0, result.output
        result = runner.invoke(main, ["verify", str(out), "--source", str(sample_npy)])
        assert result.exit_code == 0, result.output
        back = tmp_path / f"back-{name}.npy"
        result = runner.invoke(main, ["invert", str(out), "-o", str(back)])
        assert result.exit_code == 0, result.output
        assert np.array_equal(np.load(back), np.load(sample_npy))
        result = runner.invoke(main, ["info", str(out), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["store"] == ("uint8" if "u8" in name else "float")
        result = runner.invoke(main, ["preview", str(out), "-o", str(tmp_path / f"{name}.png")])
        assert result.exit_code == 0, result.output
        again = tmp_path / f"again-{name}.h5"
        result = runner.invoke(
            main, ["convert", str(sample_npy), "-o", str(again), "--params-from", str(out)]
        )
        assert result.exit_code == 0, result.output


def test_refusals_come_before_anything_is_written(tmp_path: Path, sample_npy: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "o.h5"
    result = runner.invoke(
        main,
        ["convert", str(sample_npy), "-o", str(out), "--dtype", "float16"]
        + ["-s", "range", "--to", "0", "100000"],
    )
    assert result.exit_code == 1 and "float16's range" in result.output
    assert list(tmp_path.iterdir()) == [sample_npy]
    result = runner.invoke(
        main,
        ["convert", str(sample_npy), "-o", str(out), "--store", "uint8"]
        + ["-s", "range", "--from", "50", "100", "--clip"],
    )
    assert result.exit_code == 1 and "--store uint8" in result.output
    assert list(tmp_path.iterdir()) == [sample_npy]


def test_packed_reader_is_fork_and_pickle_safe(tmp_path: Path, sample_npy: Path) -> None:
    import pickle

    pixscale.convert(sample_npy, pixscale.Output(tmp_path / "u8.h5", store="uint8"))
    data = pixscale.open(tmp_path / "u8.h5")
    first = data[0]
    again = pickle.loads(pickle.dumps(data))
    assert np.array_equal(bits(again[0]), bits(first))
    assert Transform(data.params).kernel_name == data.record["kernel"]


def test_contiguous_h5_is_memory_mapped_and_gives_arrays_of_their_own(
    tmp_path: Path, sample_npy: Path
) -> None:
    for name, options in (("c.h5", {}), ("z.h5", {"compression": "lzf"}), ("n.npy", {})):
        out = tmp_path / name
        pixscale.convert(sample_npy, pixscale.Output(out, **options), pixscale.Spec("standardize"))
        with pixscale.open(out) as data:
            mapped = isinstance(data._data(), np.memmap)
            assert mapped is (options == {})  # chunked HDF5 is read through h5py
            if out.suffix == ".h5":
                with h5py.File(out) as handle:
                    want = handle["images"][:]
            else:
                want = np.load(out)
            for index in (0, -1, slice(2, 9)):
                got = data[index]
                assert got.flags.writeable and not isinstance(got, np.memmap)
                assert np.array_equal(got.view(np.uint32), want[index].view(np.uint32))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"store": "uint9"}, "output.store 'uint9' is not one of"),
        ({"store": "float"}, "images are uint8 but the record's output.store is 'float'"),
        ({"source_resize": {"size": [-1, 5]}}, "source.resize is not understood"),
    ],
)
def test_a_tampered_packed_record_is_refused_by_every_reader(
    tmp_path: Path, sample_npy: Path, change: dict[str, Any], message: str
) -> None:
    out = tmp_path / "p.npy"
    pixscale.convert(sample_npy, pixscale.Output(out, store="uint8"), pixscale.Spec("standardize"))
    sidecar = tmp_path / "p.npy.json"
    record = json.loads(sidecar.read_text())
    if "store" in change:
        record["output"]["store"] = change["store"]
    else:
        record["source"]["resize"] = change["source_resize"]
    sidecar.write_text(json.dumps(record))
    for command in (["verify", str(out)], ["invert", str(out), "-o", str(tmp_path / "b.npy")]):
        result = CliRunner().invoke(main, command)
        lines = result.stderr.splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith(f"Error: {out}: ") and message in lines[0]
    assert not (tmp_path / "b.npy").exists()
    with pytest.raises(pixscale.errors.InputError, match=message):
        pixscale.open(out)
