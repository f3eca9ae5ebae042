"""URLs from a hostile user: credentials in the URL or its query never shown or recorded,
another spelling of an input never overwritten, bad storage options one line, and
--overwrite never removing what pixscale did not write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import fails_with, run_cli
from conftest import SAMPLE_IMAGES

from .conftest import upload

SECRET = "SIGSECRET-in-the-query"


@pytest.fixture
def npy_in_bucket(bucket: str, s3: object, tmp_path: Path) -> str:
    np.save(tmp_path / "x.npy", np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4))
    return upload(s3, tmp_path / "x.npy", f"{bucket}/x.npy")


def test_credentials_in_a_url_refused_unshown(npy_in_bucket: str, tmp_path: Path) -> None:
    url = npy_in_bucket.replace("s3://", "s3://KEYID:PASSWDSECRET@")
    result = fails_with(
        ["convert", url, "-o", tmp_path / "o.h5"], "credentials do not belong in a URL"
    )
    assert "PASSWDSECRET" not in result.output and "KEYID" not in result.output


def test_query_of_a_presigned_url_never_shown_nor_recorded(
    bucket: str, s3: object, s3_endpoint: str, tmp_path: Path
) -> None:
    """The S3 server answers plain HTTP GETs that carry a signature in the query, as a
    presigned URL does; the signature reaches no message and no record."""
    pytest.importorskip("aiohttp", reason="http(s) URLs need pip install 'pixscale[http]'")
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4), np.uint8))
    upload(s3, tmp_path / "x.npy", f"{bucket}/x.npy")
    s3.pipe(f"{bucket.removeprefix('s3://')}/short.npy", (tmp_path / "x.npy").read_bytes()[:-5])  # type: ignore[attr-defined]
    base = f"{s3_endpoint}/{bucket.removeprefix('s3://')}"
    query = f"?X-Amz-Signature={SECRET}&X-Amz-Credential=KEYID"
    failed = fails_with(
        ["convert", f"{base}/short.npy{query}", "-o", tmp_path / "a.h5"], "truncated"
    )
    assert SECRET not in failed.output and "KEYID" not in failed.output
    out = tmp_path / "b.npy"
    assert run_cli("convert", f"{base}/x.npy{query}", "-o", out).exit_code == 0
    record = Path(f"{out}.json").read_text()
    assert SECRET not in record and "KEYID" not in record
    assert json.loads(record)["source"]["name"] == f"{base}/x.npy"


def test_another_spelling_of_an_input_is_an_input(npy_in_bucket: str, s3: object) -> None:
    alias = npy_in_bucket.replace("s3://", "s3a://")
    fails_with(
        ["convert", npy_in_bucket, "-o", alias, "--overwrite", "--format", "npy"],
        "refusing to overwrite an input of this run",
    )
    assert s3.cat(npy_in_bucket)[:6] == b"\x93NUMPY"  # type: ignore[attr-defined]


def test_upper_case_scheme_reads(npy_in_bucket: str) -> None:
    shown = run_cli("info", npy_in_bucket.replace("s3://", "S3://"))
    assert shown.exit_code == 0 and "2×4×4 uint8" in shown.output


@pytest.mark.parametrize(
    ("option", "phrase"),
    [
        ("bogus=1", "cannot use s3://"),
        ("client_kwargs.region_name=REGIONSECRET!", "cannot use s3://"),
        ("endpoint_url=ENDPOINTSECRET", "cannot use s3://"),
    ],
)
def test_bad_storage_options_one_line(npy_in_bucket: str, option: str, phrase: str) -> None:
    result = fails_with(["info", npy_in_bucket, "--storage-option", option], phrase)
    value = option.partition("=")[2]
    assert len(value) < 4 or value not in result.output


def test_overwrite_keeps_foreign_arrays_inside_a_store(bucket: str, s3: object) -> None:
    pytest.importorskip("zarr")
    store = f"{bucket}/own.zarr"
    assert run_cli("convert", SAMPLE_IMAGES, "-o", store).exit_code == 0
    key = f"{store.removeprefix('s3://')}/mydata/zarr.json"
    s3.pipe(key, b"{}")  # type: ignore[attr-defined]
    fails_with(
        ["convert", SAMPLE_IMAGES, "-o", store, "--overwrite"],
        "mydata/zarr.json: is not part of pixscale's output",
    )
    assert s3.cat(key) == b"{}"  # type: ignore[attr-defined]


def test_zarr_target_that_is_an_object(npy_in_bucket: str, bucket: str, s3: object) -> None:
    pytest.importorskip("zarr")
    s3.pipe(f"{bucket.removeprefix('s3://')}/obj.zarr", b"mine")  # type: ignore[attr-defined]
    fails_with(
        ["convert", npy_in_bucket, "-o", f"{bucket}/obj.zarr", "--overwrite"],
        "is an object, not a Zarr store; refusing to replace it",
    )


def test_missing_output_bucket_refused_before_reading(npy_in_bucket: str) -> None:
    fails_with(
        ["convert", npy_in_bucket, "-o", "s3://pixscale-no-such-bucket-out/o.npy"],
        "s3://pixscale-no-such-bucket-out/o.npy: no such bucket",
    )


def test_info_of_a_presigned_npy_reads_it_as_an_input(
    bucket: str, s3: object, s3_endpoint: str, tmp_path: Path
) -> None:
    pytest.importorskip("aiohttp", reason="http(s) URLs need pip install 'pixscale[http]'")
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4), np.uint8))
    upload(s3, tmp_path / "x.npy", f"{bucket}/x.npy")
    url = f"{s3_endpoint}/{bucket.removeprefix('s3://')}/x.npy?X-Amz-Signature={SECRET}"
    shown = run_cli("info", url)
    assert shown.exit_code == 0 and "2×4×4 uint8" in shown.output
    assert SECRET not in shown.output
