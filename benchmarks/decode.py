"""Decoding images: pixscale against plain Pillow loops, one process and a pool.

    python benchmarks/decode.py --table benchmarks/decode-results.md
    python benchmarks/decode.py --photos 1000 --runs 1      # quicker

(a) A folder of generated photo-like JPEGs (256×256 RGB, smooth gradients and shapes plus
noise, quality 90) converted to float32 .h5, against a loop that decodes each file with
Pillow and divides by 255 into a float32 array, the same loop in a 2-process
``multiprocessing.Pool``, and torch's ``DataLoader(num_workers=2)`` over a minimal Pillow
Dataset when torch is installed (the pool is also timed returning uint8 pixels and dividing
in the parent, which pickles a quarter of the bytes). (b) MNIST train as one Parquet file in
the Hugging Face Hub's layout (PNG bytes, row groups of 1,000) converted to .h5, against a
pyarrow + Pillow loop. pixscale is timed both ways it decodes (``threads`` and
``processes``) besides its automatic choice (the CLI row).

Every case is its own process, started after ``sync`` with its input in the page cache; a
case's time is its whole wall time (interpreter start and imports included), best of
``--runs``, the runs going round-robin over the cases. The baselines keep their float32
results in memory; pixscale writes them to the .h5.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
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
out = np.empty((len(files), 256, 256, 3), np.float32)
for i, path in enumerate(files):
    with Image.open(path) as image:
        out[i] = np.asarray(image.convert("RGB")).astype(np.float32) / 255
"""
POOL_FOLDER = """
import sys, numpy as np
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
out = np.empty((table.metadata.num_rows, 28, 28), np.float32)
at = 0
for group in range(table.num_row_groups):
    cells = table.read_row_group(group, columns=["image"]).column(0).to_pylist()
    for cell in cells:
        with Image.open(io.BytesIO(cell["bytes"])) as image:
            out[at] = np.asarray(image).astype(np.float32) / 255
        at += 1
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


def make_mnist_parquet(path: Path) -> int:
    """MNIST train as the Hub stores it: image structs of PNG bytes, ClassLabel labels."""
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
    return len(images)


# ------------------------------------------------------------------ timing


def warm(path: Path) -> None:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for name in files:
        name.read_bytes()


def run_once(command: list[str], output: Path | None, source: Path) -> float:
    if output is not None and output.exists():
        output.unlink()
    warm(source)
    os.sync()
    time.sleep(SETTLE_SECONDS)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(
    cases: list[tuple[str, list[str], Path | None]], source: Path, runs: int
) -> dict[str, float]:
    best: dict[str, float] = {}
    for round_number in range(runs):
        for name, command, output in cases:
            seconds = run_once(command, output, source)
            best[name] = min(best.get(name, float("inf")), seconds)
            print(f"round {round_number + 1}: {name}: {seconds:.2f} s", file=sys.stderr)
    return best


def table(title: str, count: int, best: dict[str, float], baseline: str) -> list[str]:
    rows = [
        f"#### {title}",
        "",
        "| case | wall s | images/s | × single-process loop |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds in best.items():
        speed = best[baseline] / seconds
        rows.append(f"| {name} | {seconds:.2f} | {count / seconds:,.0f} | {speed:.2f} |")
    return [*rows, ""]


def pixscale_cases(source: Path, output: Path) -> list[tuple[str, list[str], Path | None]]:
    cases: list[tuple[str, list[str], Path | None]] = [
        ("pixscale CLI → .h5", [PIXSCALE, "convert", str(source), "-o", str(output), "-q"], output)
    ]
    for backend in ("threads", "processes"):
        command = python(PIXSCALE_LIBRARY, str(source), str(output), backend)
        cases.append((f"pixscale library, {backend} → .h5", command, output))
    return cases


def folder_section(work: Path, count: int, runs: int) -> list[str]:
    folder = work / "photos"
    print(f"generating {count} JPEGs…", file=sys.stderr)
    make_photos(folder, count)
    output = work / "photos.h5"
    cases: list[tuple[str, list[str], Path | None]] = [
        ("Pillow loop, 1 process", python(SINGLE_FOLDER, str(folder)), None),
        ("Pillow loop, multiprocessing.Pool(2)", python(POOL_FOLDER, str(folder)), None),
        (
            "Pillow loop, Pool(2) returning uint8, ÷255 in the parent",
            python(POOL_UINT8_FOLDER, str(folder)),
            None,
        ),
    ]
    try:
        import torch  # noqa: F401

        cases.append(("torch DataLoader(num_workers=2)", python(TORCH_FOLDER, str(folder)), None))
    except ImportError:
        print("torch not installed: no DataLoader row", file=sys.stderr)
    cases += pixscale_cases(folder, output)
    best = measure(cases, folder, runs)
    title = f"(a) folder of {count:,} JPEGs, 256×256 RGB, quality 90 → float32"
    return table(title, count, best, "Pillow loop, 1 process")


def parquet_section(work: Path, runs: int) -> list[str]:
    if not MNIST.is_file():
        return [f"(b) skipped: {MNIST} not found", ""]
    source = work / "train-00000-of-00001.parquet"
    print("building the MNIST Parquet file…", file=sys.stderr)
    count = make_mnist_parquet(source)
    output = work / "mnist.h5"
    cases: list[tuple[str, list[str], Path | None]] = [
        ("pyarrow + Pillow loop, 1 process", python(SINGLE_PARQUET, str(source)), None),
        *pixscale_cases(source, output),
    ]
    best = measure(cases, source, runs)
    title = f"(b) MNIST train as Hub Parquet ({count:,} PNGs, 28×28) → float32"
    return table(title, count, best, "pyarrow + Pillow loop, 1 process")


def resize_section(work: Path, count: int, runs: int) -> list[str]:
    folder = work / "large"
    print(f"generating {count} 512×512 JPEGs…", file=sys.stderr)
    make_photos(folder, count, 512)
    output = work / "small.h5"
    resize = [PIXSCALE, "convert", str(folder), "-o", str(output), "-q", "--resize", "128x128"]
    cases: list[tuple[str, list[str], Path | None]] = [
        (
            "pixscale --resize 128x128 --no-jpeg-draft (full decode)",
            [*resize, "--no-jpeg-draft"],
            output,
        ),
        ("pixscale --resize 128x128 (reduced-size decoding)", resize, output),
    ]
    best = measure(cases, folder, runs)
    rows = [
        f"#### (c) --resize of {count:,} JPEGs, 512×512 → 128×128 (stretch, bilinear)",
        "",
        "| case | wall s | images/s | × full decode |",
        "|---|---:|---:|---:|",
    ]
    full = best[cases[0][0]]
    for name, seconds in best.items():
        rows.append(f"| {name} | {seconds:.2f} | {count / seconds:,.0f} | {full / seconds:.2f} |")
    return [*rows, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=4000, help="JPEGs in the folder")
    parser.add_argument("--runs", type=int, default=2, help="best of N per case")
    parser.add_argument("--table", type=Path, help="also write the tables to this file")
    parser.add_argument("--large", type=int, default=1000, help="512×512 JPEGs for --resize")
    parser.add_argument(
        "--skip", choices=("folder", "parquet", "resize"), action="append", default=[]
    )
    args = parser.parse_args()
    before = os.getloadavg()
    lines = [f"Load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}", ""]
    with tempfile.TemporaryDirectory(prefix="pixscale-decode-") as temp:
        work = Path(temp)
        if "folder" not in args.skip:
            lines += folder_section(work, args.photos, args.runs)
            shutil.rmtree(work / "photos")
        if "parquet" not in args.skip:
            lines += parquet_section(work, args.runs)
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
