"""What reads outputs and parameters back checks before it trusts.

- ``verify`` fails a record that carries no checksum: nothing says its data is what was
  written.
- ``invert`` checks the recorded checksum of the stored data in the pass that inverts it,
  and commits nothing on a mismatch or without a checksum; it refuses a record that does
  not describe its data (edited defining numbers, an edited ``scale``, a wrong shape).
- A standard deviation is never negative: a params file saying so is refused however it
  enters (``--params-from`` a JSON or an output, ``Scaler.load``, ``invert``), and so is a
  record whose derived ``scale``/``offset`` or fitted statistics disagree with its four
  defining numbers.
- ``pixscale.open`` indexes every kind of output alike, as numpy indexes the whole array,
  and takes bytes paths.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import zarr

import pixscale
from pixscale.core.layouts import convert_layout
from pixscale.store.reader import open_converted

from .conftest import (
    assert_clean_failure,
    assert_unchanged,
    cli,
    load_json,
    snapshot,
    unit_values,
)

Record = dict[str, Any]


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def digits(tmp_path: Path, sample_arrays: tuple[np.ndarray, np.ndarray]) -> Path:
    """The first 60 sample images as a uint8 .npy, in its own folder."""
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "digits.npy"
    np.save(path, sample_arrays[0][:60])
    return path


def convert(source: Path, target: Path, *options: object) -> Path:
    target.parent.mkdir(exist_ok=True)
    result = cli(["convert", source, "-o", target, "-q", *options])
    assert result.code == 0, result.describe()
    return target


def edit_record(path: Path, mutate: Callable[[Record], None]) -> None:
    """Change the record of an output where it lives: the sidecar, or the attribute (and
    the HDF5 ``scale``/``offset`` attributes kept in step, as a careful editor would)."""
    if path.suffix == ".npy":
        sidecar = path.with_name(path.name + ".json")
        record = load_json(sidecar)
        mutate(record)
        sidecar.write_text(json.dumps(record))
    elif path.suffix == ".h5":
        with h5py.File(path, "r+") as handle:
            record = json.loads(handle.attrs["pixscale_params"])
            mutate(record)
            handle.attrs["pixscale_params"] = json.dumps(record)
            for name in ("scale", "offset"):
                if isinstance(record.get(name), float):
                    handle.attrs[name] = record[name]
    else:
        group = zarr.open_group(str(path), mode="r+")
        record = json.loads(group.attrs["pixscale_params"])
        mutate(record)
        group.attrs["pixscale_params"] = json.dumps(record)


def drop_checksum(record: Record) -> None:
    del record["output"]["checksum"]


def replace_stored(path: Path, index: tuple[int, ...], value: Any) -> None:
    """Change one stored value in place (the record untouched)."""
    if path.suffix == ".npy":
        data = np.load(path, mmap_mode="r+")
        data[index] = value
        data.flush()
        del data
    elif path.suffix == ".h5":
        with h5py.File(path, "r+") as handle:
            handle["images"][index] = value
    else:
        zarr.open_group(str(path), mode="r+")["images"][index] = value


def plausible_other_value(path: Path, index: tuple[int, ...]) -> Any:
    """Another value the record's parameters can produce: only the checksum tells."""
    with pixscale.open(path) as data:
        stored = np.asarray(data[index[0]])[index[1:]]
    if path.suffix == ".npy" and pixscale.open(path).packed:
        return np.uint8((int(np.load(path, mmap_mode="r")[index]) + 1) % 256)
    return np.float32(1.0) if stored != np.float32(1.0) else np.float32(0.0)


def invert_refused(tmp_path: Path, output: Path, reasons: tuple[str, ...]) -> None:
    """``invert`` exits 1 with one line naming ``output`` and the reason, writes nothing."""
    target = tmp_path / "out" / "back.npy"
    target.parent.mkdir(exist_ok=True)
    before = snapshot(tmp_path)
    result = cli(["invert", output, "-o", target])
    assert_clean_failure(result, names=[output.name], reasons=reasons)
    assert_unchanged(tmp_path, before)


# --------------------------------------------------------------------------- checksums

CHECKSUMMED = ["x.npy", "x.h5", "x.zarr"]


@pytest.mark.parametrize("name", CHECKSUMMED)
def test_verify_fails_a_record_without_checksum(tmp_path: Path, digits: Path, name: str) -> None:
    output = convert(digits, tmp_path / "conv" / name)
    edit_record(output, drop_checksum)
    before = snapshot(tmp_path)
    result = cli(["verify", output, "-q"])
    assert_clean_failure(result, names=[output.name], reasons=["carries no checksum"])
    assert_unchanged(tmp_path, before)
    report = pixscale.verify(output)
    assert not report.ok and report.failed == ["checksum"]


