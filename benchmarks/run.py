"""Benchmark pixscale against the naive numpy code, scikit-learn and the raw write cost.

    python benchmarks/run.py                 # MNIST and a generated 1.1 GiB set
    python benchmarks/run.py --size-gib 0.2  # quicker
    python benchmarks/run.py --memory 0.25,1.1,4.4  # peak RSS against dataset size

Every case runs in its own process after ``sync`` (so no case pays for an earlier one's
write-back) with its input read into the page cache; wall time and that process's peak RSS
(GNU time) are measured in the same run. The runs go round-robin over the cases, ``--runs``
rounds in all, and every round is kept: a time cell reads ``median [min–max]`` over the
rounds, and a ratio cell is the median [min–max] of the per-round ratios, each against the
same round of the baseline case (the naive numpy code; with --dask, the local engine).
Peak RSS is the highest over the rounds.

Write-back: pixscale (CLI and library) makes its output durable (``fsync`` of the files and
folders) before it commits it, so its wall time includes getting the bytes to the disk. The
naive numpy, naive h5py, scikit-learn and Blosc2 (h5py) cases and "write output bytes only,
page cache" do not sync: they end with the output still dirty in the page cache. "write output
bytes only, O_DIRECT" bypasses the page cache. So after each case's process ends an
``os.sync()`` is timed:

- "wall s": the process's wall time, as a user waits for it;
- "wall s incl. sync": that plus the ``os.sync()`` after it, i.e. until the output is on disk
  (the fair comparison with pixscale, whose own sync leaves next to nothing for it to do).

``os.sync()`` flushes every file system of the machine, so on a busy machine it also counts
other programs' writes. Each of the two ratio columns ("× naive" and "× naive incl. sync")
uses the matching time column of both the case and the baseline.
Writes a Markdown table to stdout and, with --table FILE, to FILE.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MNIST = HERE.parent.parent / "shared" / "data" / "mnist" / "train-images-idx3-ubyte.gz"
PIXSCALE = str(Path(sys.executable).parent / "pixscale")
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").is_file() else None
#: Pause after sync so the file system finishes freeing the previous output.
SETTLE_SECONDS = 2.0
STANDARDIZE_CHANNEL = ("-s", "standardize", "--scope", "channel")
STANDARDIZE_PIXEL = ("-s", "standardize", "--scope", "pixel")

NAIVE_UNIT = """
import numpy as np, sys
x = np.load(sys.argv[1])
np.save(sys.argv[2], x.astype(np.float32) / 255)
"""
NAIVE_STANDARDIZE = """
import numpy as np, sys
x = np.load(sys.argv[1])
mean = x.mean(axis=(0, 1, 2)); std = x.std(axis=(0, 1, 2))
np.save(sys.argv[2], ((x - mean) / std).astype(np.float32))
"""
SKLEARN = """
import numpy as np, sys
from sklearn.preprocessing import {scaler}
x = np.load(sys.argv[1])
flat = x.reshape(len(x), -1)
np.save(sys.argv[2], {scaler}().fit_transform(flat).astype(np.float32).reshape(x.shape))
"""
WRITE_ONLY = """
import numpy as np, sys
shape = tuple(int(n) for n in sys.argv[3].split(","))
# Non-zero bytes: a virtual disk may treat runs of zeros specially.
block = np.random.default_rng(0).integers(1, 255, 4 << 20, dtype=np.uint8)
total = 4 * int(np.prod(shape))
with open(sys.argv[2], "wb") as f:
    f.write(b"\\x93NUMPY" + bytes(120))
    while total > 0:
        n = min(total, block.size)
        f.write(block[:n].data)
        total -= n
