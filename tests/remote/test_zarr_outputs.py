"""A .zarr output on an object store: written in place, committed by its group's metadata,
never over a store without --overwrite, and --overwrite only over pixscale's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pixscale
from cli_helpers import fails_with, run_cli
from conftest import SAMPLE_IMAGES

from .conftest import upload

pytest.importorskip("zarr", reason="Zarr outputs need pip install 'pixscale[zarr]'")


def listing(s3: object, prefix: str) -> dict[str, bytes]:
    s3.invalidate_cache()  # type: ignore[attr-defined]
    return {k: s3.cat(k) for k in s3.find(prefix)}  # type: ignore[attr-defined]


def test_zarr_to_bucket_reads_back_exactly(bucket: str, tmp_path: Path) -> None:
    url = f"{bucket}/train.zarr"
    assert run_cli("convert", SAMPLE_IMAGES, "-o", url, "-s", "symmetric").exit_code == 0
    local = tmp_path / "train.zarr"
    assert run_cli("convert", SAMPLE_IMAGES, "-o", local, "-s", "symmetric").exit_code == 0
    with pixscale.open(url) as remote, pixscale.open(local) as here:
        assert remote[:].tobytes() == here[:].tobytes()
        assert np.array_equal(remote.labels, here.labels)
        assert remote[[7, 3, 999]].tobytes() == here[[7, 3, 999]].tobytes()
        assert remote.record["output"]["checksum"] == here.record["output"]["checksum"]
    checked = run_cli("verify", url, "--source", SAMPLE_IMAGES)
    assert checked.exit_code == 0 and "FAIL" not in checked.output
    back = tmp_path / "back.npy"
    assert run_cli("invert", url, "-o", back).exit_code == 0
    with pixscale.open(local) as here:
        assert np.array_equal(np.load(back), pixscale.Scaler.load(local).inverse_transform(here[:]))


def test_existing_store_never_touched(bucket: str, s3: object) -> None:
    url = f"{bucket}/train.zarr"
    assert run_cli("convert", SAMPLE_IMAGES, "-o", url).exit_code == 0
    before = listing(s3, url)
    fails_with(["convert", SAMPLE_IMAGES, "-o", url, "-s", "standardize"], "already exists")
    assert listing(s3, url) == before


def test_overwrite_replaces_own_store(bucket: str, s3: object) -> None:
    url = f"{bucket}/train.zarr"
    assert run_cli("convert", SAMPLE_IMAGES, "-o", url).exit_code == 0
    replaced = run_cli("convert", SAMPLE_IMAGES, "-o", url, "-s", "standardize", "--overwrite")
    assert replaced.exit_code == 0
    with pixscale.open(url) as data:
        assert data.record["strategy"] == "standardize"


def test_overwrite_refuses_a_store_holding_foreign_objects(bucket: str, s3: object) -> None:
    url = f"{bucket}/train.zarr"
    assert run_cli("convert", SAMPLE_IMAGES, "-o", url).exit_code == 0
    s3.pipe(f"{url.removeprefix('s3://')}/notes.txt", b"mine")  # type: ignore[attr-defined]
    before = listing(s3, url)
    fails_with(
        ["convert", SAMPLE_IMAGES, "-o", url, "--overwrite"],
        f"{url}/notes.txt: is not part of pixscale's output; refusing to replace {url}",
    )
    assert listing(s3, url) == before


def test_overwrite_refuses_a_prefix_that_is_no_output(bucket: str, s3: object) -> None:
    url = f"{bucket}/data.zarr"
    s3.pipe(f"{url.removeprefix('s3://')}/part-0.bin", b"someone's")  # type: ignore[attr-defined]
    fails_with(
        ["convert", SAMPLE_IMAGES, "-o", url, "--overwrite"],
        "holds objects but no pixscale Zarr output; refusing to replace it",
    )
    assert list(listing(s3, url)) == [f"{url.removeprefix('s3://')}/part-0.bin"]


def test_failed_run_leaves_nothing(bucket: str, s3: object, tmp_path: Path) -> None:
    """A source that ends early fails after images were uploaded: they are removed."""
    images = np.zeros((300, 28, 28), np.uint8)
    np.save(tmp_path / "x.npy", images)
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data[: len(data) - 28 * 28 * 50])
    short = upload(s3, tmp_path / "short.npy", f"{bucket}/short.npy")
    url = f"{bucket}/out.zarr"
    fails_with(["convert", short, "-o", url], "short.npy: truncated")
    assert listing(s3, url) == {}


def test_uncommitted_prefix_is_no_output(bucket: str, s3: object) -> None:
    """Chunks without the group's zarr.json (a run in progress, or one killed) are no
    store: reading it is refused."""
    url = f"{bucket}/train.zarr"
    assert run_cli("convert", SAMPLE_IMAGES, "-o", url).exit_code == 0
    s3.rm_file(f"{url.removeprefix('s3://')}/zarr.json")  # type: ignore[attr-defined]
    s3.invalidate_cache()  # type: ignore[attr-defined]
    with pytest.raises(pixscale.InputError, match="train.zarr"):
        pixscale.open(url)


def test_dask_engine_refuses_npy_urls(bucket: str) -> None:
    pytest.importorskip("distributed")
    fails_with(
        ["convert", SAMPLE_IMAGES, "-o", f"{bucket}/x.npy", "--engine", "dask", "--workers", "1"],
        "the dask engine's workers write a URL output as a .zarr store",
    )
