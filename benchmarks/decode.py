"""Decoding images: pixscale against plain Pillow loops, one process and a pool.

    python benchmarks/decode.py --table benchmarks/decode-results.md
    python benchmarks/decode.py --before /tmp/pixscale-before/src --table …  # before/after
    python benchmarks/decode.py --photos 1000 --runs 3 --skip resize          # quicker

(a) A folder of generated photo-like JPEGs (256×256 RGB, smooth gradients and shapes plus
noise, quality 90) converted to float32 .h5, and (b) MNIST train as one Parquet file in the
Hugging Face Hub's layout (PNG bytes, row groups of 1,000) converted to .h5, each against a
one-process loop that decodes every image with Pillow and divides by 255 into a reused
float32 buffer (256 images for the folder, a row group for Parquet: what a loader feeding
training holds, not the whole dataset).

Both are timed at two sizes, the whole set and its first quarter, in the same round; the
*marginal* rate, (N - N/4) / (t(N) - t(N/4)), leaves out what does not grow with the data
(interpreter start, imports, pool start, the output's set-up), and its ratio to the
baseline's marginal rate in the same round is the figure reported, median and range over
``--runs`` rounds. ``--before SRC`` also times the pixscale found in ``SRC`` (a copy of
``src/`` from before a change) in the same rounds, so before and after meet the same noise.
``--peers`` adds whole-run rows for the same loop in a 2-process ``multiprocessing.Pool``,
torch's ``DataLoader(num_workers=2)`` (when torch is installed) and pixscale with each
decoding backend forced.

Every case is its own process, started after ``sync`` with its input in the page cache; the
rounds go through the cases in turn (each round in a rotated order), so a slow phase of the
machine hits every case alike.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("PIXSCALE_TEST_DATA", HERE.parent.parent / "shared" / "data"))
MNIST = DATA / "mnist" / "train-images-idx3-ubyte.gz"
MNIST_LABELS = DATA / "mnist" / "train-labels-idx1-ubyte.gz"
PIXSCALE = str(Path(sys.executable).parent / "pixscale")
SETTLE_SECONDS = 1.0
SIDE = 256

SINGLE_FOLDER = """
import sys, numpy as np
from pathlib import Path
from PIL import Image
files = sorted(Path(sys.argv[1]).glob("*.jpg"))
out = np.empty((256, 256, 256, 3), np.float32)
for i, path in enumerate(files):
    with Image.open(path) as image:
        out[i % 256] = np.asarray(image.convert("RGB")).astype(np.float32) / 255
"""
POOL_FOLDER = """
import sys, numpy as np
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from PIL import Image

def load(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.float32) / 255

if __name__ == "__main__":
    files = sorted(Path(sys.argv[1]).glob("*.jpg"))
    out = np.empty((len(files), 256, 256, 3), np.float32)
    with Pool(2) as pool:
        for i, values in enumerate(pool.imap(load, files, chunksize=16)):
            out[i] = values
"""
POOL_UINT8_FOLDER = """
import sys, numpy as np
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from PIL import Image

def load(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))

if __name__ == "__main__":
    files = sorted(Path(sys.argv[1]).glob("*.jpg"))
    out = np.empty((len(files), 256, 256, 3), np.float32)
    with Pool(2) as pool:
        for i, pixels in enumerate(pool.imap(load, files, chunksize=16)):
            out[i] = pixels.astype(np.float32) / 255
"""
TORCH_FOLDER = """
import sys, numpy as np, torch
from pathlib import Path
from PIL import Image
from torch.utils.data import DataLoader, Dataset

class Folder(Dataset):
    def __init__(self, root):
        self.files = sorted(Path(root).glob("*.jpg"))
    def __len__(self):
        return len(self.files)
    def __getitem__(self, index):
        with Image.open(self.files[index]) as image:
            pixels = np.asarray(image.convert("RGB")).astype(np.float32) / 255
        return torch.from_numpy(pixels)

if __name__ == "__main__":
    data = Folder(sys.argv[1])
    out = np.empty((len(data), 256, 256, 3), np.float32)
    at = 0
    for batch in DataLoader(data, batch_size=64, num_workers=2):
        out[at : at + len(batch)] = batch.numpy()
        at += len(batch)
