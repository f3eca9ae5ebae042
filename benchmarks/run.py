"""Benchmark pixscale against the naive numpy code, scikit-learn and the raw write cost.

    python benchmarks/run.py                 # MNIST and a generated 1.1 GiB set
    python benchmarks/run.py --size-gib 0.2  # quicker
    python benchmarks/run.py --memory 0.25,1.1,4.4  # peak RSS against dataset size

Every case runs in its own process after ``sync`` (so no case pays for an earlier one's
write-back) with its input read into the page cache; wall time and that process's peak RSS
(GNU time) are measured in the same run, and ratios are against the naive numpy baseline.
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MNIST = HERE.parent.parent / "shared" / "data" / "mnist" / "train-images-idx3-ubyte.gz"
PIXSCALE = str(Path(sys.executable).parent / "pixscale")
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").is_file() else None
#: Pause after sync so the file system finishes freeing the previous output.
SETTLE_SECONDS = 2.0
STANDARDIZE_CHANNEL = ("-s", "standardize", "--scope", "channel")

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


def run_once(
    command: list[str], output: Path, inputs: list[Path] | None = None
) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of one run of ``command``, inputs in the page cache.

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
        kib = float(report.read().split()[-1]) if GNU_TIME else usage.ru_maxrss
    return elapsed, kib / 1024


def measure_all(
    cases: list[tuple[str, list[str]]], runs: int, output: Path, inputs: list[Path]
) -> dict[str, tuple[float, float]]:
    """Best time and peak RSS per case; the runs go round-robin over the cases, so slow
    phases of the machine (page-cache write-back) hit every case alike."""
    best: dict[str, tuple[float, float]] = {}
    for round_number in range(runs):
        for name, command in cases:
            seconds, rss = run_once(command, output, inputs)
            old = best.get(name, (float("inf"), 0.0))
            best[name] = (min(old[0], seconds), max(old[1], rss))
            print(f"round {round_number + 1}: {name}: {seconds:.2f} s", file=sys.stderr)
    return best


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


def row(name: str, seconds: float, rss: float, in_bytes: int, baseline: float) -> str:
    rate = in_bytes / seconds / (1 << 20)
    return f"| {name} | {seconds:.2f} | {rate:.0f} | {rss:.0f} | {seconds / baseline:.2f} |"


def bench_big(folder: Path, size_gib: float, sklearn: bool, runs: int) -> list[str]:
    source = folder / "big.npy"
    shape = make_dataset_elsewhere(source, size_gib)
    in_bytes = int(np.prod(shape))
    out = folder / "out.npy"
    h5 = out.with_suffix(".h5")
    lines = [
        f"### {in_bytes / (1 << 30):.2f} GiB uint8 .npy {shape} → float32 .npy (or .h5)",
        "",
        "| case | wall s | input MiB/s | peak RSS MiB | × naive |",
        "|---|---:|---:|---:|---:|",
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
        ("pixscale CLI, unit", [PIXSCALE, "convert", str(source), "-o", str(out), "-q"]),
        (
            "pixscale CLI, unit --io buffered",
            [PIXSCALE, "convert", str(source), "-o", str(out), "-q", "--io", "buffered"],
        ),
        ("pixscale library, unit", python(LIBRARY.format(spec=""), str(source), str(out))),
        ("naive numpy, standardize per channel", python(NAIVE_STANDARDIZE, str(source), str(out))),
        (
            "pixscale CLI, standardize --scope channel",
            [PIXSCALE, "convert", str(source), "-o", str(out), "-q", *STANDARDIZE_CHANNEL],
        ),
        (
            "pixscale CLI, standardize --scope channel → .h5",
            [PIXSCALE, "convert", str(source), "-o", str(h5), "-q", *STANDARDIZE_CHANNEL],
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
    results = {name: seconds for name, (seconds, _) in measured.items()}
    baseline = results[cases[0][0]]
    for name, (seconds, rss) in measured.items():
        lines.append(row(name, seconds, rss, in_bytes, baseline))
    drop(out)
    source.unlink()
    unit = results["pixscale CLI, unit"]
    buffered = results["pixscale CLI, unit --io buffered"]
    cached = results["write output bytes only, page cache"]
    direct = results["write output bytes only, O_DIRECT"]
    lines += [
        "",
        f"- unit: {unit / results['naive numpy, unit']:.2f}× naive; "
        f"{unit / min(cached, direct):.2f}× the fastest raw write of the output bytes "
        f"(page cache {cached:.2f} s, O_DIRECT {direct:.2f} s)",
        f"- unit --io buffered: {buffered / cached:.2f}× the raw write through the page cache",
        f"- standardize per channel: "
        f"{results['pixscale CLI, standardize --scope channel'] / unit:.2f}× unit",
    ]
    return lines


def bench_mnist(folder: Path, runs: int) -> list[str]:
    if not MNIST.is_file():
        return ["(MNIST not found: skipped)"]
    out = folder / "mnist.h5"
    lines = [
        "### MNIST train IDX.gz (60000×28×28) → float32 .h5",
        "",
        "| case | wall s | input MiB/s | peak RSS MiB | × naive |",
        "|---|---:|---:|---:|---:|",
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
    baseline = measured[cases[0][0]][0]
    for name, (seconds, rss) in measured.items():
        lines.append(row(name, seconds, rss, in_bytes, baseline))
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
        "| storage | write s | MiB | ratio | random sample read µs |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, command in cases:
        drop(out)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        size = out.stat().st_size
        reads = subprocess.run(
            python(RANDOM_READS, str(out)), check=True, capture_output=True, text=True
        )
        lines.append(
            f"| {name} | {measured[name][0]:.2f} | {size / (1 << 20):.1f} | {raw / size:.2f} | "
            f"{float(reads.stdout):.0f} |"
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
        "| input GiB | unit → .npy: wall s | peak RSS MiB | "
        "standardize --scope channel → .h5: wall s | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|",
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
        (unit_s, unit_rss), (std_s, std_rss) = measured["unit"], measured["standardize"]
        gib = int(np.prod(shape)) / (1 << 30)
        lines.append(f"| {gib:.2f} | {unit_s:.2f} | {unit_rss:.0f} | {std_s:.2f} | {std_rss:.0f} |")
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
            "| case | wall s | input MiB/s | peak RSS MiB | × local |",
            "|---|---:|---:|---:|---:|",
        ]
        baseline = measured["local engine"][0]
        for name, (seconds, rss) in measured.items():
            lines.append(row(name, seconds, rss, in_bytes, baseline))
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
    parser.add_argument("--runs", type=int, default=3, help="best of N runs per case")
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
