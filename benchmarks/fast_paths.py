"""The fast paths against their baselines, side by side in one run: one table of targets.

    python benchmarks/fast_paths.py --runs 3 --table benchmarks/fast-paths-results.md

Each row is measured against its baseline in the same round (the ratio of a round uses that
round's baseline); the summary gives the ratio as median [min–max] over ``--runs`` rounds,
the target, and "met?": whether the median meets it. Every case is its own process, started
after ``sync`` with its input in the page cache (a dask round is one process: one cluster
for both). The detailed tables follow the summary.

1. ``zarr-input``: ``pixscale convert`` of an uncompressed uint8 Zarr v3 store
   (``--size-gib``, default 1, of 96×96×3 images) → float32 ``.npy``, in 64 MiB chunks and
   in chunks of 64 images, against the same bytes as a ``.npy`` input → ``.npy``: wall-time
   ratio and the child's peak RSS (``wait4``). Target: ≤ 1.2× and ≤ 256 MiB, both layouts.
2. ``zarr-reads``: MNIST train converted once to ``.zarr`` and to ``.h5``; per round, 20,000
   random single samples and 200 sorted batches of 256 read through ``pixscale.open``,
   ``.zarr`` against ``.h5``. Target: ≥ 1/2 of ``.h5`` single, ≥ 1/1.5 in batches.
3. ``jpeg``: a folder of ``--photos`` (default 4,000) generated 256×256 JPEGs → ``.h5`` by
   the CLI, against a one-process Pillow decode + ÷255 loop; the marginal images/s,
   (N - N/4) / (t(N) - t(N/4)), leaves out start-up. Target: ≥ 1.6×.
4. ``parquet``: MNIST train as one Hub Parquet file (60,000 PNGs; the quarter is its first
   15,000 rows) → ``.h5``, marginal images/s against a one-process pyarrow + Pillow loop.
   Target: ≥ 1.6×.
5. ``dask``: ``--engine dask`` on a local cluster of 2 workers, a uint8 ``.zarr`` of
   ``--size-gib`` (default 1; in whole 64 MiB steps) in uncompressed chunks of 64 images of
   256×256 → uncompressed ``.zarr``, ``unit`` and ``standardize --scope channel``, against
   the ``dask.array`` pipeline (``from_zarr`` → scale → ``to_zarr``) on the same cluster;
   times include the ``sync`` after each (dask.array writes through the page cache, pixscale
   with ``O_DIRECT``). Target: ≤ 0.4× the pipeline's time, both strategies.

Rows 2 and 4 need MNIST in ``../shared/data`` (or ``$PIXSCALE_TEST_DATA``) and are skipped
with the reason when it is absent; row 5 needs ``pip install '.[dask]'``. ``--only ROW``
(repeatable) runs some rows; ``--work DIR`` keeps the generated inputs there for a re-run
(default: a temporary directory, removed at the end). At the defaults a run takes about
10–15 minutes on a 2-core machine, inputs included.

The cases, inputs and baselines are those of ``zarr_paths.py``, ``decode.py`` and
``dask_phases.py`` (imported, not copied).
"""

from __future__ import annotations

import argparse
import gzip
import json
import operator
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dask_phases  # noqa: E402
import decode  # noqa: E402
import zarr_paths  # noqa: E402

