"""Benchmark the Zarr paths: converting from Zarr inputs, and random reads of Zarr outputs.

    python benchmarks/zarr_paths.py --runs 5 --table benchmarks/zarr-results.md
    python benchmarks/zarr_paths.py --runs 5 --before /tmp/pixscale-head/src  # and an older tree

Inputs: a generated uint8 set (``--size-gib``, 96×96×3 images) as ``.npy`` (the baseline)
and as Zarr v3 stores of several layouts (64 MiB chunks, chunks of 64 images, 64 MiB shards
of 64-image chunks; uncompressed and zstd), each converted to ``.npy`` by the CLI.
Outputs: MNIST train (the IDX file of ``shared/data`` when present, else random
60000×28×28) converted to ``.h5`` (the baseline) and ``.zarr``; then random single samples
and sorted batches of 256 read through ``pixscale.open``, and the conversion time and the
output's file count.

Every measurement runs in its own process, cases round-robin, ``--runs`` times (medians with
their ranges; peak RSS from ``wait4``), after ``sync`` with the inputs in the page cache.
``--before SRC`` runs the same cases with ``PYTHONPATH=SRC`` too (e.g. a ``git archive`` of
an earlier commit), in the same run. Writes a Markdown report to stdout (and ``--table``).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
MNIST = HERE.parent.parent / "shared" / "data" / "mnist" / "train-images-idx3-ubyte.gz"
SETTLE_SECONDS = 1.0
IMAGE = (96, 96, 3)

READS = """
import sys, time, numpy as np, pixscale
path, singles, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = pixscale.open(path)
n = len(d)
rng = np.random.default_rng(0)
d[0]; d[np.arange(4)]  # opened, first pages mapped
picks = rng.integers(0, n, singles)
t = time.perf_counter()
for i in picks:
    d[int(i)]
single = singles / (time.perf_counter() - t)
sets = [np.sort(rng.choice(n, 256, replace=False)) for _ in range(batches)]
t = time.perf_counter()
for s in sets:
    d[s]
batch = 256 * batches / (time.perf_counter() - t)
print(single, batch)
"""

ZARR_PYTHON = """
import sys, time, numpy as np, zarr
a = zarr.open_group(sys.argv[1], mode="r")["images"]
rng = np.random.default_rng(0)
picks = rng.integers(0, a.shape[0], 500)
t = time.perf_counter()
for i in picks:
    a[int(i)]
single = 500 / (time.perf_counter() - t)
t = time.perf_counter()
a[...]
print(single, time.perf_counter() - t)
"""


def run_measured(command: Sequence[str], src: Path) -> tuple[float, float, str]:
    """``run``, with the child's own peak RSS (``wait4`` on it, not on all children)."""
    env = dict(os.environ, PYTHONPATH=str(src))
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{err.decode()}")
    return wall, usage.ru_maxrss / 1024, out.decode()


def settle(*inputs: Path) -> None:
    """Flush earlier writes and read ``inputs`` into the page cache."""
    subprocess.run(["sync"], check=True)
    time.sleep(SETTLE_SECONDS)
    for path in inputs:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            with file.open("rb") as handle:
                while handle.read(16 << 20):
                    pass


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    sidecar = path.with_name(path.name + ".json")
    if sidecar.exists():
        sidecar.unlink()


def make_inputs(work: Path, gib: float) -> dict[str, Path]:
    """The .npy input and its Zarr copies, made once."""
    import zarr
    from zarr.codecs import ZstdCodec

    count = int(gib * (1 << 30)) // int(np.prod(IMAGE))
    npy = work / "in.npy"
    if not npy.exists():
        rng = np.random.default_rng(0)
        out = np.lib.format.open_memmap(npy, "w+", np.uint8, (count, *IMAGE))
        ramp = np.linspace(0, 200, IMAGE[0] * IMAGE[1] * 3).astype(np.uint8).reshape(IMAGE)
        for first in range(0, count, 2048):
            block = out[first : first + 2048]
            block[...] = ramp
            block += rng.integers(0, 56, block.shape, dtype=np.uint8)
        out.flush()
        del out
    values = np.load(npy, mmap_mode="r")
    big = (64 << 20) // int(np.prod(IMAGE))
    layouts = {
        "raw, 64 MiB chunks": {"chunks": (big, *IMAGE), "compressors": None},
        "raw, 64-image chunks": {"chunks": (64, *IMAGE), "compressors": None},
        "raw, 64 MiB shards of 64 images": {
            "chunks": (64, *IMAGE),
            "shards": (big // 64 * 64, *IMAGE),
            "compressors": None,
        },
        "zstd, 64 MiB chunks": {"chunks": (big, *IMAGE), "compressors": ZstdCodec(level=1)},
        "zstd, 64-image chunks": {"chunks": (64, *IMAGE), "compressors": ZstdCodec(level=1)},
        "zstd, 64 MiB shards of 64 images": {
            "chunks": (64, *IMAGE),
            "shards": (big // 64 * 64, *IMAGE),
            "compressors": ZstdCodec(level=1),
        },
    }
    stores = {".npy": npy}
    for index, (name, options) in enumerate(layouts.items()):
        store = work / f"in{index}.zarr"
        if not store.exists():
            array = zarr.create_array(
                str(store), shape=values.shape, dtype="uint8", zarr_format=3, **options
            )
            step = max(options["chunks"][0], options.get("shards", (0,))[0])
            for first in range(0, count, step * 4):
                array[first : first + step * 4] = values[first : first + step * 4]
        stores[name] = store
    return stores


def mnist(work: Path) -> Path:
    """MNIST train images as .npy (random ones when the IDX file is absent)."""
    path = work / "mnist.npy"
    if not path.exists():
        if MNIST.is_file():
            raw = gzip.decompress(MNIST.read_bytes())
            images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
        else:
            images = np.random.default_rng(0).integers(0, 256, (60000, 28, 28), np.uint8)
        np.save(path, images)
    return path


def summary(values: list[float], digits: int = 2) -> str:
    """Median with the range, as ``m (lo–hi)``."""
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}–{max(values):.{digits}f})"
    )