"""
SINGLE_PARQUET = """
import io, sys, numpy as np, pyarrow.parquet as pq
from PIL import Image
table = pq.ParquetFile(sys.argv[1])
out = np.empty((table.metadata.row_group(0).num_rows, 28, 28), np.float32)
for group in range(table.num_row_groups):
    cells = table.read_row_group(group, columns=["image"]).column(0).to_pylist()
    for at, cell in enumerate(cells):
        with Image.open(io.BytesIO(cell["bytes"])) as image:
            out[at] = np.asarray(image).astype(np.float32) / 255
"""
PIXSCALE_CLI = """
import sys
from pixscale.cli import main
sys.argv[0] = "pixscale"
sys.exit(main())
"""
PIXSCALE_LIBRARY = """
import sys
import pixscale
import pixscale.sources.parallel as parallel
parallel.BACKEND = sys.argv[3]
pixscale.convert(sys.argv[1], sys.argv[2])
"""


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


# ------------------------------------------------------------------ inputs


def photo(index: int, side: int = SIDE) -> bytes:
    """A smooth photo-like side×side RGB JPEG: gradients, a soft blob and sensor noise."""
    from PIL import Image

    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    phase = rng.uniform(0, 6.3, 3).astype(np.float32)
    cx, cy, radius = rng.uniform(0.2, 0.8, 3).astype(np.float32)
    blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (0.05 * radius))
    channels = [
        0.5 + 0.35 * np.sin(3 * x + phase[c] + 2 * y * c) + 0.3 * blob * (c - 1) for c in range(3)
    ]
    pixels = np.stack(channels, axis=-1) * 255 + rng.normal(0, 6, (side, side, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_photo(job: tuple[Path, int, int]) -> None:
    folder, index, side = job
    (folder / f"{index:06d}.jpg").write_bytes(photo(index, side))


def make_photos(folder: Path, count: int, side: int = SIDE) -> None:
    folder.mkdir(parents=True)
    with Pool(os.cpu_count() or 1) as pool:
        pool.map(write_photo, [(folder, i, side) for i in range(count)], chunksize=64)


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def make_mnist_parquet(path: Path, part: Path | None = None, rows: int = 0) -> int:
    """MNIST train as the Hub stores it: image structs of PNG bytes, ClassLabel labels;
    with ``part``, its first ``rows`` rows too."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def idx(file: Path) -> np.ndarray:
        data = gzip.open(file).read()
        ndim = data[3]
        shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)

    images, labels = idx(MNIST), idx(MNIST_LABELS)
    with Pool(os.cpu_count() or 1) as pool:
        cells = pool.map(png, images, chunksize=500)
    kind = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {
        "image": {"_type": "Image"},
        "label": {"names": [str(n) for n in range(10)], "_type": "ClassLabel"},
    }
    schema = pa.schema(
        [pa.field("image", kind), pa.field("label", pa.int64())],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )
    table = pa.Table.from_arrays(
        [pa.array([{"bytes": c, "path": None} for c in cells], kind), pa.array(labels)],
        schema=schema,
    )
    pq.write_table(table, path, row_group_size=1000)
    if part is not None:
        pq.write_table(table.slice(0, rows), part, row_group_size=1000)
    return len(images)


# ------------------------------------------------------------------ timing


def warm(path: Path) -> None:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for name in files:
        name.read_bytes()


def run_once(command: list[str], output: Path | None, source: Path, env: dict[str, str]) -> float:
    if output is not None and output.exists():
        output.unlink()
    warm(source)
    os.sync()
    time.sleep(SETTLE_SECONDS)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


@dataclass
class Case:
    """One command, timed on each source it is given (``{}`` in its arguments)."""

    name: str
    command: list[str]
    output: Path | None = None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))


