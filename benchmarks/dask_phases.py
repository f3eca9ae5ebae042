"""The dask engine against the ``dask.array`` pipeline a user would write, phase by phase.

    pip install '.[dask]' 'zarr>=3'
    python benchmarks/dask_phases.py --runs 3 --table benchmarks/dask-phases-results.md

Input: a 1 GiB uint8 Zarr v3 store (16384 × 256 × 256, chunks of 64 images, uncompressed),
converted to an uncompressed ``.zarr`` with ``unit`` and ``standardize --scope channel``.
Every round is one process that starts a local cluster of 2 worker processes (one thread
each) exactly as ``--engine dask --workers 2`` does (``dask_client``), and runs on that one
cluster, in alternating order: pixscale (``convert_on_dask``) and the ``dask.array``
pipeline, for both strategies::

    x = da.from_zarr(src, component="images")
    y = x.astype(np.float32) / np.float32(255)              # unit
    mean, std = dask.compute(x.mean(), x.std())              # standardize
    y = (x.astype(np.float32) - np.float32(mean)) / np.float32(std)
    y.to_zarr(out, component="images", compressors=None)

"wall" is until the call returns; "+ sync" adds the ``sync`` that follows (pixscale writes
an output this large with ``O_DIRECT``, dask.array through the page cache, so only the
second compares the same work). Then, in the same round, one instrumented pixscale run per
strategy times its phases: client-side by wrapping the engine's methods from outside, in
the workers by wrapping the read, sums, transform, write and checksum functions through
``client.run`` (thread-seconds summed over both workers; nothing in ``src`` is changed).
Medians with [min–max] over the rounds; the 1-minute load average at each round's start
and the share of CPU time the host gave to other machines are reported (the machine may be
shared; the load average is mostly these runs' own).

``--what-if`` measures a change without making it, by patching the client and the workers
for one run: ``isal-crc`` (CRC-32 by ISA-L, same values; needs ``isal`` importable),
``no-sha256``, ``zarr-python-read``, ``stats-1-thread``; with ``--no-baseline`` only
pixscale is timed. ``--partition-mb`` and ``--chunk`` (images per input chunk) vary the
engine's partitions and the input's layout.

``--hash`` instead converts once per strategy and prints the sha256 of every output file,
to prove a change leaves the output byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPE = (16384, 256, 256)
CHUNK = 64

#: One round, run in a child process; prints one JSON line of measurements.
ROUND = r"""
import functools, json, os, sys, time, threading
from collections import defaultdict
from pathlib import Path
import numpy as np

src, out, order, instrument = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
what_if, partition_mb = set(filter(None, sys.argv[5].split(","))), float(sys.argv[6])
baseline = sys.argv[7] == "1"
result = {}

def remove(path):
    import shutil
    for found in path.parent.glob(path.name + "*"):
        shutil.rmtree(found) if found.is_dir() else found.unlink()

# -- instrumentation: cumulative thread-seconds per name, installed by wrapping ------------
def install_timers():
    import pixscale.core.stats as stats
    import pixscale.core.transform as transform
    import pixscale.sources.zarr as zsrc
    import pixscale.store.backends.zarr.region as region
    import pixscale.store.io.checksum as checksum
    import pixscale.store.io.background as background
    import pixscale.engine.distributed as distributed
    import pixscale.engine.scan as scan
    totals = defaultdict(float)
    counts = defaultdict(int)
    lock = threading.Lock()
    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with lock:
                    totals[name] += time.perf_counter() - start
                    counts[name] += 1
        return wrapper
    zsrc.RawChunks.fill = timed("read", zsrc.RawChunks.fill)
    zsrc.ZarrSource._array = timed("open array", zsrc.ZarrSource._array)
    zsrc.RawChunks.of = timed("raw reader setup", zsrc.RawChunks.of)
    stats.PixelSums.add = timed("sums", stats.PixelSums.add)
    transform.Transform.apply = timed("transform", transform.Transform.apply)
    region.RegionWriter.write = timed("write (+ crc wait)", region.RegionWriter.write)
    checksum.StreamChecksum.update = timed("crc32", checksum.StreamChecksum.update)
    writer = background.BackgroundWriter
    writer.buffer = timed("wait for writer", writer.buffer)
    distributed.dataset_sums = timed("statistics task", distributed.dataset_sums)
    distributed.write_images = timed("write task body", distributed.write_images)
    import builtins
    builtins._pixscale_timers = (totals, counts)

