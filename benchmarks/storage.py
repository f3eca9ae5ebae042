"""Smaller outputs: bytes and write time of float32, float16 and packed uint8, and how fast
training loops read them back (random samples, random batches, one DataLoader epoch).

    python benchmarks/storage.py --table benchmarks/storage-results.md
    python benchmarks/storage.py --size-gib 0 --table …     # MNIST only (no 1 GiB set)

Reads are timed from the page cache (each file read once before timing), in this process,
for the same random indices in every case. The hand-written loaders are the common ones:
an ``h5py.File`` opened in every ``__getitem__``, one handle kept per worker, and
``np.load(mmap_mode="r")`` (its sample copied, as a loader handing it to torch must).
The DataLoader epoch runs when torch is installed (``pip install 'pixscale[torch]'``).
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import pixscale

HERE = Path(__file__).resolve().parent
MNIST = Path(os.environ.get("PIXSCALE_TEST_DATA", HERE.parent.parent / "shared" / "data"))
MNIST = MNIST / "mnist"
KINDS = {  # name: (file name, Output options)
    "float32 .h5 contiguous": ("f32.h5", {}),
    "float32 .h5 chunked (lzf)": ("f32c.h5", {"compression": "lzf"}),
    "float32 .npy": ("f32.npy", {}),
    "float16 .h5": ("f16.h5", {"dtype": "float16"}),
    "float16 .npy": ("f16.npy", {"dtype": "float16"}),
    "packed uint8 .h5": ("u8.h5", {"store": "uint8"}),
    "packed uint8 .npy": ("u8.npy", {"store": "uint8"}),
}


def read_idx_gz(path: Path) -> np.ndarray:
    data = gzip.open(path).read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def best_of(runs: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ------------------------------------------------------------------ writing, 1 GiB


def write_table(folder: Path, size_gib: float, runs: int) -> list[str]:
    sys.path.insert(0, str(HERE))
    from run import make_dataset_elsewhere  # the same generated set as benchmarks/run.py

    source = folder / "big.npy"
    shape = make_dataset_elsewhere(source, size_gib)
    source.read_bytes()  # into the page cache
    cases = {
        "float32": [],
        "--dtype float16": ["--dtype", "float16"],
        "--store uint8": ["--store", "uint8"],
    }
    rows = []
    for ext in ("npy", "h5"):
        sizes: dict[str, tuple[float, int]] = {}
        for name, flags in cases.items():
            target = folder / f"big-out.{ext}"
            command = [sys.executable, "-m", "pixscale", "convert", str(source), "-o"]
            command += [str(target), "-s", "standardize", "--scope", "channel", "-q"]
            command += ["--overwrite", *flags]
            seconds = []
            for _ in range(runs):
                subprocess.run(["sync"], check=True)
                start = time.perf_counter()
                subprocess.run(command, check=True)
                seconds.append(time.perf_counter() - start)
            sizes[name] = (min(seconds), target.stat().st_size)
            target.unlink()
            for extra in folder.glob("big-out*"):
                extra.unlink()
        base = sizes["float32"]
        for name, (seconds, size) in sizes.items():
            rows.append(
                f"| .{ext} {name} | {size / 2**20:,.0f} | {size / base[1]:.2f} | "
                f"{seconds:.2f} | {seconds / base[0]:.2f} |"
            )
    source.unlink()
    head = [
        f"#### 1 write: {size_gib:.2f} GiB uint8 {shape} → standardize --scope channel",
        "",
        "| output | MiB | bytes × float32 | wall s | time × float32 |",
        "|---|---:|---:|---:|---:|",
    ]
    return head + rows


# ------------------------------------------------------------------ reading, MNIST


def make_outputs(folder: Path) -> dict[str, Path]:
    images = read_idx_gz(MNIST / "train-images-idx3-ubyte.gz")
    labels = read_idx_gz(MNIST / "train-labels-idx1-ubyte.gz")
    np.save(folder / "x.npy", images)
    np.save(folder / "y.npy", labels)
    paths = {}
    for name, (file, options) in KINDS.items():
        target = folder / file
        output = pixscale.Output(target, overwrite=True, **options)
        pixscale.convert(
            folder / "x.npy", output, pixscale.Spec("standardize"), labels=folder / "y.npy"
        )
        target.read_bytes()
        paths[name] = target
    return paths


Reader = Callable[[Any], Any]


def readers(paths: dict[str, Path]) -> list[tuple[str, Reader, Reader | None]]:
    """(name, read one sample by index, read a batch by an index array or None)."""
    f32h5, f32npy = paths["float32 .h5 contiguous"], paths["float32 .npy"]

    def per_getitem(i: int) -> Any:
        with h5py.File(f32h5, "r") as handle:
            return handle["images"][i]

    contiguous = h5py.File(f32h5, "r")["images"]
    chunked = h5py.File(paths["float32 .h5 chunked (lzf)"], "r")["images"]
    mmap = np.load(f32npy, mmap_mode="r")

    def sorted_batch(images: Any) -> Reader:
        def read(batch: np.ndarray) -> Any:
            unique, back = np.unique(batch, return_inverse=True)
            return images[unique][back]

        return read

    found: list[tuple[str, Reader, Reader | None]] = [
        ("h5py.File opened per __getitem__, float32 .h5", per_getitem, None),
        (
            "one h5py handle per worker, float32 .h5 contiguous",
            contiguous.__getitem__,
            sorted_batch(contiguous),
        ),
        (
            "one h5py handle per worker, float32 .h5 chunked (lzf)",
            chunked.__getitem__,
            sorted_batch(chunked),
        ),
        (
            "np.load(mmap_mode='r') + copy, float32 .npy",
            lambda i: np.array(mmap[i]),
            mmap.__getitem__,
        ),
    ]
    for name, path in paths.items():
        data = pixscale.open(path)
        found.append((f"pixscale.open, {name}", data.__getitem__, data.__getitem__))
    return found


def read_table(paths: dict[str, Path], samples: int, batches: int) -> list[str]:
    rng = np.random.default_rng(0)
    picks = rng.integers(0, 60000, samples).tolist()
    batch_picks = [rng.integers(0, 60000, 256) for _ in range(batches)]
    lines = [
        "#### 2 random reads from the page cache: MNIST train, standardize (60000×28×28)",
        "",
        f"| reader | samples/s, one at a time ({samples:,}) | samples/s, random batches of 256 |",
        "|---|---:|---:|",
    ]
    for name, read, read_batch in readers(paths):
        for i in picks[:200]:
            read(i)  # warm
        seconds = best_of(3, lambda read=read: [read(i) for i in picks])
        cell = ""
        if read_batch is not None:
            batch_seconds = best_of(3, lambda rb=read_batch: [rb(b) for b in batch_picks])
            cell = f"{256 * batches / batch_seconds:,.0f}"
        lines.append(f"| {name} | {samples / seconds:,.0f} | {cell} |")
    return lines


# ------------------------------------------------------------------ DataLoader epoch


def loader_table(paths: dict[str, Path], runs: int) -> list[str]:
    try:
        import torch
        from torch.utils.data import DataLoader, Dataset
    except ImportError:
        return ["(torch not installed: no DataLoader table)"]
    from pixscale.torch import ImageDataset

    class HandWritten(Dataset):  # type: ignore[type-arg]
        """examples/torch_dataset.py: one h5py handle opened lazily in each worker."""

        def __init__(self, path: Path) -> None:
            self.path, self.file = path, None
            with h5py.File(path, "r") as handle:
                self.length = len(handle["images"])

        def __len__(self) -> int:
            return self.length

        def __getitem__(self, index: int) -> Any:
            if self.file is None:
                self.file = h5py.File(self.path, "r")
            image = torch.from_numpy(self.file["images"][index])
            return image, int(self.file["labels"][index])

    datasets: dict[str, Any] = {
        "hand-written per-worker h5py Dataset, float32 .h5": HandWritten(
            paths["float32 .h5 contiguous"]
        )
    }
    for name, path in paths.items():
        datasets[f"pixscale.torch.ImageDataset, {name}"] = ImageDataset(path)
    lines = [
        "#### 3 one DataLoader epoch: MNIST train, 2 workers (fork), batch 256, shuffled",
        "",
        "| dataset | epoch s | samples/s |",
        "|---|---:|---:|",
    ]
    for name, dataset in datasets.items():
        loader = DataLoader(dataset, batch_size=256, shuffle=True, num_workers=2)
        seconds = best_of(runs, lambda loader=loader: sum(1 for _ in loader))
        lines.append(f"| {name} | {seconds:.2f} | {60000 / seconds:,.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0, help="generated set; 0 skips")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--table", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(dir=HERE) as temp:
        folder = Path(temp)
        paths = make_outputs(folder)
        sizes = {name: path.stat().st_size for name, path in paths.items()}
        lines += read_table(paths, args.samples, args.batches)
        lines += ["", *loader_table(paths, args.runs), ""]
        lines += [
            "MNIST file sizes: " + ", ".join(f"{n} {s / 2**20:.1f} MiB" for n, s in sizes.items())
        ]
        if args.size_gib > 0:
            lines = write_table(folder, args.size_gib, args.runs) + [""] + lines
    text = "\n".join(lines) + "\n"
    print(text)
    if args.table:
        args.table.write_text(text)


if __name__ == "__main__":
    main()
