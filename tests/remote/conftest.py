"""A real S3 protocol server for the object-storage tests: moto's, on a free localhost port.

The server runs as a process of its own for the whole session; each test gets a bucket of
its own. Credentials and the endpoint come the standard way, from ``AWS_*``
variables, so that subprocesses (the CLI, Dask workers) reach the same server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("s3fs", reason="the object-storage tests need pip install 'pixscale[s3]'")
pytest.importorskip("moto.server", reason="the S3 tests need moto[server]")

#: What the test server accepts as credentials (it checks none unless asked to).
KEY_ID = "pixscale-test-key"
SECRET = "pixscale-test-secret-do-not-print"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a running S3 server, with ``AWS_*`` variables pointing at it.

    The server is a process of its own: in a thread of this one it would share the GIL and
    the locks that forked decoder processes inherit with the code under test.
    """
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ENVIRONMENT}
    try:
        wait_for_port(port)
        os.environ.update(environment(endpoint))
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.terminate()
        server.wait(timeout=30)


def wait_for_port(port: int, seconds: float = 30) -> None:
    """Return once something listens on ``port`` of localhost."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"no server on port {port} after {seconds} s")


ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
)


def environment(endpoint: str) -> dict[str, str]:
    """The variables a process needs to reach the test server."""
    return {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
    }


@pytest.fixture
def s3() -> object:
    """An ``s3fs`` filesystem on the test server, its caches fresh."""
    import s3fs

    # the cached instance, as pixscale's own: dropping instances from the cache would leave
    # their HTTP sessions to the garbage collector, which warns about them
    filesystem = s3fs.S3FileSystem()
    filesystem.invalidate_cache()
    return filesystem


@pytest.fixture
def bucket(s3_endpoint: str, s3: object) -> str:
    """A new empty bucket, as ``s3://name``."""
    name = f"pixscale-{uuid.uuid4().hex[:12]}"
    s3.mkdir(name)  # type: ignore[attr-defined]
    return f"s3://{name}"


def upload(s3: object, local: Path, url: str) -> str:
    """Copy a local file or folder to ``url``; returns ``url``."""
    s3.put(str(local), url.removeprefix("s3://"), recursive=local.is_dir())  # type: ignore[attr-defined]
    s3.invalidate_cache()  # type: ignore[attr-defined]
    return url