@pytest.mark.parametrize("name", CHECKSUMMED)
def test_invert_refuses_a_record_without_checksum(tmp_path: Path, digits: Path, name: str) -> None:
    output = convert(digits, tmp_path / "conv" / name)
    back = tmp_path / "intact.npy"
    result = cli(["invert", output, "-o", back])  # the control: intact, it inverts
    assert result.code == 0, result.describe()
    assert np.array_equal(np.load(back), np.load(digits))
    back.unlink()
    edit_record(output, drop_checksum)
    invert_refused(tmp_path, output, ("carries no checksum",))


def test_invert_refuses_a_malformed_checksum(tmp_path: Path, digits: Path) -> None:
    output = convert(digits, tmp_path / "conv" / "x.npy")
    edit_record(output, lambda r: r["output"].update(checksum={"algorithm": "md5", "value": 1}))
    invert_refused(tmp_path, output, ("checksum is malformed",))


@pytest.mark.parametrize(
    "name, options",
    [
        ("x.npy", ()),
        ("x.h5", ()),
        ("x.h5", ("--compression", "gzip")),
        ("x.zarr", ()),
        ("x16.h5", ("--dtype", "float16")),
        ("packed.npy", ("--store", "uint8")),
    ],
)
def test_invert_refuses_data_verify_calls_damaged(
    tmp_path: Path, digits: Path, name: str, options: tuple[str, ...]
) -> None:
    """A value the parameters can produce, changed: every value inverts, only the
    checksum tells; ``verify`` says so and ``invert`` commits nothing."""
    output = convert(digits, tmp_path / "conv" / name, *options)
    index = (37, 14, 14)
    replace_stored(output, index, plausible_other_value(output, index))
    assert pixscale.verify(output).failed == ["checksum"]
    invert_refused(tmp_path, output, ("checksum mismatch",))


# --------------------------------------------------------------------------- inconsistent records


def shift_the_map(record: Record) -> None:
    """Defining numbers edited with their derived scale and offset (and the target range)
    kept in step: a self-consistent record that does not describe the data."""
    record["source_span"] = 254.0
    record["scale"] = 1.0 / 254.0
    record["offset"] = 0.0


INCONSISTENT: dict[str, tuple[Callable[[Record], None], tuple[str, ...]]] = {
    "edited scale": (lambda r: r.update(scale=0.5), ("scale disagrees with target_span",)),
    "edited offset": (lambda r: r.update(offset=0.25), ("offset disagrees with target_low",)),
    "edited source_low": (
        lambda r: r.update(source_low=3.0),
        ("strategy unit maps with source_low, source_span, target_low, target_span = 0, 255",),
    ),
    "edited map, scale in step": (
        shift_the_map,
        ("stored values are not ones the record's parameters produce",),
    ),
    "output.shape not the data's": (
        lambda r: r["output"].update(shape=[7, 28, 28]),
        ("inconsistent record (shape as recorded",),
    ),
}


@pytest.mark.parametrize("name", ["x.npy", "x.h5"])
@pytest.mark.parametrize("case", sorted(INCONSISTENT))
def test_invert_refuses_an_inconsistent_record(
    tmp_path: Path, digits: Path, name: str, case: str
) -> None:
    # a map given by the user (range) is free to be any map: only the data can refute it
    given = ("-s", "range", "--from", "0", "255", "--to", "0", "1")
    output = convert(digits, tmp_path / "conv" / name, *(given if "in step" in case else ()))
    mutate, reasons = INCONSISTENT[case]
    edit_record(output, mutate)
    invert_refused(tmp_path, output, reasons)


# --------------------------------------------------------------------------- params files


@pytest.fixture
def fitted(tmp_path: Path, digits: Path) -> Path:
    """A genuine params JSON from ``fit -s standardize``."""
    path = tmp_path / "p.json"
    result = cli(["fit", digits, "-s", "standardize", "-o", path, "-q"])
    assert result.code == 0, result.describe()
    return path


def negate_std(record: Record) -> None:
    """The std negated everywhere it appears, derived numbers in step."""
    record["source_span"] = -record["source_span"]
    record["scale"] = -record["scale"]
    record["offset"] = -record["offset"]
    record["stats"]["std"] = -record["stats"]["std"]
    record["stats"]["std_unit"] = -record["stats"]["std_unit"]


def double_std(record: Record) -> None:
    """source_span doubled with scale and offset in step: only the stats disagree."""
    record["source_span"] *= 2
    record["scale"] = record["target_span"] / record["source_span"]
    record["offset"] = record["target_low"] - record["source_low"] * record["scale"]