def measure(
    cases: list[Case], sources: list[Path], runs: int
) -> dict[tuple[str, Path], list[float]]:
    """Each case on each source, ``runs`` rounds, each round in a rotated order."""
    jobs = [(case, source) for case in cases for source in sources]
    times: dict[tuple[str, Path], list[float]] = {(c.name, s): [] for c, s in jobs}
    for round_number in range(runs):
        shift = round_number % len(jobs)
        for case, source in jobs[shift:] + jobs[:shift]:
            command = [str(source) if part == "{}" else part for part in case.command]
            seconds = run_once(command, case.output, source, case.env)
            times[case.name, source].append(seconds)
            print(
                f"round {round_number + 1}: {case.name} on {source.name}: {seconds:.2f} s",
                file=sys.stderr,
            )
    return times


def spread(values: list[float], digits: int = 2) -> str:
    """``median [min–max]``."""
    return (
        f"{statistics.median(values):.{digits}f} "
        f"[{min(values):.{digits}f}–{max(values):.{digits}f}]"
    )


def marginal_table(
    title: str,
    counts: tuple[int, int],
    sources: tuple[Path, Path],
    times: dict[tuple[str, Path], list[float]],
    names: list[str],
) -> list[str]:
    """Whole-run times at both sizes, marginal images/s and its ratio to the baseline's
    (``names[0]``) in the same round: medians and ranges over the rounds."""
    (small, large), (part, whole) = counts, sources
    rates = {
        name: [
            (large - small) / max(t_large - t_small, 1e-9)
            for t_small, t_large in zip(times[name, part], times[name, whole], strict=True)
        ]
        for name in names
    }
    rows = [
        f"#### {title}",
        "",
        f"| case | wall s, {small:,} images | wall s, {large:,} images | marginal images/s "
        "| × baseline (marginal) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        ratios = [mine / base for mine, base in zip(rates[name], rates[names[0]], strict=True)]
        rows.append(
            f"| {name} | {spread(times[name, part])} | {spread(times[name, whole])} "
            f"| {spread(rates[name], 0)} | {spread(ratios)} |"
        )
    return [*rows, ""]


def whole_table(
    title: str, count: int, source: Path, times: dict[tuple[str, Path], list[float]], base: str
) -> list[str]:
    rows = [
        f"#### {title}",
        "",
        "| case | wall s | images/s | × baseline (whole run) |",
        "|---|---:|---:|---:|",
    ]
    for (name, where), seconds in times.items():
        if where != source:
            continue
        ratios = [b / t for b, t in zip(times[base, source], seconds, strict=True)]
        speeds = [count / t for t in seconds]
        rows.append(f"| {name} | {spread(seconds)} | {spread(speeds, 0)} | {spread(ratios)} |")
    return [*rows, ""]


def pixscale_cases(output: Path, before: Path | None) -> list[Case]:
    """pixscale's CLI, and the one in ``before`` (a ``src/`` copy) when given."""
    cli = [*python(PIXSCALE_CLI), "convert", "{}", "-o", str(output), "-q"]
    cases = [Case("pixscale CLI → .h5", cli, output)]
    if before is not None:
        env = {**os.environ, "PYTHONPATH": str(before)}
        cases.append(Case("pixscale CLI → .h5, before", cli, output, env))
    return cases


def peer_cases(output: Path) -> list[Case]:
    """pixscale's library with each decoding backend forced."""
    return [
        Case(
            f"pixscale library, {backend} → .h5",
            python(PIXSCALE_LIBRARY, "{}", str(output), backend),
            output,
        )
        for backend in ("threads", "processes")
    ]


def folder_section(
    work: Path, count: int, runs: int, before: Path | None, peers: bool
) -> list[str]:
    folder, part = work / "photos", work / "photos-part"
    print(f"generating {count} JPEGs…", file=sys.stderr)
    make_photos(folder, count)
    small = count // 4
    part.mkdir()
    for name in sorted(folder.iterdir())[:small]:
        os.link(name, part / name.name)
    output = work / "photos.h5"
    baseline = "Pillow loop, 1 process (baseline)"
    cases = [Case(baseline, python(SINGLE_FOLDER, "{}")), *pixscale_cases(output, before)]
    names = [case.name for case in cases]
    title = f"(a) folder of 256×256 RGB JPEGs (quality 90) → float32, {runs} rounds"
    lines = marginal_table(
        title, (small, count), (part, folder), measure(cases, [part, folder], runs), names
    )
    if peers:
        others = [
            Case(baseline, python(SINGLE_FOLDER, "{}")),
            Case("Pillow loop, multiprocessing.Pool(2)", python(POOL_FOLDER, "{}")),
            Case(
                "Pillow loop, Pool(2) returning uint8, ÷255 in the parent",
                python(POOL_UINT8_FOLDER, "{}"),
            ),
        ]
        try:
            import torch  # noqa: F401

            others.append(Case("torch DataLoader(num_workers=2)", python(TORCH_FOLDER, "{}")))
        except ImportError:
            print("torch not installed: no DataLoader row", file=sys.stderr)
        others += peer_cases(output)
        title = f"(a′) the same {count:,} JPEGs, whole runs"
        lines += whole_table(title, count, folder, measure(others, [folder], runs), baseline)
    return lines


def parquet_section(work: Path, runs: int, before: Path | None, peers: bool) -> list[str]:
    if not MNIST.is_file():
        return [f"(b) skipped: {MNIST} not found", ""]
    source, part = work / "train-00000-of-00001.parquet", work / "train-part.parquet"
    print("building the MNIST Parquet file…", file=sys.stderr)
    count = make_mnist_parquet(source, part, 15_000)
    small = 15_000
    output = work / "mnist.h5"
    baseline = "pyarrow + Pillow loop, 1 process (baseline)"
    cases = [Case(baseline, python(SINGLE_PARQUET, "{}")), *pixscale_cases(output, before)]
    names = [case.name for case in cases]
    title = f"(b) MNIST train as Hub Parquet (PNGs, 28×28) → float32, {runs} rounds"
    lines = marginal_table(
        title, (small, count), (part, source), measure(cases, [part, source], runs), names
    )
    if peers:
        others = [Case(baseline, python(SINGLE_PARQUET, "{}")), *peer_cases(output)]
        title = f"(b′) the same {count:,} PNGs, whole runs"
        lines += whole_table(title, count, source, measure(others, [source], runs), baseline)
    return lines


def resize_section(work: Path, count: int, runs: int) -> list[str]:
    folder = work / "large"
    print(f"generating {count} 512×512 JPEGs…", file=sys.stderr)
    make_photos(folder, count, 512)
    output = work / "small.h5"
    resize = [PIXSCALE, "convert", "{}", "-o", str(output), "-q", "--resize", "128x128"]
    full = "pixscale --resize 128x128 --no-jpeg-draft (full decode)"
    cases = [
        Case(full, [*resize, "--no-jpeg-draft"], output),
        Case("pixscale --resize 128x128 (reduced-size decoding)", resize, output),
    ]
    title = f"(c) --resize of {count:,} JPEGs, 512×512 → 128×128 (stretch, bilinear)"
    return whole_table(title, count, folder, measure(cases, [folder], runs), full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=4000, help="JPEGs in the folder")
    parser.add_argument("--runs", type=int, default=5, help="rounds (medians and ranges)")
    parser.add_argument("--table", type=Path, help="also write the tables to this file")
    parser.add_argument("--large", type=int, default=1000, help="512×512 JPEGs for --resize")
    parser.add_argument("--before", type=Path, help="a src/ copy of pixscale to time too")
    parser.add_argument("--peers", action="store_true", help="pools, torch, forced backends")
    parser.add_argument(
        "--skip", choices=("folder", "parquet", "resize"), action="append", default=[]
    )
    args = parser.parse_args()
    before = os.getloadavg()
    lines = [f"Load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}", ""]
    with tempfile.TemporaryDirectory(prefix="pixscale-decode-") as temp:
        work = Path(temp)
        if "folder" not in args.skip:
            lines += folder_section(work, args.photos, args.runs, args.before, args.peers)
            shutil.rmtree(work / "photos")
        if "parquet" not in args.skip:
            lines += parquet_section(work, args.runs, args.before, args.peers)
        if "resize" not in args.skip:
            lines += resize_section(work, args.large, args.runs)
    after = os.getloadavg()
    lines.append(f"Load average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    text = "\n".join(lines)
    print(text)
    if args.table:
        args.table.write_text(text + "\n")


if __name__ == "__main__":
    main()
