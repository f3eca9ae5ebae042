"""A Dask cluster that shares no disk: a scheduler and two workers as separate processes,
each in a folder of its own, converting from the bucket to the bucket; the store the
workers write equals, bit for bit, the one the local engine writes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import pixscale
from cli_helpers import run_process
from conftest import SAMPLE_IMAGES, SAMPLE_LABELS

from .conftest import environment, upload

pytest.importorskip("distributed", reason="the cluster test needs pip install 'pixscale[dask]'")
pytest.importorskip("zarr", reason="Zarr outputs need pip install 'pixscale[zarr]'")

WORKERS = 2


def wait_for(condition: object, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a scheduler with two workers, each process in its own folder with
    its own temporary folder, none of them the tests' own."""
    from distributed import Client

    base = tmp_path_factory.mktemp("cluster")
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> Path:
        home = base / name
        (home / "tmp").mkdir(parents=True)
        env = {**os.environ, **environment(s3_endpoint), "TMPDIR": str(home / "tmp")}
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=home,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        return home

    scheduler_file = base / "scheduler.json"
    try:
        start(
            "scheduler",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        )
        wait_for(scheduler_file.exists, "the scheduler")
        for index in range(WORKERS):
            home = start(
                f"worker-{index}",
                "distributed.cli.dask_worker",
                "--scheduler-file",
                str(scheduler_file),
                "--nthreads",
                "1",
                "--no-dashboard",
                "--no-nanny",
                "--local-directory",
                str(base / f"worker-{index}" / "tmp"),
            )
            assert home.is_dir()
        with Client(scheduler_file=str(scheduler_file), timeout=30) as client:
            client.wait_for_workers(WORKERS, timeout=60)
            address = client.scheduler.address
        yield address
    finally:
        for process in reversed(started):
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a worker waiting for a gone scheduler
                process.kill()
                process.wait()


def test_bucket_to_bucket_on_a_cluster_equals_local_engine(
    cluster: str, bucket: str, s3: object, s3_endpoint: str, tmp_path: Path
) -> None:
    images = upload(s3, SAMPLE_IMAGES, f"{bucket}/in/{SAMPLE_IMAGES.name}")
    upload(s3, SAMPLE_LABELS, f"{bucket}/in/{SAMPLE_LABELS.name}")
    common = ["-s", "standardize", "--scope", "global", "-q"]
    env = {**os.environ, **environment(s3_endpoint)}
    local = f"{bucket}/local.zarr"
    dask = f"{bucket}/dask.zarr"
    done = run_process(["convert", images, "-o", local, *common], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_process(
        ["convert", images, "-o", dask, "--engine", "dask", "--scheduler", cluster, *common],
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written where the client runs

    def chunks(store: str) -> dict[str, bytes]:
        keys = s3.find(f"{store}/images")  # type: ignore[attr-defined]
        return {k.rpartition("/")[2]: s3.cat(k) for k in keys if "/c." in k}  # type: ignore[attr-defined]

    written = chunks(dask)
    assert written and written == chunks(local)
    with pixscale.open(dask) as by_workers, pixscale.open(local) as by_client:
        assert by_workers.record["output"]["engine"] == "dask"
        assert by_workers.record["output"]["checksum"] == by_client.record["output"]["checksum"]
        assert np.array_equal(by_workers.labels, by_client.labels)
        assert by_workers[:].tobytes() == by_client[:].tobytes()
    checked = run_process(["verify", dask, "--source", images], env=env, cwd=tmp_path)
    assert checked.returncode == 0 and "FAIL" not in checked.stdout