PARAMS_EDITS: dict[str, tuple[Callable[[Record], None], str]] = {
    "negative std": (lambda r: r.update(source_span=-r["source_span"]), "negative std"),
    "negative std, all in step": (negate_std, "negative std"),
    "negative stats.std": (lambda r: r["stats"].update(std=-1.0), "stats.std holds a negative"),
    "stats.std a string": (lambda r: r["stats"].update(std="wide"), "stats.std must hold numbers"),
    "std not the recorded stats": (double_std, "source_span disagrees with the recorded stats"),
    "edited scale": (lambda r: r.update(scale=1.0), "scale disagrees with target_span"),
    "edited offset": (lambda r: r.update(offset=0.0), "offset disagrees with target_low"),
    "edited scale array": (lambda r: r.update(scale=[1.0, 2.0]), "scale holds 2 values"),
}


def edit_json(path: Path, mutate: Callable[[Record], None]) -> None:
    record = load_json(path)
    mutate(record)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("case", sorted(PARAMS_EDITS))
def test_params_from_and_scaler_load_refuse_alike(
    tmp_path: Path, digits: Path, fitted: Path, case: str
) -> None:
    mutate, reason = PARAMS_EDITS[case]
    edit_json(fitted, mutate)
    before = snapshot(tmp_path)
    result = cli(["convert", digits, "-o", tmp_path / "y.npy", "--params-from", fitted])
    assert_clean_failure(result, names=[fitted.name], reasons=[reason])
    assert_unchanged(tmp_path, before)
    with pytest.raises(pixscale.ParamsError, match=rf"p\.json: .*{reason}"):
        pixscale.Scaler.load(fitted)


@pytest.mark.parametrize("case", ["negative std, all in step", "edited scale"])
def test_an_output_with_such_a_record_is_refused_everywhere(
    tmp_path: Path, digits: Path, case: str
) -> None:
    output = convert(digits, tmp_path / "conv" / "s.npy", "-s", "standardize")
    check_genuine_records_load(tmp_path, digits, output)
    mutate, reason = PARAMS_EDITS[case]
    edit_record(output, mutate)
    before = snapshot(tmp_path)
    again = cli(["convert", digits, "-o", tmp_path / "y.npy", "--params-from", output])
    assert_clean_failure(again, names=[output.name], reasons=[reason])
    invert = cli(["invert", output, "-o", tmp_path / "back.npy"])
    assert_clean_failure(invert, names=[output.name], reasons=[reason])
    assert_unchanged(tmp_path, before)
    with pytest.raises(pixscale.ParamsError, match=reason):
        pixscale.Scaler.load(output)
    with pytest.raises(pixscale.ParamsError, match=reason):
        pixscale.open(output)


def check_genuine_records_load(tmp_path: Path, digits: Path, output: Path) -> None:
    """Controls: the genuine output, range from the data, constant images (zero std)."""
    scaler = pixscale.Scaler.load(output)
    x = np.load(digits)
    assert np.array_equal(scaler.inverse_transform(scaler.transform(x)), x)
    constant = tmp_path / "in" / "constant.npy"
    np.save(constant, np.full((4, 8, 8), 7, np.uint8))
    for args in (
        [digits, "-s", "range", "--from-data"],
        [constant, "-s", "standardize"],
        [constant, "-s", "range", "--from-data"],
    ):
        path = tmp_path / "again.json"
        result = cli(["fit", *args, "-o", path, "-q"])
        assert result.code == 0, result.describe()
        pixscale.Scaler.load(path)
        path.unlink()
    constant.unlink()


# --------------------------------------------------------------------------- pixscale.open

#: (file name, convert options): every kind of output ``open`` reads, by its read path.
KINDS = {
    "npy": ("k.npy", ()),
    "h5 (memory-mapped)": ("k.h5", ()),
    "h5 (compressed)": ("k.h5", ("--compression", "gzip")),
    "zarr": ("k.zarr", ()),
    "float16": ("k.h5", ("--dtype", "float16")),
    "packed": ("k.npy", ("--store", "uint8")),
    "packed per-image": ("k.h5", ("--store", "uint8", "-s", "standardize", "--scope", "image")),
    "packed nchw": ("k.h5", ("--store", "uint8", "--layout", "nchw")),
    "zarr nchw": ("k.zarr", ("--layout", "nchw")),
}

N = 60

#: Indexes whose result must be numpy's on the whole array.
VALID: list[Any] = [
    0,
    N - 1,
    -1,
    -N,
    np.int8(-3),
    np.uint64(5),
    np.int64(7),
    slice(None),
    slice(3, 17),
    slice(None, None, 7),
    slice(None, None, -1),
    slice(None, None, -2),
    slice(50, 10, -3),
    slice(-5, None),
    slice(10, 2),
    slice(-1000, 1000),
    [],
    (),
    [5, 1, 1, N - 1, -1, 0],
    np.array([3, 2, 59], np.uint16),
    np.array([], np.int64),
    range(10, 0, -4),
    np.arange(N) % 3 == 0,
    np.zeros(N, bool),
    [True] * N,
    (4, 14),
    (slice(0, 5), 14, slice(None, None, -1)),
    ([2, 0, 2], slice(3, 9)),
    (Ellipsis, 3),
    Ellipsis,
]

