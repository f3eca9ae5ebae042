"""Checks must not pass on bad data.

``verify`` exists to catch outputs that no longer hold what their record says: an edited value,
a tampered record, one changed pixel anywhere. ``invert --verify`` that finds differences must
not leave the (wrong) inverted output behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from .conftest import (
    SAMPLE_IMAGES,
    assert_clean_failure,
    assert_unchanged,
    cli,
    load_json,
    snapshot,
    unit_values,
)

FAILED = "verification failed ("
#: An image the default 64-image sample of ``verify --source`` does not look at.
UNSAMPLED = 1


@pytest.fixture
def converted(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The bundled 1,000-image sample converted with -s unit (suffix from the test's param)."""
    suffix = getattr(request, "param", ".npy")
    out = tmp_path / "out" / f"x{suffix}"
    out.parent.mkdir()
    result = cli(["convert", SAMPLE_IMAGES, "-o", out, "-q"])
    assert result.code == 0, result.describe()
    return out


def edit_value(path: Path, index: tuple[int, ...], value: float) -> None:
    if path.suffix == ".npy":
        data = np.load(path, mmap_mode="r+")
        data[index] = value
        data.flush()
        del data
    else:
        with h5py.File(path, "r+") as handle:
            handle["images"][index] = value


def other_valid_value(path: Path, index: tuple[int, ...]) -> float:
    """A value that -s unit could have produced, but not the one stored at ``index``."""
    current = np.load(path)[index] if path.suffix == ".npy" else h5py.File(path)["images"][index]
    pixel = int(round(float(current) * 255))
    return float(unit_values(np.array([(pixel + 128) % 256]))[0])


@pytest.mark.parametrize("converted", [".npy", ".h5"], indirect=True)
def test_control_untouched_output_verifies(converted: Path) -> None:
    assert cli(["verify", converted]).code == 0
    result = cli(["verify", converted, "--source", SAMPLE_IMAGES])
    assert result.code == 0, result.describe()


@pytest.mark.parametrize("value", [7.0, float("nan"), float("-inf"), 0.5])
@pytest.mark.parametrize("converted", [".npy", ".h5"], indirect=True)
def test_verify_catches_an_impossible_value(converted: Path, value: float) -> None:
    """-s unit maps 0…255 to k/255: 7.0, NaN, -inf and 0.5 cannot appear in its output."""
    edit_value(converted, (500, 14, 14), value)
    result = cli(["verify", converted])
    line = assert_clean_failure(result, names=[f"{converted}: {FAILED}"], reasons=["checksum: "])
    assert "values allowed by the record: 1 values are not among the 256" in line


SIDECAR_EDITS = {
    "scale": 0.5,
    "offset": 1.0,
    "source_span": 254.0,
    "source_low": 1.0,
    "target_low": 0.25,
}
INCONSISTENT = "the record is inconsistent"
#: What the error says of each edit: a derived number, or a defining one of the strategy.
SIDECAR_REASONS = {
    "scale": "scale disagrees with target_span / source_span",
    "offset": "offset disagrees with target_low - source_low * scale",
    "source_span": "strategy unit maps with source_low, source_span, target_low, target_span",
    "source_low": "strategy unit maps with source_low, source_span, target_low, target_span",
    "target_low": "strategy unit maps with source_low, source_span, target_low, target_span",
}


@pytest.mark.parametrize("field", sorted(SIDECAR_EDITS))
def test_verify_catches_a_tampered_sidecar(converted: Path, field: str) -> None:
    sidecar = converted.with_name(converted.name + ".json")
    record = load_json(sidecar)
    record[field] = SIDECAR_EDITS[field]
    sidecar.write_text(json.dumps(record, indent=2))
    result = cli(["verify", converted])
    line = assert_clean_failure(result, names=[f"{converted}: "], reasons=[SIDECAR_REASONS[field]])
    assert line.endswith(INCONSISTENT), line


@pytest.mark.parametrize("converted", [".h5"], indirect=True)
@pytest.mark.parametrize("attribute", ["scale", "offset", "strategy"])
def test_verify_catches_tampered_hdf5_attributes(converted: Path, attribute: str) -> None:
    """The attributes readers use (scale, offset, strategy) must agree with the record."""
    with h5py.File(converted, "r+") as handle:
        handle.attrs[attribute] = "range" if attribute == "strategy" else np.float64(0.5)
    result = cli(["verify", converted])
    reason = f"{FAILED}HDF5 attributes agree with the record: {attribute} differ)"
    assert_clean_failure(result, names=[f"{converted}: "], reasons=[reason])


@pytest.mark.parametrize("image", [UNSAMPLED, 998])
@pytest.mark.parametrize("converted", [".npy", ".h5"], indirect=True)
def test_verify_source_notices_one_edited_value_anywhere(converted: Path, image: int) -> None:
    sampled = set(np.linspace(0, 999, 64).astype(int).tolist())
    assert image not in sampled, "pick an image outside the default sample"
    index = (image, 20, 9)
    edit_value(converted, index, other_valid_value(converted, index))
    result = cli(["verify", converted, "--source", SAMPLE_IMAGES])
    reason = "every image re-derives exactly from the source: 1 differing values)"
    assert_clean_failure(result, names=[f"{converted}: {FAILED}"], reasons=[reason])


@pytest.mark.parametrize("target", ["back.npy", "back-idx3-ubyte.gz", "back.h5"])
def test_invert_verify_with_mismatches_leaves_no_output(
    tmp_path: Path, converted: Path, target: str
) -> None:
    index = (UNSAMPLED, 14, 14)
    edit_value(converted, index, other_valid_value(converted, index))
    before = snapshot(tmp_path)
    result = cli(["invert", converted, "-o", tmp_path / target, "--verify", SAMPLE_IMAGES])
    reason = f"1 pixels differ from the source {SAMPLE_IMAGES}; {tmp_path / target} was not written"
    assert_clean_failure(result, names=[f"{converted}: "], reasons=[reason])
    assert_unchanged(tmp_path, before)


def test_output_with_garbage_zero_std_refused_before_any_output(
    tmp_path: Path, converted: Path
) -> None:
    """The record of an output reused with --params-from is checked before writing."""
    sidecar = converted.with_name(converted.name + ".json")
    record = load_json(sidecar)
    record["zero_std"] = "garbage"
    sidecar.write_text(json.dumps(record, indent=2))
    before = snapshot(tmp_path)
    result = cli(
        ["convert", SAMPLE_IMAGES, "-o", tmp_path / "again.h5", "--params-from", converted]
    )
    assert_clean_failure(
        result, names=[converted.name, sidecar.name], reasons=("zero_std", "garbage")
    )
    result = cli(["invert", converted, "-o", tmp_path / "back.npy"])
    assert_clean_failure(
        result, names=[converted.name, sidecar.name], reasons=("zero_std", "garbage")
    )
    assert_unchanged(tmp_path, before)
