"""Bucket to bucket: streaming through pixscale against staging on local disk.

    pip install '.[bench,s3,zarr]' 'moto[server]'
    python benchmarks/object_storage.py --mib 512 --runs 3 \
        --table benchmarks/object-storage-results.md

An S3 server (moto's, a separate process on localhost) holds a uint8 ``.npy`` of about
``--mib`` MiB. Two ways to get a float32 ``.zarr`` of it into the bucket, alternated
``--runs`` times, each a process of its own whose wall time and peak RSS (the process and
its children, from ``getrusage``) are measured:

- **streaming**: ``pixscale convert s3://…/in.npy -o s3://…/stream.zarr``;
- **staging**: download the ``.npy`` with s3fs, ``pixscale convert`` it locally, upload
  the ``.zarr`` with s3fs (what a user does without URL support).

Medians with their range; the ratio is streaming over staging in the same run. The
ImageNet-scale line divides ImageNet-1k's training set (1,281,167 RGB images at 224×224, as
uint8 192.9 GB) by the measured streaming rate: it is an estimate for this machine and this
server, not a measurement.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

IMAGENET_BYTES = 1_281_167 * 224 * 224 * 3
STAGE = """
import os, subprocess, sys, tempfile, s3fs
src, dst, cli = sys.argv[1:4]
fs = s3fs.S3FileSystem()
with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_SCRATCH")) as tmp:
    fs.get(src, f"{tmp}/in.npy")
    subprocess.run([cli, "convert", f"{tmp}/in.npy", "-o", f"{tmp}/out.zarr", "-q"], check=True)
    fs.put(f"{tmp}/out.zarr", dst, recursive=True)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``command`` run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    # ru_maxrss of children is the largest of any child so far: run the largest first or
    # read it per run as here, where each case's peak is at least the previous ones'.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def rss_of(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """``timed`` through GNU time where it exists (a peak per run), else getrusage."""
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else "")
    if not gnu_time:
        return timed(command, env)
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        subprocess.run(
            [gnu_time, "-f", "%M", "-o", report.name, *command],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - start
        return seconds, int(report.read().split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="input size in MiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--table", type=Path, help="also write the table here")
    args = parser.parse_args()

    import s3fs

    port = free_port()
    scratch = Path(tempfile.mkdtemp(prefix="pixscale-bench-"))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "BENCH_SCRATCH": str(scratch),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        fs = s3fs.S3FileSystem()
        fs.mkdir("bench")
        images = args.mib * (1 << 20) // (256 * 256)
        rng = np.random.default_rng(0)
        local = scratch / "in.npy"
        np.save(local, rng.integers(0, 256, (images, 256, 256), dtype=np.uint8))
        fs.put(str(local), "bench/in.npy")
        local.unlink()
        cli = str(Path(sys.executable).parent / "pixscale")
        cases = {
            "streaming: pixscale convert s3:// → s3://….zarr": lambda n: [
                cli,
                "convert",
                "s3://bench/in.npy",
                "-o",
                f"s3://bench/stream-{n}.zarr",
                "-q",
            ],
            "staging: s3fs get, convert locally, s3fs put": lambda n: [
                sys.executable,
                "-c",
                STAGE,
                "bench/in.npy",
                f"bench/staged-{n}.zarr",
                cli,
            ],
        }
        found: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for run in range(args.runs):
            for name, command in cases.items():
                found[name].append(rss_of(command(run), env))
        nbytes = images * 256 * 256
        rows = [
            "| case | wall s, median (range) | MB/s | peak RSS MiB | × staging |",
            "|---|---:|---:|---:|---:|",
        ]
        staging_name = "staging: s3fs get, convert locally, s3fs put"
        staging = statistics.median(s for s, _ in found[staging_name])
        stream_seconds = 0.0
        for name, results in found.items():
            seconds = [s for s, _ in results]
            median = statistics.median(seconds)
            if name.startswith("streaming"):
                stream_seconds = median
            rows.append(
                f"| {name} | {median:.2f} ({min(seconds):.2f}–{max(seconds):.2f}) | "
                f"{nbytes / median / 1e6:.0f} | {max(r for _, r in results):.0f} | "
                f"{median / staging:.2f} |"
            )
        hours = IMAGENET_BYTES / (nbytes / stream_seconds) / 3600
        text = "\n".join(
            [
                f"#### {nbytes / (1 << 20):.0f} MiB uint8 .npy ({images}×256×256) in an S3 bucket "
                f"(moto on localhost) → float32 .zarr in the bucket, {args.runs} runs",
                "",
                *rows,
                "",
                f"ImageNet-1k train (192.9 GB uint8) bucket to bucket at the streaming rate: "
                f"about {hours:.1f} h on this machine (one process; `--engine dask` divides it "
                "by the workers while the store keeps up).",
            ]
        )
        print(text)
        if args.table:
            args.table.write_text(text + "\n")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