"""
WRITE_ONLY_DIRECT = """
import os, sys
import numpy as np
shape = tuple(int(n) for n in sys.argv[3].split(","))
raw = np.random.default_rng(0).integers(1, 255, (4 << 20) + 4096, dtype=np.uint8)
block = raw[-raw.ctypes.data % 4096 :][: 4 << 20]  # O_DIRECT needs aligned memory
total = 4096 + 4 * int(np.prod(shape))
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
written = 0
while written < total:
    written += os.write(fd, block[: min(block.size, -(-(total - written) // 4096) * 4096)].data)
os.ftruncate(fd, total)
os.close(fd)
"""
LIBRARY = """
import sys
from pathlib import Path
from pixscale import Spec, convert
convert(Path(sys.argv[1]), Path(sys.argv[2]), Spec({spec}))
"""
NAIVE_MNIST_H5 = """
import gzip, sys
import h5py, numpy as np
data = gzip.open(sys.argv[1]).read()
x = np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)
with h5py.File(sys.argv[2], "w") as f:
    f["images"] = x.astype(np.float32) / 255
"""

BLOSC2_MNIST_H5 = """
import gzip, sys
import h5py, hdf5plugin, numpy as np
data = gzip.open(sys.argv[1]).read()
x = np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)
codec = hdf5plugin.Blosc2(cname=sys.argv[3], clevel=5, filters=hdf5plugin.Blosc2.SHUFFLE)
with h5py.File(sys.argv[2], "w") as f:
    d = f.create_dataset("images", shape=x.shape, dtype="<f4", chunks=(20, 28, 28), **codec)
    for s in range(0, len(x), 4096):
        d[s : s + 4096] = np.divide(x[s : s + 4096], np.float32(255))
"""
#: A training loop's access: random single samples, file in the page cache.
RANDOM_READS = """
import sys, time
import h5py, numpy as np
try:
    import hdf5plugin  # noqa: F401  (only the Blosc2 cases need it)
except ImportError:
    pass
with open(sys.argv[1], "rb") as whole:  # into the page cache, however it was written
    while whole.read(16 << 20):
        pass
with h5py.File(sys.argv[1], "r") as f:
    images = f["images"]
    picks = np.random.default_rng(0).integers(0, len(images), 4000)
    images[0]
    start = time.perf_counter()
    for i in picks:
        images[i]
    print((time.perf_counter() - start) / len(picks) * 1e6)
"""


def warm(inputs: list[Path]) -> None:
    """Read the inputs so each case finds them in the page cache: a case that follows one
    using 20 GiB (naive standardize) would otherwise read from the disk, the others not."""
    for path in inputs:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for name in files:
            with name.open("rb") as handle:
                while handle.read(16 << 20):
                    pass


@dataclass(frozen=True)
class Sample:
    """One run of one case: its wall time, the ``os.sync()`` after it and its peak RSS."""

    seconds: float
    sync_seconds: float
    rss_mib: float

    @property
    def synced(self) -> float:
        """Wall time until the output is on disk: the process and the sync after it."""
        return self.seconds + self.sync_seconds


def run_once(command: list[str], output: Path, inputs: list[Path] | None = None) -> Sample:
    """One run of ``command``, inputs in the page cache, then a timed ``os.sync()``.

    The RSS comes from GNU time where installed: a child's own ru_maxrss also counts the
    parent's high-water mark from before exec, which would inflate small processes.
    """
    drop(output)
    warm(inputs or [])
    os.sync()  # every case starts with no dirty pages waiting to be written back
    time.sleep(SETTLE_SECONDS)
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        wrapped = [GNU_TIME, "-f", "%M", "-o", report.name, *command] if GNU_TIME else command
        start = time.perf_counter()
        process = subprocess.Popen(wrapped, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"failed: {' '.join(command)}")
        start = time.perf_counter()
        os.sync()  # the write-back the case left behind (pixscale syncs its own output)
        sync_seconds = time.perf_counter() - start
        kib = float(report.read().split()[-1]) if GNU_TIME else usage.ru_maxrss
    return Sample(elapsed, sync_seconds, kib / 1024)


def measure_all(
    cases: list[tuple[str, list[str]]], runs: int, output: Path, inputs: list[Path]
) -> dict[str, list[Sample]]:
    """Every round's sample per case, in the order of ``cases``; the runs go round-robin
    over the cases, so slow phases of the machine (page-cache write-back) hit every case
    alike, and round i of every case can be compared with round i of the baseline."""
    samples: dict[str, list[Sample]] = {name: [] for name, _ in cases}
    for round_number in range(runs):
        for name, command in cases:
            sample = run_once(command, output, inputs)
            samples[name].append(sample)
            print(
                f"round {round_number + 1}: {name}: {sample.seconds:.2f} s "
                f"+ sync {sample.sync_seconds:.2f} s",
                file=sys.stderr,
            )
    return samples


def walls(samples: Sequence[Sample], synced: bool = False) -> list[float]:
    """Per-round wall times, with the sync after each run when ``synced``."""
    return [s.synced if synced else s.seconds for s in samples]


def per_round(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Ratio of round i to round i (``measure_all`` runs every case once per round)."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def spread(values: Sequence[float], digits: int = 2) -> str:
    """``median [min–max]`` of ``values``."""
    low, mid, high = np.min(values), np.median(values), np.max(values)
    return f"{mid:.{digits}f} [{low:.{digits}f}–{high:.{digits}f}]"


def versus(
    samples: Sequence[Sample],
    baseline: Sequence[Sample] | Callable[[bool], list[float]],
    name: str,
) -> str:
    """``X× name (incl. sync: Y×)``: medians [ranges] of per-round ratios; ``baseline`` is
    a case's samples or a function giving its per-round times (without/with sync)."""
    text = []
    for synced in (False, True):
        reference = baseline(synced) if callable(baseline) else walls(baseline, synced)
        text.append(spread(per_round(walls(samples, synced), reference)))
    return f"{text[0]}× {name} (incl. sync: {text[1]}×)"


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def make_dataset(path: Path, size_gib: float) -> tuple[int, ...]:
    """Photograph-like uint8 RGB images (smooth gradients plus noise), written in chunks."""
    side = 96
    count = int(size_gib * (1 << 30)) // (side * side * 3)
    shape = (count, side, side, 3)
    rng = np.random.default_rng(0)
    base = np.linspace(0, 200, side, dtype=np.float32)
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": shape}
        )
        for start in range(0, count, 1000):
            n = min(1000, count - start)
            noise = rng.integers(0, 56, (n, side, side, 3), dtype=np.uint8)
            grad = (base[None, :, None, None] + base[None, None, :, None] / 4).astype(np.uint8)
            handle.write((noise + grad).data)
    return shape


def make_dataset_elsewhere(path: Path, size_gib: float) -> tuple[int, ...]:
    """``make_dataset`` in a child process, so this process stays small."""
    code = (
        f"from run import make_dataset; from pathlib import Path; "
        f"print(','.join(map(str, make_dataset(Path({str(path)!r}), {size_gib}))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, check=True
    )
    return tuple(int(n) for n in result.stdout.strip().split(","))


def drop(path: Path) -> None:
    for p in path.parent.glob(path.name + "*"):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    for p in path.parent.glob(path.stem + ".*"):
        if p.suffix != ".py":
            p.unlink(missing_ok=True)


TIME_HEADER = (
    "| case | wall s | wall s incl. sync | input MiB/s | peak RSS MiB | × {base} | "
    "× {base} incl. sync |\n|---|---:|---:|---:|---:|---:|---:|"
)


def row(name: str, samples: list[Sample], baseline: list[Sample], in_bytes: int) -> str:
    """A table row: times and per-round ratios to ``baseline`` as ``median [min–max]``."""
    rate = in_bytes / float(np.median(walls(samples))) / (1 << 20)
    rss = max(s.rss_mib for s in samples)
    cells = [
        spread(walls(samples)),
        spread(walls(samples, True)),
        f"{rate:.0f}",
        f"{rss:.0f}",
        spread(per_round(walls(samples), walls(baseline))),
        spread(per_round(walls(samples, True), walls(baseline, True))),
    ]
    return f"| {name} | {' | '.join(cells)} |"


def bench_big(folder: Path, size_gib: float, sklearn: bool, runs: int) -> list[str]:
    source = folder / "big.npy"
    shape = make_dataset_elsewhere(source, size_gib)
    in_bytes = int(np.prod(shape))
    out = folder / "out.npy"
    h5 = out.with_suffix(".h5")
    convert = [PIXSCALE, "convert", str(source), "-o", str(out), "-q"]
    lines = [
        f"### {in_bytes / (1 << 30):.2f} GiB uint8 .npy {shape} → float32 .npy (or .h5)",
        "",
        TIME_HEADER.format(base="naive"),
    ]
    cases: list[tuple[str, list[str]]] = [
        ("naive numpy, unit", python(NAIVE_UNIT, str(source), str(out))),
        (
            "write output bytes only, page cache",
            python(WRITE_ONLY, str(source), str(out), ",".join(map(str, shape))),
        ),
        (
            "write output bytes only, O_DIRECT",
            python(WRITE_ONLY_DIRECT, str(source), str(out), ",".join(map(str, shape))),
        ),
        ("pixscale CLI, unit", convert),
        ("pixscale CLI, unit --io buffered", [*convert, "--io", "buffered"]),
        ("pixscale library, unit", python(LIBRARY.format(spec=""), str(source), str(out))),
        ("naive numpy, standardize per channel", python(NAIVE_STANDARDIZE, str(source), str(out))),
        ("pixscale CLI, standardize --scope channel", [*convert, *STANDARDIZE_CHANNEL]),
        (
            "pixscale CLI, standardize --scope channel → .h5",
            [PIXSCALE, "convert", str(source), "-o", str(h5), "-q", *STANDARDIZE_CHANNEL],
        ),
        # The scope of scikit-learn's scalers: one statistic per feature, i.e. per element
        # (row, column, channel) of the image. Against MinMaxScaler the output can differ
        # in the last bit only: MinMaxScaler computes x * scale + min_ in float64 and the
        # script rounds that to float32, pixscale gives the float32 nearest
        # (x - min) / (max - min). Constant positions map to 0 in both (span taken as 1).
        # StandardScaler, like pixscale, uses ddof=0 and centres constant features only.
        ("pixscale CLI, standardize --scope pixel", [*convert, *STANDARDIZE_PIXEL]),
        (
            "pixscale CLI, range --from-data --scope pixel",
            [*convert, "-s", "range", "--from-data", "--scope", "pixel"],
        ),
    ]
    if sklearn:
        cases += [
            (
                "scikit-learn MinMaxScaler",
                python(SKLEARN.format(scaler="MinMaxScaler"), str(source), str(out)),
            ),
            (
                "scikit-learn StandardScaler",
                python(SKLEARN.format(scaler="StandardScaler"), str(source), str(out)),
            ),
        ]
    measured = measure_all(cases, runs, out, [source])
    baseline = measured[cases[0][0]]
    for name, samples in measured.items():
        lines.append(row(name, samples, baseline, in_bytes))
    drop(out)
    source.unlink()
    lines += [""] + derived_big(measured, sklearn)
    return lines


def derived_big(measured: dict[str, list[Sample]], sklearn: bool) -> list[str]:
    """The comparisons under the big table, as medians [ranges] of per-round ratios."""
    unit = measured["pixscale CLI, unit"]
    cached = measured["write output bytes only, page cache"]
    direct = measured["write output bytes only, O_DIRECT"]
    buffered = measured["pixscale CLI, unit --io buffered"]

    def fastest_raw(synced: bool) -> list[float]:
        return [
            min(pair) for pair in zip(walls(cached, synced), walls(direct, synced), strict=True)
        ]

    lines = [
        f"- unit: {versus(unit, measured['naive numpy, unit'], 'naive')}; "
        f"{versus(unit, fastest_raw, 'the fastest raw write of the output bytes')} "
        f"(page cache {spread(walls(cached))} s, incl. sync {spread(walls(cached, True))} s; "
        f"O_DIRECT {spread(walls(direct))} s, incl. sync {spread(walls(direct, True))} s)",
        f"- unit --io buffered: {versus(buffered, cached, 'the raw write through the page cache')}",
        f"- standardize per channel: "
        f"{versus(measured['pixscale CLI, standardize --scope channel'], unit, 'unit')}",
    ]
    if sklearn:
        standardize = measured["pixscale CLI, standardize --scope pixel"]
        minmax = measured["pixscale CLI, range --from-data --scope pixel"]
        scaler = measured["scikit-learn StandardScaler"]
        minmax_scaler = measured["scikit-learn MinMaxScaler"]
        lines += [
            f"- standardize --scope pixel: {versus(standardize, scaler, 'StandardScaler')}",
            f"- range --scope pixel: {versus(minmax, minmax_scaler, 'MinMaxScaler')}",
        ]
    return lines


def bench_mnist(folder: Path, runs: int) -> list[str]:
    if not MNIST.is_file():
        return ["(MNIST not found: skipped)"]
    out = folder / "mnist.h5"
    lines = [
        "### MNIST train IDX.gz (60000×28×28) → float32 .h5",
        "",
        TIME_HEADER.format(base="naive"),
    ]
    in_bytes = 60000 * 784
    cases = [
        ("naive gzip + numpy + h5py", python(NAIVE_MNIST_H5, str(MNIST), str(out))),
        ("pixscale CLI, unit", [PIXSCALE, "convert", str(MNIST), "-o", str(out), "-q"]),
        (
            "pixscale CLI, standardize",
            [PIXSCALE, "convert", str(MNIST), "-o", str(out), "-q", "-s", "standardize"],
        ),
    ]
    measured = measure_all(cases, runs, out, [MNIST])
    baseline = measured[cases[0][0]]
    for name, samples in measured.items():
        lines.append(row(name, samples, baseline, in_bytes))
    out.unlink(missing_ok=True)
    return lines


def bench_compression(folder: Path, runs: int) -> list[str]:
    """HDF5 storage of MNIST train: write time, size and a training loop's random reads,
    for pixscale's options and, where hdf5plugin is installed, Blosc2."""
    if not MNIST.is_file():
        return ["(MNIST not found: skipped)"]
    out = folder / "mnist.h5"
    base = [PIXSCALE, "convert", str(MNIST), "-o", str(out), "-q"]
    cases = [
        ("pixscale, uncompressed (contiguous)", base),
        ("pixscale, uncompressed, 1 MiB chunks", [*base, "--chunk-images", "334"]),
        ("pixscale, gzip (64 KiB chunks)", [*base, "--compression", "gzip"]),
        ("pixscale, gzip, 1 MiB chunks", [*base, "--compression", "gzip", "--chunk-images", "334"]),
        ("pixscale, lzf (64 KiB chunks)", [*base, "--compression", "lzf"]),
        ("pixscale, lzf, 1 MiB chunks", [*base, "--compression", "lzf", "--chunk-images", "334"]),
    ]
    try:
        import hdf5plugin  # noqa: F401
    except ImportError:
        pass
    else:
        for codec in ("lz4", "zstd"):
            cases.append(
                (
                    f"Blosc2 {codec} + shuffle, 64 KiB chunks (h5py)",
                    python(BLOSC2_MNIST_H5, str(MNIST), str(out), codec),
                )
            )
    measured = measure_all(cases, runs, out, [MNIST])
    raw = 60000 * 784 * 4
    lines = [
        "### MNIST train as float32 HDF5: storage options",
        "",
        "| storage | write s | write s incl. sync | MiB | ratio | random sample read µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, command in cases:
        drop(out)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        size = out.stat().st_size
        reads = subprocess.run(
            python(RANDOM_READS, str(out)), check=True, capture_output=True, text=True
        )
        lines.append(
            f"| {name} | {spread(walls(measured[name]))} | "
            f"{spread(walls(measured[name], True))} | {size / (1 << 20):.1f} | "
            f"{raw / size:.2f} | {float(reads.stdout):.0f} |"
        )
    drop(out)
    return lines


def bench_memory(folder: Path, sizes: list[float], runs: int) -> list[str]:
    """pixscale's peak RSS as the dataset grows (the naive code cannot run at these sizes:
    it needs about 9× the input in memory)."""
    out = folder / "out.npy"
    h5 = out.with_suffix(".h5")
    lines = [
        "### Peak memory against dataset size (96×96×3 uint8 .npy)",
        "",
        "| input GiB | unit → .npy: wall s | wall s incl. sync | peak RSS MiB | "
        "standardize --scope channel → .h5: wall s | wall s incl. sync | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        source = folder / "big.npy"
        shape = make_dataset_elsewhere(source, size)
        cases = [
            ("unit", [PIXSCALE, "convert", str(source), "-o", str(out), "-q"]),
            (
                "standardize",
                [PIXSCALE, "convert", str(source), "-o", str(h5), "-q", *STANDARDIZE_CHANNEL],
            ),
        ]
        measured = measure_all(cases, runs, out, [source])
        cells = [f"{int(np.prod(shape)) / (1 << 30):.2f}"]
        for samples in measured["unit"], measured["standardize"]:
            cells += [
                spread(walls(samples)),
                spread(walls(samples, True)),
                f"{max(s.rss_mib for s in samples):.0f}",
            ]
        lines.append(f"| {' | '.join(cells)} |")
        drop(out)
        source.unlink()
    return lines


def make_folder(folder: Path, count: int) -> None:
    """``count`` 128×128 RGB PNGs in 10 class folders: decoding is the work."""
    from PIL import Image

    rng = np.random.default_rng(0)
    base = np.linspace(0, 200, 128, dtype=np.float32)
    grad = (base[:, None, None] + base[None, :, None] / 4).astype(np.uint8)
    for index in range(count):
        target = folder / f"class-{index % 10}"
        target.mkdir(parents=True, exist_ok=True)
        pixels = grad + rng.integers(0, 56, (128, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(target / f"{index:06d}.png", compress_level=1)


def bench_dask(folder: Path, size_gib: float, images: int, runs: int) -> list[str]:
    """Local engine against the dask engine on a local cluster of 1 and 2 workers."""
    lines: list[str] = []
    source = folder / "big.npy"
    photos = folder / "photos"
    shape = make_dataset_elsewhere(source, size_gib)
    make_folder(photos, images)
    out = folder / "out.h5"
    for title, path, in_bytes in (
        (
            f"{size_gib:.2f} GiB .npy {shape}, standardize --scope channel",
            source,
            int(np.prod(shape)),
        ),
        (
            f"folder of {images} PNGs (128×128 RGB, 10 classes), unit",
            photos,
            images * 128 * 128 * 3,
        ),
    ):
        extra = list(STANDARDIZE_CHANNEL) if path == source else []
        base = [PIXSCALE, "convert", str(path), "-o", str(out), "-q", *extra]
        cases = [
            ("local engine", base),
            ("dask, 1 worker", [*base, "--engine", "dask", "--workers", "1"]),
            ("dask, 2 workers", [*base, "--engine", "dask", "--workers", "2"]),
        ]
        measured = measure_all(cases, runs, out, [path])
        lines += [
            f"### {title}",
            "",
            TIME_HEADER.format(base="local"),
        ]
        baseline = measured["local engine"]
        for name, samples in measured.items():
            lines.append(row(name, samples, baseline, in_bytes))
        lines.append("")
        for shards in folder.glob("*.shards"):
            shutil.rmtree(shards)
    source.unlink()
    shutil.rmtree(photos)
    lines.append("Peak RSS is the client process only; dask workers are separate processes.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.1)
    parser.add_argument(
        "--runs", type=int, default=3, help="rounds over the cases (median [min–max] reported)"
    )
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--dir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--table", type=Path, help="also write the table here")
    parser.add_argument(
        "--dask",
        action="store_true",
        help="only compare the local and dask engines (needs pixscale[dask])",
    )
    parser.add_argument("--images", type=int, default=20000, help="PNGs for --dask")
    parser.add_argument(
        "--memory",
        metavar="GIB,GIB,…",
        help="only measure pixscale's peak RSS on generated sets of these sizes",
    )
    args = parser.parse_args()
    sklearn = not args.no_sklearn and shutil.which(sys.executable) is not None
    try:
        import sklearn as _  # noqa: F401
    except ImportError:
        sklearn = False
    folder = Path(tempfile.mkdtemp(prefix="pixscale-bench-", dir=args.dir))
    try:
        lines = [f"Machine: {os.cpu_count()} cores, numpy {np.__version__}.", ""]
        if args.dask:
            lines += bench_dask(folder, args.size_gib, args.images, args.runs)
        elif args.memory:
            sizes = [float(size) for size in args.memory.split(",")]
            lines += bench_memory(folder, sizes, args.runs)
        else:
            lines += bench_mnist(folder, args.runs) + [""]
            lines += bench_compression(folder, args.runs) + [""]
            lines += bench_big(folder, args.size_gib, sklearn, args.runs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.table:
        args.table.write_text(table)


if __name__ == "__main__":
    main()