ROWS = ("zarr-input", "zarr-reads", "jpeg", "parquet", "dask")
LAYOUTS = ("raw, 64 MiB chunks", "raw, 64-image chunks")
RSS_LIMIT_MIB = 256.0
DASK_STEP = 1024  # images per block written by dask_phases.make_input (64 MiB)
#: The quarter of a small-image input, the whole, and their image counts.
Inputs = tuple[Path, Path, int, int]
#: Makes the Zarr-input stores in a child: a child's peak RSS (``wait4``) starts at its
#: parent's, so this process must stay small while the converts are measured.
MAKE_INPUTS = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import zarr_paths
stores = zarr_paths.make_inputs(Path(sys.argv[2]), float(sys.argv[3]))
print(json.dumps({name: str(path) for name, path in stores.items()}))
"""
COMPARE: dict[str, Callable[[float, float], bool]] = {"≤": operator.le, "≥": operator.ge}


@dataclass
class Line:
    """One row of the summary: the ratios of the rounds, and the target they must meet."""

    row: str
    measured: str
    mine: str
    base: str
    ratios: list[float]
    sign: str
    limit: float
    also: tuple[str, bool] | None = None  # a second condition: (its text, whether met)

    def met(self) -> bool:
        ratio_met = COMPARE[self.sign](statistics.median(self.ratios), self.limit)
        return ratio_met and (self.also is None or self.also[1])

    def cells(self) -> list[str]:
        target = f"{self.sign} {self.limit:.2f}×"
        if self.also is not None:
            target += f", {self.also[0]}"
        ratio = decode.spread(self.ratios)
        return [self.row, self.measured, self.mine, self.base, ratio, target, yesno(self.met())]


@dataclass
class Skipped:
    row: str
    reason: str

    def cells(self) -> list[str]:
        return [self.row, f"not measured: {self.reason}", "—", "—", "—", "—", "no"]


@dataclass
class Outcome:
    lines: list[Line | Skipped]
    detail: list[str]


@dataclass
class Settings:
    work: Path
    runs: int
    gib: float
    photos: int
    mnist_rows: int | None  # None: all of MNIST train
    singles: int
    batches: int


def yesno(flag: bool) -> str:
    return "yes" if flag else "no"


def per_round(mine: list[float], base: list[float]) -> list[float]:
    """Each round's ratio to the same round's baseline."""
    return [m / b for m, b in zip(mine, base, strict=True)]


# ------------------------------------------------------------------ 1. Zarr input


def convert_measured(source: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and the child's peak RSS (MiB) of ``pixscale convert source -o out``."""
    zarr_paths.remove(out)
    zarr_paths.settle(source)
    command = [sys.executable, "-m", "pixscale", "convert", str(source), "-o", str(out)]
    wall, peak, _ = zarr_paths.run_measured(command, zarr_paths.SRC)
    return wall, peak


