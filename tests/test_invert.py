"""invert(convert(x)) == x bit for bit; verify checks records, data and provenance."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import SAMPLE_IMAGES
from pixscale.cli import main
from pixscale.core.spec import Spec
from pixscale.engine.local import convert
from pixscale.tasks.invert import invert
from pixscale.tasks.verify import verify

SPECS = {
    "unit": Spec(),
    "symmetric": Spec("symmetric"),
    "range": Spec("range", source_range=(0, 255), target_range=(-2, 3)),
    "none": Spec("none"),
    "standardize-global": Spec("standardize"),
    "standardize-channel": Spec("standardize", scope="channel"),
    "standardize-pixel": Spec("standardize", scope="pixel"),
    "standardize-image": Spec("standardize", scope="image"),
    "range-data-channel": Spec("range", from_data=True, scope="channel"),
    "range-data-image": Spec("range", from_data=True, scope="image", target_range=(-1, 1)),
    "imagenet-constants": Spec(
        "standardize", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    ),
}
GREY = [name for name in SPECS if name != "imagenet-constants"]


@pytest.mark.parametrize("name", GREY)
def test_mnist_round_trip_is_exact(tmp_path: Path, mnist_dir: Path, name: str) -> None:
    source = mnist_dir / "t10k-images-idx3-ubyte.gz"
    convert(source, tmp_path / "x.h5", SPECS[name])
    report = invert(tmp_path / "x.h5", tmp_path / "back-idx3-ubyte.gz", verify_source=source)
    assert report.source_mismatches == 0 and not report.lossy
    assert gzip.open(tmp_path / "back-idx3-ubyte.gz").read() == gzip.open(source).read()


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("suffix", [".h5", ".npy"])
def test_rgb_round_trip_is_exact(
    tmp_path: Path, photo_npy: Path, photo_tiles: np.ndarray, name: str, suffix: str
) -> None:
    convert(photo_npy, tmp_path / f"x{suffix}", SPECS[name], chunk_mb=0.1)
    report = invert(tmp_path / f"x{suffix}", tmp_path / "back.npy")
    assert not report.lossy
    assert np.array_equal(np.load(tmp_path / "back.npy"), photo_tiles)


def test_labels_come_back_with_the_images(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    convert(SAMPLE_IMAGES, tmp_path / "x.npy")
    invert(tmp_path / "x.npy", tmp_path / "back.h5")
    with h5py.File(tmp_path / "back.h5", "r") as handle:
        assert np.array_equal(handle["images"][()], sample[0])
        assert np.array_equal(handle["labels"][()], sample[1])


def test_clipped_output_is_reported_as_lossy(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    convert(
        SAMPLE_IMAGES,
        tmp_path / "c.h5",
        Spec("range", source_range=(50, 200), target_range=(0, 1), clip=True),
    )
    result = CliRunner().invoke(
        main,
        [
            "invert",
            str(tmp_path / "c.h5"),
            "-o",
            str(tmp_path / "b.npy"),
            "--verify",
            str(SAMPLE_IMAGES),
        ],
    )
    assert "Warning: lossy" in result.stderr
    assert result.exit_code == 1  # pixels differ from the source
    back = np.load(tmp_path / "b.npy")
    assert np.array_equal(back, np.clip(sample[0], 50, 200))


def test_verify_passes_and_catches_a_changed_value(tmp_path: Path) -> None:
    out = tmp_path / "x.npy"
    convert(SAMPLE_IMAGES, out)
    report = verify(out, SAMPLE_IMAGES, samples=1000)
    assert report.ok, report.checks
    data = np.load(out)
    data[500, 14, 14] += np.float32(1e-3)
    np.save(out, data)
    report = verify(out, SAMPLE_IMAGES, samples=1000)
    assert not report.ok
    assert (
        "every image re-derives exactly from the source",
        False,
        "1 differing values",
    ) in report.checks
    result = CliRunner().invoke(
        main, ["verify", str(out), "--source", str(SAMPLE_IMAGES), "--samples", "1000"]
    )
    assert result.exit_code == 1
    assert (
        "FAIL every image re-derives exactly from the source: 1 differing values" in result.stdout
    )


def test_verify_reports_a_different_source(tmp_path: Path, sample_npy: Path) -> None:
    convert(SAMPLE_IMAGES, tmp_path / "x.h5")
    report = verify(tmp_path / "x.h5", sample_npy)
    checks = {name: passed for name, passed, _ in report.checks}
    assert (
        checks["source sha256"] is False
        and checks["every image re-derives exactly from the source"] is True
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=hnp.arrays(
        np.uint8,
        st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 4), st.sampled_from([1, 3])),
    ),
    name=st.sampled_from(sorted(SPECS)),
)
def test_round_trip_for_random_arrays(tmp_path: Path, data: np.ndarray, name: str) -> None:
    spec = SPECS[name]
    if spec.mean is not None and data.shape[-1] != 3:
        return
    folder = tmp_path / f"{name}-{np.random.default_rng().integers(1 << 60)}"
    folder.mkdir()
    np.save(folder / "in.npy", data)
    convert(folder / "in.npy", folder / "x.h5", spec)
    invert(folder / "x.h5", folder / "back.npy")
    assert np.array_equal(np.load(folder / "back.npy"), data)