#: (index, exception, phrase of its message)
INVALID: list[tuple[Any, type[Exception], str]] = [
    (N, IndexError, f"image index {N} is out of range for {N} images"),
    (-N - 1, IndexError, f"image index {-N - 1} is out of range"),
    (np.uint64(2**64 - 1), IndexError, "image index 18446744073709551615 is out of range"),
    (np.int64(-(2**63)), IndexError, "is out of range"),
    (2**100, IndexError, "is out of range"),
    ([0, N], IndexError, f"image index {N} is out of range"),
    ([2**70], IndexError, "is out of range"),
    (np.array([-N - 1]), IndexError, "is out of range"),
    ([True, False], IndexError, f"one value per image ({N}), not 2"),
    (True, TypeError, "cannot select images with a lone boolean (True)"),
    (np.bool_(False), TypeError, "a lone boolean (False)"),
    (1.0, TypeError, "cannot select images with float"),
    ([1.0, 2.0], TypeError, "float64 values"),
    (np.array([[0, 1], [2, 3]]), TypeError, "must be 1-D"),
    (np.ones((N, 2), bool), TypeError, "must be 1-D"),
    (None, TypeError, "cannot select images with NoneType"),
    ("3", TypeError, "cannot select images with str"),
    (slice(0.5, 2), TypeError, "bounds and step must be integers"),
]


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from .conftest import read_sample

    root = tmp_path_factory.mktemp("kinds")
    source = root / "digits.npy"
    np.save(source, read_sample()[0][:N])
    made = {}
    for kind, (name, options) in KINDS.items():
        made[kind] = convert(source, root / kind.replace(" ", "_") / name, *options)
    return made


def whole(path: Path) -> np.ndarray:
    """Every value of ``path`` in its output layout, read by the reader invert and verify
    use (chunk by chunk), not by ``open``."""
    converted = open_converted(path)
    values = np.concatenate(list(converted.chunks(7)))
    return convert_layout(values, converted.params.layout, converted.layout)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_open_indexes_every_kind_as_numpy_does(
    kinds: dict[str, Path], kind: str, sample_arrays: tuple[np.ndarray, np.ndarray]
) -> None:
    path = kinds[kind]
    expected = whole(path)
    if kind in ("npy", "h5 (memory-mapped)", "h5 (compressed)", "zarr"):
        assert np.array_equal(expected, unit_values(sample_arrays[0][:N]))
    with pixscale.open(path) as data:
        assert len(data) == N and data.shape == expected.shape
        for index in VALID:
            try:
                wanted = expected[index]
            except IndexError:  # within an image (one channel of NCHW): numpy's refusal
                with pytest.raises(IndexError):
                    data[index]
                continue
            found = data[index]
            assert type(found) is np.ndarray, index
            assert found.dtype == data.dtype and found.shape == wanted.shape, index
            assert same_bits(found, wanted), index
        for index, kind_of_error, phrase in INVALID:
            with pytest.raises(kind_of_error, match=_escaped(phrase)):
                data[index]
        with pytest.raises(ValueError, match="step cannot be zero"):
            data[::0]
        for index in (3, slice(2, 5), slice(None, None, -1), [4, 2]):
            found = data[index]  # arrays of their own: changing one never reaches the file
            assert found.flags.writeable and type(found) is np.ndarray
            found[...] = 0
        assert same_bits(data[:], expected)


def same_bits(found: np.ndarray, wanted: np.ndarray) -> bool:
    return bool(
        np.array_equal(
            np.ascontiguousarray(found).view(np.uint8), np.ascontiguousarray(wanted).view(np.uint8)
        )
    )


def _escaped(phrase: str) -> str:
    import re

    return re.escape(phrase)


@pytest.mark.parametrize("form", ["bytes", "PathLike of bytes"])
def test_open_takes_bytes_paths_as_os_does(kinds: dict[str, Path], form: str) -> None:
    path = kinds["h5 (memory-mapped)"]

    class BytesPath(os.PathLike[bytes]):
        def __fspath__(self) -> bytes:
            return os.fsencode(path)

    given: Any = {"bytes": os.fsencode(path), "PathLike of bytes": BytesPath()}[form]
    for each in (given, str(path), path):
        with pixscale.open(each) as data:
            assert data.path == path
            assert np.array_equal(data[0:3], whole(path)[0:3])
    with pytest.raises(TypeError, match="str, bytes or os.PathLike"):
        pixscale.open(3)  # type: ignore[arg-type]
