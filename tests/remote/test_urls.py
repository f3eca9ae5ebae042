"""URLs as inputs and outputs, against a real S3 protocol server: values exact, labels
along, no clobber, one-line errors naming the URL, and no credential anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import Result

import pixscale
from cli_helpers import fails_with, invoke, run_cli
from conftest import SAMPLE_IMAGES, SAMPLE_LABELS

from .conftest import environment, free_port, upload, wait_for_port


def run(*args: str) -> Result:
    return run_cli(*args)


def refused(phrase: str, *args: str) -> str:
    """Run a command that must fail with one ``Error:`` line holding ``phrase``."""
    return str(fails_with(args, phrase).stderr.strip())


def h5_contents(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict[str, object]]:
    with h5py.File(path, "r") as handle:
        labels = handle["labels"][...] if "labels" in handle else None
        record = json.loads(handle.attrs["pixscale_params"])
        return handle["images"][...], labels, record


@pytest.fixture
def mnist_in_bucket(bucket: str, s3: object) -> str:
    """The bundled MNIST slice (images and labels, IDX.gz) under one prefix."""
    upload(s3, SAMPLE_IMAGES, f"{bucket}/mnist/{SAMPLE_IMAGES.name}")
    upload(s3, SAMPLE_LABELS, f"{bucket}/mnist/{SAMPLE_LABELS.name}")
    return f"{bucket}/mnist/{SAMPLE_IMAGES.name}"


def test_idx_from_bucket_equals_local_with_labels(mnist_in_bucket: str, tmp_path: Path) -> None:
    remote, local = tmp_path / "remote.h5", tmp_path / "local.h5"
    assert run("convert", mnist_in_bucket, "-o", str(remote), "-s", "standardize").exit_code == 0
    assert run("convert", str(SAMPLE_IMAGES), "-o", str(local), "-s", "standardize").exit_code == 0
    images, labels, record = h5_contents(remote)
    expected_images, expected_labels, expected = h5_contents(local)
    assert images.tobytes() == expected_images.tobytes()
    assert labels is not None and np.array_equal(labels, expected_labels)
    source = record["source"]
    assert isinstance(source, dict)
    assert source["name"] == mnist_in_bucket  # the record names the URL
    assert source["sha256"] == expected["source"]["sha256"]  # type: ignore[index]


def test_npy_and_h5_outputs_uploaded_whole(
    bucket: str, s3: object, sample_npy: Path, tmp_path: Path
) -> None:
    for name in ("out.npy", "out.h5"):
        assert run("convert", str(sample_npy), "-o", f"{bucket}/{name}").exit_code == 0
    found = sorted(p.rpartition("/")[2] for p in s3.find(bucket))  # type: ignore[attr-defined]
    assert found == ["out.h5", "out.npy", "out.npy.json"]  # nothing temporary left
    local = tmp_path / "local.npy"
    assert run("convert", str(sample_npy), "-o", str(local)).exit_code == 0
    assert s3.cat(f"{bucket}/out.npy") == local.read_bytes()  # type: ignore[attr-defined]


def test_existing_object_never_clobbered(bucket: str, s3: object, sample_npy: Path) -> None:
    target = f"{bucket}/out.h5"
    s3.pipe(target, b"precious")  # type: ignore[attr-defined]
    refused("already exists. Use --overwrite", "convert", str(sample_npy), "-o", target)
    assert s3.cat(target) == b"precious"  # type: ignore[attr-defined]
    assert run("convert", str(sample_npy), "-o", target, "--overwrite").exit_code == 0
    assert s3.cat(target)[:4] == b"\x89HDF"  # type: ignore[attr-defined]


def test_output_that_is_an_input_refused(bucket: str, s3: object, sample_npy: Path) -> None:
    url = upload(s3, sample_npy, f"{bucket}/x.npy")
    refused("refusing to overwrite an input", "convert", url, "-o", url, "--overwrite")
    assert s3.cat(url) == sample_npy.read_bytes()  # type: ignore[attr-defined]


def test_quoted_glob_of_objects_reads_in_order(
    bucket: str, s3: object, sample: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    images = sample[0]
    for index, part in enumerate(np.array_split(images, 3)):
        np.save(tmp_path / f"part-{index}.npy", part)
        upload(s3, tmp_path / f"part-{index}.npy", f"{bucket}/parts/part-{index}.npy")
    out = tmp_path / "all.h5"
    assert run("convert", f"{bucket}/parts/part-*.npy", "-o", str(out), "-s", "none").exit_code == 0
    stored, _, _ = h5_contents(out)
    assert np.array_equal(stored, images.astype(np.float32))


def test_fit_to_url_then_params_from_url(mnist_in_bucket: str, bucket: str, tmp_path: Path) -> None:
    params = f"{bucket}/params/mnist.json"
    assert run("fit", mnist_in_bucket, "-s", "standardize", "-o", params).exit_code == 0
    out, local = tmp_path / "reused.h5", tmp_path / "local.h5"
    assert run("convert", mnist_in_bucket, "-o", str(out), "--params-from", params).exit_code == 0
    assert run("convert", str(SAMPLE_IMAGES), "-o", str(local), "-s", "standardize").exit_code == 0
    assert h5_contents(out)[0].tobytes() == h5_contents(local)[0].tobytes()


def test_info_and_verify_source_on_urls(mnist_in_bucket: str, tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    assert run("convert", mnist_in_bucket, "-o", str(out)).exit_code == 0
    shown = run("info", mnist_in_bucket)
    assert shown.exit_code == 0 and "1000×28×28 uint8" in shown.output
    checked = run("verify", str(out), "--source", mnist_in_bucket)
    assert checked.exit_code == 0, checked.output
    assert "FAIL" not in checked.output


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("{bucket}/missing.npy", "{bucket}/missing.npy: no such object"),
        (
            "s3://pixscale-no-such-bucket/x.npy",
            "s3://pixscale-no-such-bucket/x.npy: no such bucket",
        ),
        ("nosuch://bucket/x.npy", "nosuch://bucket/x.npy: unknown protocol nosuch://"),
    ],
)
def test_bad_input_urls_one_line(bucket: str, url: str, phrase: str, tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    refused(phrase.format(bucket=bucket), "convert", url.format(bucket=bucket), "-o", str(out))
    assert not out.exists()


def test_http_outputs_refused(sample_npy: Path) -> None:
    refused(
        "http(s) URLs are read only",
        "convert",
        str(sample_npy),
        "-o",
        "https://example.invalid/out.h5",
    )


def test_storage_option_needs_key_value(sample_npy: Path, tmp_path: Path) -> None:
    result = run(
        "convert", str(sample_npy), "-o", str(tmp_path / "o.h5"), "--storage-option", "anon"
    )
    assert result.exit_code == 2 and "give KEY=VALUE" in result.output


def test_secrets_never_leave_the_process(
    mnist_in_bucket: str, bucket: str, s3: object, tmp_path: Path
) -> None:
    """Credentials given as storage options reach no record, object, message or trace."""
    secret = "Sekr3t-given-on-the-command-line"
    given = ["--storage-option", "key=pixscale-test-key", "--storage-option", f"secret={secret}"]
    out = f"{bucket}/out.npy"
    written = run("convert", mnist_in_bucket, "-o", out, "-s", "standardize", *given)
    assert written.exit_code == 0, written.output
    failed = invoke(["--debug", "convert", f"{bucket}/missing.npy", "-o", f"{bucket}/x.h5", *given])
    assert failed.exit_code != 0
    shown = run("info", out, *given)
    objects = s3.find(bucket)  # type: ignore[attr-defined]
    assert objects
    for name in objects:
        assert secret.encode() not in s3.cat(name)  # type: ignore[attr-defined]
    for result in (written, failed, shown):
        assert secret not in result.output
        if result.exc_info is not None:
            import traceback

            assert secret not in "".join(traceback.format_exception(*result.exc_info))


@pytest.fixture(scope="module")
def locked_endpoint() -> Iterator[str]:
    """An S3 server that checks credentials: it knows none, so every key is refused."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def cli_process(endpoint: str, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **environment(endpoint), **variables}
    for name, value in variables.items():
        if not value:
            env.pop(name)
    return subprocess.run(
        [sys.executable, "-m", "pixscale", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_wrong_credentials_one_line(locked_endpoint: str, tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    done = cli_process(locked_endpoint, "convert", "s3://data/x.npy", "-o", str(out))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: s3://data/x.npy: access denied (check the credentials and the bucket's permissions)"
    )
    assert not out.exists()


def test_no_credentials_one_line(locked_endpoint: str, tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    done = cli_process(
        locked_endpoint,
        "convert",
        "s3://data/x.npy",
        "-o",
        str(out),
        AWS_ACCESS_KEY_ID="",
        AWS_SECRET_ACCESS_KEY="",
    )
    assert done.returncode == 1
    assert "Error: s3://data/x.npy: no credentials found" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_storage_options_reach_the_filesystem(
    mnist_in_bucket: str, locked_endpoint: str, tmp_path: Path
) -> None:
    """``storage_options`` are used, not only accepted: pointing the same URL at a server
    that checks credentials is refused by that server."""
    out = tmp_path / "out.h5"
    with pytest.raises(pixscale.InputError, match="access denied"):
        pixscale.convert(mnist_in_bucket, out, storage_options={"endpoint_url": locked_endpoint})
    assert not out.exists()
    pixscale.convert(mnist_in_bucket, out, storage_options={"anon": False})
    with pixscale.open(out) as data:
        assert data.shape == (1000, 28, 28)
    result = run("info", mnist_in_bucket, "--storage-option", f"endpoint_url={locked_endpoint}")
    assert result.exit_code == 1 and "access denied" in result.output


def test_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A protocol whose fsspec implementation is not installed: the pip install that brings
    it, in one line."""
    import fsspec

    def missing(protocol: str) -> None:
        raise ImportError(f"Install adlfs to access {protocol}")

    monkeypatch.setattr(fsspec, "get_filesystem_class", missing)
    refused(
        "az://container/x.npy: az:// needs pip install 'pixscale[azure]'",
        "convert",
        "az://container/x.npy",
        "-o",
        str(tmp_path / "o.h5"),
    )