def zarr_input(settings: Settings) -> Outcome:
    folder = settings.work / f"zarr-input-{settings.gib:g}"
    folder.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        [sys.executable, "-c", MAKE_INPUTS, str(HERE), str(folder), str(settings.gib)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    stores = {name: Path(path) for name, path in json.loads(made.stdout).items()}
    out = folder / "out.npy"
    names = [".npy", *LAYOUTS]
    walls: dict[str, list[float]] = {name: [] for name in names}
    peaks: dict[str, list[float]] = {name: [] for name in names}
    for number in range(settings.runs):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            wall, peak = convert_measured(stores[name], out)
            walls[name].append(wall)
            peaks[name].append(peak)
            print(f"zarr-input round {number + 1}: {name}: {wall:.2f} s", file=sys.stderr)
    zarr_paths.remove(out)
    base = f"{decode.spread(walls['.npy'])} s, {decode.spread(peaks['.npy'], 0)} MiB"
    lines: list[Line | Skipped] = []
    for index, name in enumerate(LAYOUTS):
        rss = statistics.median(peaks[name])
        lines.append(
            Line(
                f"1{'ab'[index]}",
                f"`.zarr` ({name}) → `.npy` against `.npy` → `.npy`: time, peak RSS",
                f"{decode.spread(walls[name])} s, {decode.spread(peaks[name], 0)} MiB",
                base,
                per_round(walls[name], walls[".npy"]),
                "≤",
                1.2,
                (f"≤ {RSS_LIMIT_MIB:.0f} MiB", rss <= RSS_LIMIT_MIB),
            )
        )
    return Outcome(lines, input_table(settings, names, walls, peaks))


def own_peak_mib() -> float:
    """This process's peak RSS: a floor under every child's reading."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def input_table(
    settings: Settings,
    names: list[str],
    walls: dict[str, list[float]],
    peaks: dict[str, list[float]],
) -> list[str]:
    rows = [
        f"#### 1. Zarr input → float32 .npy: {settings.gib:.2f} GiB uint8 "
        f"{zarr_paths.IMAGE} images, {settings.runs} rounds",
        "",
        "| input | wall s | × .npy input (per round) | peak RSS MiB |",
        "|---|---:|---:|---:|",
    ]
    for name in names:
        ratios = per_round(walls[name], walls[".npy"])
        rows.append(
            f"| {name} | {decode.spread(walls[name])} | {decode.spread(ratios)} "
            f"| {decode.spread(peaks[name], 0)} |"
        )
    floor = f"{own_peak_mib():.0f} MiB"
    return [*rows, "", f"Peak RSS of the process starting the converts: {floor}.", ""]


# ------------------------------------------------------------------ 2. Zarr reads


def read_rates(path: Path, settings: Settings) -> tuple[float, float]:
    """Single samples/s and batched samples/s through ``pixscale.open``, in a child."""
    zarr_paths.settle(path)
    code = [sys.executable, "-c", zarr_paths.READS, str(path)]
    command = [*code, str(settings.singles), str(settings.batches)]
    single, batch = map(float, zarr_paths.run_measured(command, zarr_paths.SRC)[2].split())
    return single, batch


def zarr_reads(settings: Settings) -> Outcome:
    smoke_mnist(settings)
    if not zarr_paths.MNIST.is_file():
        return Outcome([Skipped("2", f"{zarr_paths.MNIST} not found")], [])
    folder = settings.work / f"zarr-reads-{settings.mnist_rows or 'all'}"
    folder.mkdir(parents=True, exist_ok=True)
    source = zarr_paths.mnist(folder)
    outputs = {"h5": folder / "mnist.h5", "zarr": folder / "mnist.zarr"}
    for path in outputs.values():
        convert_measured(source, path)
    singles: dict[str, list[float]] = {kind: [] for kind in outputs}
    batches: dict[str, list[float]] = {kind: [] for kind in outputs}
    for number in range(settings.runs):
        kinds = list(outputs) if number % 2 == 0 else list(reversed(outputs))
        for kind in kinds:
            single, batch = read_rates(outputs[kind], settings)
            singles[kind].append(single)
            batches[kind].append(batch)
            print(f"zarr-reads round {number + 1}: .{kind}: {single:,.0f}/s", file=sys.stderr)
    what = "random reads of MNIST via `pixscale.open`, `.zarr` against `.h5`"
    lines: list[Line | Skipped] = [
        Line(
            f"2{letter}",
            f"{what}: {label}",
            f"{decode.spread(found['zarr'], 0)} /s",
            f"{decode.spread(found['h5'], 0)} /s",
            per_round(found["zarr"], found["h5"]),
            "≥",
            limit,
        )
        for letter, label, found, limit in (
            ("a", "single samples", singles, 1 / 2),
            ("b", "sorted batches of 256", batches, 1 / 1.5),
        )
    ]
    count = len(np.load(source, mmap_mode="r"))
    return Outcome(lines, reads_table(settings, count, outputs, singles, batches))


def reads_table(
    settings: Settings,
    count: int,
    outputs: dict[str, Path],
    singles: dict[str, list[float]],
    batches: dict[str, list[float]],
) -> list[str]:
    rows = [
        f"#### 2. MNIST train ({count:,}×28×28) output, random reads through pixscale.open, "
        f"{settings.runs} rounds",
        "",
        f"{settings.singles:,} random single samples and {settings.batches} sorted batches of "
        "256 per round.",
        "",
        "| output | single samples/s | × .h5 | batched samples/s | × .h5 | files |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, path in outputs.items():
        single = per_round(singles[kind], singles["h5"])
        batch = per_round(batches[kind], batches["h5"])
        rows.append(
            f"| .{kind} | {decode.spread(singles[kind], 0)} | {decode.spread(single)} "
            f"| {decode.spread(batches[kind], 0)} | {decode.spread(batch)} "
            f"| {zarr_paths.count_files(path)} |"
        )
    return [*rows, ""]


# ------------------------------------------------------------------ 3, 4. small images


def marginal_ratios(
    times: dict[tuple[str, Path], list[float]],
    counts: tuple[int, int],
    sources: tuple[Path, Path],
    names: tuple[str, str],
) -> tuple[list[float], list[float]]:
    """Marginal images/s of ``names[0]`` (pixscale) and ``names[1]`` (the baseline), per round,
    computed as ``decode.marginal_table`` does."""
    (small, large), (part, whole) = counts, sources

    def rates(name: str) -> list[float]:
        pairs = zip(times[name, part], times[name, whole], strict=True)
        return [(large - small) / max(t_large - t_small, 1e-9) for t_small, t_large in pairs]

    return rates(names[0]), rates(names[1])


def small_images(
    row: str, what: str, title: str, baseline: decode.Case, inputs: Inputs, runs: int
) -> Outcome:
    """Both sizes of one input, pixscale's CLI against ``baseline``, marginal rates."""
    part, whole, small, count = inputs
    output = whole.parent / f"{whole.stem}-out.h5"
    mine = decode.pixscale_cases(output, None)[0]
    times = decode.measure([baseline, mine], [part, whole], runs)
    names = (mine.name, baseline.name)
    rates, base = marginal_ratios(times, (small, count), (part, whole), names)
    if output.exists():
        output.unlink()
    line = Line(
        row,
        what,
        f"{decode.spread(rates, 0)} images/s",
        f"{decode.spread(base, 0)} images/s",
        per_round(rates, base),
        "≥",
        1.6,
    )
    names_in_order = [baseline.name, mine.name]
    detail = decode.marginal_table(title, (small, count), (part, whole), times, names_in_order)
    return Outcome([line], detail)


def photos(folder: Path, count: int) -> Inputs:
    """The JPEG folder and a folder of its first quarter (hard links), made once."""
    whole, part = folder / "photos", folder / "photos-part"
    small = count // 4
    if not whole.is_dir() or len(list(whole.iterdir())) != count:
        shutil.rmtree(whole, ignore_errors=True)
        shutil.rmtree(part, ignore_errors=True)
        print(f"generating {count} JPEGs…", file=sys.stderr)
        decode.make_photos(whole, count)
    if not part.is_dir():
        part.mkdir()
        for name in sorted(whole.iterdir())[:small]:
            os.link(name, part / name.name)
    return part, whole, small, count


def jpeg(settings: Settings) -> Outcome:
    folder = settings.work / f"jpeg-{settings.photos}"
    inputs = photos(folder, settings.photos)
    baseline = decode.Case(
        "Pillow loop, 1 process (baseline)", decode.python(decode.SINGLE_FOLDER, "{}")
    )
    title = f"3. folder of 256×256 RGB JPEGs (quality 90) → float32, {settings.runs} rounds"
    what = f"folder of {settings.photos:,} 256×256 JPEGs → `.h5`, marginal images/s"
    return small_images("3", what, title, baseline, inputs, settings.runs)


def parquet_inputs(folder: Path) -> Inputs:
    """MNIST train as Hub Parquet and its first quarter, made once."""
    whole = folder / "train-00000-of-00001.parquet"
    part = folder / "train-part.parquet"
    count_file = folder / "rows"
    if not (whole.is_file() and part.is_file() and count_file.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        print("building the MNIST Parquet file…", file=sys.stderr)
        rows = decode.make_mnist_parquet(whole, part, mnist_count(decode.MNIST) // 4)
        count_file.write_text(str(rows))
    count = int(count_file.read_text())
    return part, whole, count // 4, count


def mnist_count(path: Path) -> int:
    """The number of images in an IDX file (its header)."""
    with gzip.open(path) as handle:
        return int.from_bytes(handle.read(8)[4:8], "big")


def parquet(settings: Settings) -> Outcome:
    smoke_mnist(settings)
    if not decode.MNIST.is_file():
        return Outcome([Skipped("4", f"{decode.MNIST} not found")], [])
    inputs = parquet_inputs(settings.work / f"parquet-{settings.mnist_rows or 'all'}")
    baseline = decode.Case(
        "pyarrow + Pillow loop, 1 process (baseline)",
        decode.python(decode.SINGLE_PARQUET, "{}"),
    )
    title = f"4. MNIST train as Hub Parquet (PNGs, 28×28) → float32, {settings.runs} rounds"
    what = f"MNIST as Hub Parquet ({inputs[3]:,} PNGs) → `.h5`, marginal images/s"
    return small_images("4", what, title, baseline, inputs, settings.runs)


# ------------------------------------------------------------------ 5. dask


def dask_input(folder: Path, gib: float) -> Path:
    """``dask_phases.make_input`` at ``gib`` (whole 64 MiB blocks, at least one)."""
    per_image = dask_phases.SHAPE[1] * dask_phases.SHAPE[2]
    blocks = max(1, round(gib * (1 << 30) / per_image / DASK_STEP))
    dask_phases.SHAPE = (blocks * DASK_STEP, *dask_phases.SHAPE[1:])
    source = folder / f"in-{blocks * DASK_STEP}.zarr"
    folder.mkdir(parents=True, exist_ok=True)
    dask_phases.make_input(source)
    return source


def dask_round(source: Path, out: Path, number: int) -> dict[str, Any]:
    """One round of ``dask_phases.ROUND`` without the instrumented runs: one cluster, both
    engines, both strategies, alternating order."""
    from pixscale.sources.partition import DEFAULT_PARTITION_MB

    load = os.getloadavg()[0]
    steal, total = dask_phases.cpu_times()
    arguments = [str(source), str(out), str(number % 2), "0", "", str(DEFAULT_PARTITION_MB), "1"]
    done = subprocess.run(
        [sys.executable, "-c", dask_phases.ROUND, *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    steal_after, total_after = dask_phases.cpu_times()
    measured["load"] = load
    measured["steal"] = (steal_after - steal) / max(1, total_after - total)
    return measured


def dask_engine(settings: Settings) -> Outcome:
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        return Outcome([Skipped("5", "dask not installed (pip install '.[dask]')")], [])
    source = dask_input(settings.work / "dask", settings.gib)
    rounds = []
    for number in range(settings.runs):
        rounds.append(dask_round(source, settings.work / "dask" / "out.zarr", number))
        print(f"dask round {number + 1}: {json.dumps(rounds[-1])}", file=sys.stderr)
    gib = dask_phases.SHAPE[0] * dask_phases.SHAPE[1] * dask_phases.SHAPE[2] / (1 << 30)
    lines: list[Line | Skipped] = []
    for letter, strategy, label in (("a", "unit", ""), ("b", "standardize", " --scope channel")):
        mine = [r[f"pixscale {strategy}"]["sync"] for r in rounds]
        base = [r[f"dask.array {strategy}"]["sync"] for r in rounds]
        what = f"`--engine dask`, 2 workers, {gib:.2f} GiB `.zarr` → `.zarr`, {strategy}{label}"
        lines.append(
            Line(
                f"5{letter}",
                f"{what}: s incl. sync, against `dask.array`",
                f"{decode.spread(mine)} s",
                f"{decode.spread(base)} s",
                per_round(mine, base),
                "≤",
                0.4,
            )
        )
    title = f"#### 5. the dask engine against the dask.array pipeline, {gib:.2f} GiB input"
    tables = [line.replace("### ", "##### ", 1) for line in dask_phases.tables(rounds)]
    return Outcome(lines, [title, "", *tables])


# ------------------------------------------------------------------ report


def summary(lines: list[Line | Skipped]) -> list[str]:
    header = ["row", "what was measured", "pixscale", "baseline", "ratio", "target", "met?"]
    rows = ["| " + " | ".join(header) + " |", "|---|---|---:|---:|---:|---|---|"]
    rows += ["| " + " | ".join(line.cells()) + " |" for line in lines]
    met = sum(isinstance(line, Line) and line.met() for line in lines)
    return [*rows, "", f"Targets met: {met} of {len(lines)}.", ""]


def smoke_mnist(settings: Settings) -> None:
    """With ``--smoke``, point the other scripts at the first images and labels of MNIST."""
    rows = settings.mnist_rows
    if rows is None:
        return
    folder = settings.work / f"mnist-{rows}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("MNIST", "MNIST_LABELS"):
        source = getattr(decode, name)
        if not source.is_file():
            return
        target = folder / source.name
        if not target.is_file():
            data = gzip.decompress(source.read_bytes())
            ndim = data[3]
            shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
            item = int(np.prod(shape[1:], dtype=int))
            start = 4 + 4 * ndim
            header = data[:4] + rows.to_bytes(4, "big") + data[8:start]
            target.write_bytes(gzip.compress(header + data[start : start + rows * item], 1))
        setattr(decode, name, target)
    zarr_paths.MNIST = decode.MNIST


RUNNERS: dict[str, Callable[[Settings], Outcome]] = {
    "zarr-input": zarr_input,
    "zarr-reads": zarr_reads,
    "jpeg": jpeg,
    "parquet": parquet,
    "dask": dask_engine,
}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds (medians and ranges)")
    parser.add_argument("--only", choices=ROWS, action="append", help="run only this row")
    parser.add_argument("--size-gib", type=float, default=1.0, help="the generated Zarr inputs")
    parser.add_argument("--photos", type=int, default=4000, help="JPEGs in the folder")
    parser.add_argument("--table", type=Path, help="also write the report to this file")
    parser.add_argument("--work", type=Path, help="keep the generated inputs here")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def run(args: argparse.Namespace, work: Path) -> list[str]:
    settings = Settings(work, args.runs, args.size_gib, args.photos, None, 20000, 200)
    if args.smoke:  # a quick check that every row runs: a slice of MNIST, few reads
        settings.mnist_rows, settings.singles, settings.batches = 2000, 300, 4
    lines: list[Line | Skipped] = []
    detail: list[str] = []
    for name in [row for row in ROWS if row in (args.only or ROWS)]:  # zarr-input first
        outcome = RUNNERS[name](settings)
        lines += outcome.lines
        detail += outcome.detail
        for line in outcome.lines:
            if isinstance(line, Skipped):
                print(f"{name}: skipped: {line.reason}", file=sys.stderr)
    load = os.getloadavg()
    return [
        f"Machine: {os.cpu_count()} cores; {args.runs} rounds; load average at the end "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}. Ratio: median [min–max] over the rounds, "
        "each round against its own baseline; met: the median meets the target.",
        "",
        *summary(lines),
        *detail,
    ]


def main() -> None:
    args = arguments()
    work = args.work or Path(tempfile.mkdtemp(prefix="pixscale-fast-paths-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        text = "\n".join(run(args, work))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(text)
    if args.table:
        args.table.write_text(text + "\n")


if __name__ == "__main__":
    main()