def collect_timers():
    import builtins
    totals, counts = builtins._pixscale_timers
    found = {k: [v, counts[k]] for k, v in totals.items()}
    totals.clear(); counts.clear()
    return found

from pixscale.engine.distributed import dask_client
start = time.perf_counter()
with dask_client(None, 2) as client:
    client.wait_for_workers(2)
    def warm_up():
        import zarr, numpy, dask.array, pixscale.engine.distributed  # noqa: F401
    client.run(warm_up)
    result["client start"] = time.perf_counter() - start
    if "isal-crc" in what_if:  # CRC-32 by ISA-L (same values), in the workers and here
        def fast_crc():
            import types
            from isal import isal_zlib
            import pixscale.store.io.checksum as checksum
            checksum.zlib = types.SimpleNamespace(crc32=isal_zlib.crc32)
        client.run(fast_crc)
        fast_crc()
    if "zarr-python-read" in what_if:  # the input read through zarr-python, not by byte range
        def slow_read():
            import pixscale.sources.zarr as zsrc
            zsrc.RawChunks.of = classmethod(lambda cls, *args: None)
        client.run(slow_read)
        slow_read()
    if "stats-1-thread" in what_if:  # a statistics task sums on one thread, not two
        def one_thread():
            import pixscale.engine.scan as scan
            scan.STATS_THREADS = 1
        client.run(one_thread)
    if "no-sha256" in what_if:  # the input's digest not computed (the record is wrong)
        import pixscale.engine.pipeline as pipeline
        pipeline.hash_quietly = lambda source: "0" * 64
    import dask, dask.array as da
    from distributed import get_task_stream
    from pixscale.core.spec import Spec
    from pixscale.engine.distributed import convert_on_dask
    from pixscale.sources import open_source
    from pixscale.store.output import Output

    def pixscale_case(strategy):
        spec = Spec("standardize", scope="channel") if strategy == "standardize" else Spec()
        phases = {}
        t0 = time.perf_counter()
        source = open_source(src)
        phases["source open + checks"] = time.perf_counter() - t0
        convert_on_dask(source, Output(out), spec, client, partition_mb=partition_mb)
        return phases

    def dask_case(strategy):
        x = da.from_zarr(src, component="images")
        if strategy == "unit":
            y = x.astype(np.float32) / np.float32(255)
        else:
            mean, std = dask.compute(x.mean(), x.std())
            y = (x.astype(np.float32) - np.float32(mean)) / np.float32(std)
        y.to_zarr(str(out), component="images", compressors=None, overwrite=True)

    def run(name, fn, strategy):
        remove(out)
        os.sync()
        time.sleep(0.5)
        t0 = time.perf_counter()
        fn(strategy)
        wall = time.perf_counter() - t0
        os.sync()
        result[name] = {"wall": wall, "sync": time.perf_counter() - t0}
        remove(out)

    cases = [("pixscale", pixscale_case), ("dask.array", dask_case)][: 2 if baseline else 1]
    if order == "1":
        cases.reverse()
    for strategy in (["unit", "standardize"] if order == "0" else ["standardize", "unit"]):
        for engine, fn in cases:
            run(f"{engine} {strategy}", fn, strategy)

    if instrument:
        import pixscale.engine.distributed as distributed
        import pixscale.engine.pipeline as pipeline
        import pixscale.core.stats as stats
        import pixscale.store.backends.zarr.writer as zwriter
        client.run(install_timers)
        client_totals = defaultdict(float)
        def timed(name, fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                t = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    client_totals[name] += time.perf_counter() - t
            return wrapper
        Executor = distributed.DaskExecutor
        Executor.open = timed("output create + checks", Executor.open)
        Executor.partitions = timed("partitions", Executor.partitions)
        Executor.fit = timed("statistics pass", Executor.fit)
        Executor.write = timed("write pass", Executor.write)
        stats.PixelSums.merge = timed("  merge of sums", stats.PixelSums.merge)
        finish = "finish (files check, record, metadata)"
        zwriter.ZarrWriter.finish = timed(finish, zwriter.ZarrWriter.finish)
        zwriter.commit_store = timed("commit (rename)", zwriter.commit_store)
        digest = "input sha256 (thread, beside write pass)"
        pipeline.hash_quietly = timed(digest, pipeline.hash_quietly)
        for strategy in ("unit", "standardize"):
            remove(out)
            os.sync()
            client_totals.clear()
            t0 = time.perf_counter()
            with get_task_stream(client) as stream:
                phases = pixscale_case(strategy)
            total = time.perf_counter() - t0
            tasks = defaultdict(list)
            for task in stream.data:
                busy = sum(
                    s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute"
                )
                key = task["key"][0] if isinstance(task["key"], tuple) else task["key"]
                tasks[str(key).split("-")[0]].append(busy)
            workers = client.run(collect_timers)
            merged = defaultdict(lambda: [0.0, 0])
            for found in workers.values():
                for k, (v, n) in found.items():
                    merged[k][0] += v
                    merged[k][1] += n
            result[f"phases {strategy}"] = {
                "total": total, **phases, **client_totals,
                "tasks": {k: [len(v), sum(v), max(v)] for k, v in tasks.items()},
                "workers": dict(merged),
            }
            remove(out)
print(json.dumps(result))
"""


HASH = r"""
import sys
from pathlib import Path
from pixscale.core.spec import Spec
from pixscale.engine.distributed import convert_with_dask
from pixscale.sources import open_source
from pixscale.store.output import Output
src, out, strategy = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
spec = Spec("standardize", scope="channel") if strategy == "standardize" else Spec()
record = convert_with_dask(open_source(src), Output(out), spec, workers=2)
print(record["output"]["checksum"]["value"])
"""


def make_input(path: Path, chunk: int = CHUNK) -> None:
    """A 1 GiB uint8 Zarr v3 group with ``images`` in chunks of ``chunk`` images."""
    import numpy as np
    import zarr

    if (path / "images" / "zarr.json").is_file():
        return
    group = zarr.open_group(path, mode="w", zarr_format=3)
    array = group.create_array(
        "images", shape=SHAPE, chunks=(chunk, *SHAPE[1:]), dtype="uint8", compressors=None
    )
    rng = np.random.default_rng(0)
    step = 1024
    for first in range(0, SHAPE[0], step):
        # a skewed distribution, so that standardize's mean and std are not trivial
        array[first : first + step] = rng.binomial(255, 0.3, (step, *SHAPE[1:])).astype("u1")


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` but the group's record (it holds the date)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.parent != root:
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def cpu_times() -> tuple[int, int]:
    """(steal, total) jiffies of all cores (``/proc/stat``): time the hypervisor gave to
    other machines shows a disturbed round where the load average (this machine's own
    runs) does not."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return fields[7] if len(fields) > 7 else 0, sum(fields)


def median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def tables(rounds: list[dict]) -> list[str]:
    lines = [
        "### Whole conversion on one cluster (s; median [min–max])",
        "",
        "| strategy | pixscale wall | dask.array wall | ratio | pixscale + sync "
        "| dask.array + sync | ratio (+ sync) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for strategy in ("unit", "standardize"):
        mine = [r[f"pixscale {strategy}"] for r in rounds]
        base = [r[f"dask.array {strategy}"] for r in rounds]
        cells = []
        for key in ("wall", "sync"):
            ratios = [m[key] / b[key] for m, b in zip(mine, base, strict=True)]
            cells += [
                median_range([m[key] for m in mine]),
                median_range([b[key] for b in base]),
                f"**{median_range(ratios)}**",
            ]
        name = "unit" if strategy == "unit" else "standardize --scope channel"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    starts = [r["client start"] for r in rounds]
    loads = ", ".join(f"{r['load']:.2f}" for r in rounds)
    steals = ", ".join(f"{100 * r.get('steal', 0.0):.0f}%" for r in rounds)
    lines += [
        "",
        f"Client start (local cluster of 2 processes, imports warmed): {median_range(starts)} s, "
        f"not in the times above. Load average at each round's start: {loads}; CPU time "
        f"stolen by other machines on the host during each round: {steals}.",
        "",
    ]
    for strategy in ("unit", "standardize"):
        phased = [r[f"phases {strategy}"] for r in rounds if f"phases {strategy}" in r]
        if not phased:
            continue
        lines += [
            f"### Phases of one instrumented pixscale run, {strategy} (s; median [min–max])",
            "",
            "| phase (client) | s |",
            "|---|---:|",
        ]
        names = [k for k in phased[0] if k not in ("tasks", "workers")]
        for name in names:
            values = [p.get(name, 0.0) for p in phased]
            lines.append(f"| {name} | {median_range(values)} |")
        lines += ["", "| tasks | count | busy s (sum) | longest s |", "|---|---:|---:|---:|"]
        for key in phased[0]["tasks"]:
            rows = [p["tasks"].get(key, [0, 0.0, 0.0]) for p in phased]
            lines.append(
                f"| {key} | {rows[0][0]} | {median_range([r[1] for r in rows])} "
                f"| {median_range([r[2] for r in rows])} |"
            )
        lines += [
            "",
            "| inside the tasks (thread-s, both workers) | s | calls |",
            "|---|---:|---:|",
        ]
        for key in phased[0]["workers"]:
            rows = [p["workers"].get(key, [0.0, 0]) for p in phased]
            lines.append(f"| {key} | {median_range([r[0] for r in rows])} | {rows[0][1]} |")
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--folder", type=Path, help="where to put data (default: a temp dir)")
    parser.add_argument("--table", type=Path, help="also write the tables to this file")
    parser.add_argument("--hash", action="store_true", help="print the outputs' file hashes")
    parser.add_argument("--keep-input", action="store_true")
    parser.add_argument("--chunk", type=int, default=CHUNK, help="images per input chunk")
    parser.add_argument("--no-phases", action="store_true", help="skip the instrumented runs")
    parser.add_argument("--no-baseline", action="store_true", help="time pixscale only (raw JSON)")
    parser.add_argument("--partition-mb", type=float, default=64.0, help="the engine's option")
    parser.add_argument(
        "--what-if",
        default="",
        help="comma-separated experiments: isal-crc (CRC-32 by ISA-L; needs the isal "
        "package), no-sha256 (the input's digest skipped), zarr-python-read (the input "
        "decoded by zarr-python instead of read by byte range), stats-1-thread (a "
        "statistics task sums on one thread)",
    )
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="pixscale-dask-phases-"))
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / ("in.zarr" if args.chunk == CHUNK else f"in-{args.chunk}.zarr")
    make_input(source, args.chunk)
    out = folder / "out.zarr"
    try:
        if args.hash:
            for strategy in ("unit", "standardize"):
                shutil.rmtree(out, ignore_errors=True)
                done = subprocess.run(
                    [sys.executable, "-c", HASH, str(source), str(out), strategy],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                files = tree_hashes(out)
                whole = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
                print(f"{strategy}: record crc32 {done.stdout.strip()}, {len(files)} files, "
                      f"sha256 of all files {whole}")  # fmt: skip
                shutil.rmtree(out, ignore_errors=True)
            return
        rounds = []
        for number in range(args.runs):
            load = os.getloadavg()[0]
            steal, total = cpu_times()
            done = subprocess.run(
                [sys.executable, "-c", ROUND, str(source), str(out), str(number % 2),
                 "0" if args.no_phases else "1", args.what_if, str(args.partition_mb),
                 "0" if args.no_baseline else "1"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            measured["load"] = load
            steal_after, total_after = cpu_times()
            measured["steal"] = (steal_after - steal) / max(1, total_after - total)
            print(json.dumps(measured), file=sys.stderr)
            rounds.append(measured)
        if args.no_baseline:
            for strategy in ("unit", "standardize"):
                walls = [r[f"pixscale {strategy}"]["wall"] for r in rounds]
                print(f"pixscale {strategy}: {median_range(walls)} s")
            return
        lines = [
            f"Machine: {os.cpu_count()} cores; input {SHAPE} uint8 "
            f"({SHAPE[0] * SHAPE[1] * SHAPE[2] / (1 << 30):.2f} GiB), "
            f"chunks of {args.chunk} images, "
            f"uncompressed; {args.runs} rounds, cases alternated.",
            "",
            *tables(rounds),
        ]
        text = "\n".join(lines) + "\n"
        print(text)
        if args.table:
            args.table.write_text(text)
    finally:
        if not args.keep_input and args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