def rate(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def bench_inputs(work: Path, gib: float, runs: int, trees: dict[str, Path]) -> list[str]:
    stores = make_inputs(work, gib)
    out = work / "out.npy"
    times: dict[tuple[str, str], list[float]] = {}
    rss: dict[tuple[str, str], list[float]] = {}
    cases = [(".npy", "after")] + [
        (name, tree) for name in stores if name != ".npy" for tree in trees
    ]
    for _ in range(runs):
        for name, tree in cases:
            remove(out)
            settle(stores[name])
            command = [
                sys.executable,
                "-m",
                "pixscale",
                "convert",
                str(stores[name]),
                "-o",
                str(out),
            ]
            wall, peak, _ = run_measured(command, trees[tree])
            times.setdefault((name, tree), []).append(wall)
            rss.setdefault((name, tree), []).append(peak)
    remove(out)
    base = statistics.median(times[(".npy", "after")])
    lines = [
        f"#### Convert to float32 .npy: {gib:.2f} GiB uint8 {IMAGE} images, {runs} runs",
        "",
        "| input | code | wall s, median (range) | × .npy input (median) | peak RSS MiB (range) |",
        "|---|---|---:|---:|---:|",
    ]
    for name, tree in cases:
        key = (name, tree)
        ratios = [t / base for t in times[key]]
        lines.append(
            f"| {name} | {tree} | {summary(times[key])} | {summary(ratios)} | "
            f"{summary(rss[key], 0)} |"
        )
    return [*lines, ""]


def count_files(path: Path) -> int:
    return 1 if path.is_file() else sum(1 for p in path.rglob("*") if p.is_file())


def bench_outputs(
    work: Path, runs: int, trees: dict[str, Path], singles: int, batches: int
) -> list[str]:
    source = mnist(work)
    outputs = {("h5", "after"): work / "mnist-after.h5"} | {
        ("zarr", tree): work / f"mnist-{tree}.zarr" for tree in trees
    }
    converts: dict[tuple[str, str], list[float]] = {}
    reads: dict[tuple[str, str], list[tuple[float, float]]] = {}
    others: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(runs):
        for (kind, tree), path in outputs.items():
            remove(path)
            settle(source)
            command = [sys.executable, "-m", "pixscale", "convert", str(source), "-o", str(path)]
            converts.setdefault((kind, tree), []).append(run_measured(command, trees[tree])[0])
        for (kind, tree), path in outputs.items():
            settle(path)
            command = [sys.executable, "-c", READS, str(path), str(singles), str(batches)]
            single, batch = map(float, run_measured(command, trees[tree])[2].split())
            reads.setdefault((kind, tree), []).append((single, batch))
            if kind == "zarr":
                command = [sys.executable, "-c", ZARR_PYTHON, str(path)]
                one, whole = map(float, run_measured(command, trees[tree])[2].split())
                others.setdefault((kind, tree), []).append((one, whole))
    h5 = reads[("h5", "after")]
    h5_single = statistics.median(r[0] for r in h5)
    h5_batch = statistics.median(r[1] for r in h5)
    lines = [
        f"#### MNIST train (60000×28×28) output: random reads through pixscale.open, {runs} runs",
        "",
        f"{singles:,} random single samples and {batches} sorted batches of 256 per run.",
        "",
        "| output | code | single samples/s | × .h5 | batched samples/s | × .h5 | "
        "convert s | files |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (kind, tree), path in outputs.items():
        single = [r[0] for r in reads[(kind, tree)]]
        batch = [r[1] for r in reads[(kind, tree)]]
        lines.append(
            f"| .{kind} | {tree} | {rate(single)} | {statistics.median(single) / h5_single:.2f} | "
            f"{rate(batch)} | {statistics.median(batch) / h5_batch:.2f} | "
            f"{summary(converts[(kind, tree)])} | {count_files(path)} |"
        )
    lines += [
        "",
        "The same .zarr outputs through zarr-python itself (`zarr.open_group(...)['images']`):",
        "",
        "| output | code | zarr-python single samples/s | zarr-python whole array read s |",
        "|---|---|---:|---:|",
    ]
    for (kind, tree), values in others.items():
        lines.append(
            f"| .{kind} | {tree} | {rate([v[0] for v in values])} | "
            f"{summary([v[1] for v in values], 3)} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-gib", type=float, default=1.1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pixscale-zarr-bench"))
    parser.add_argument("--before", type=Path, help="an older source tree to run as well")
    parser.add_argument("--singles", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--only", choices=("inputs", "outputs"))
    parser.add_argument("--table", type=Path, help="also write the report here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    trees = {"after": SRC} | ({"before": args.before} if args.before else {})
    lines: list[str] = []
    if args.only != "outputs":
        lines += bench_inputs(args.work, args.size_gib, args.runs, trees)
    if args.only != "inputs":
        lines += bench_outputs(args.work, args.runs, trees, args.singles, args.batches)
    text = "\n".join(lines)
    print(text)
    if args.table:
        args.table.write_text(text + "\n")


if __name__ == "__main__":
    main()
