"""Outputs that collide, race, or are not regular files.

An output never clobbers another output of the same run, a FIFO or a device; collisions are
found before any work; two runs racing for one output name leave one run's files, whole.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from .conftest import (
    IS_ROOT,
    SAMPLE_IMAGES,
    SAMPLE_LABELS,
    Outcome,
    assert_clean_failure,
    assert_unchanged,
    cli,
    isolated_cli,
    leftovers,
    load_json,
    race_cli,
    skip_unless_fifo_supported,
    snapshot,
    start_cli,
    unit_values,
)


@pytest.fixture
def labelled(tmp_path: Path, sample_arrays: tuple[np.ndarray, np.ndarray]) -> list[str]:
    """Arguments for a small labelled input: 100 images and --labels."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    np.save(folder / "digits.npy", sample_arrays[0][:100])
    np.save(folder / "digits-labels.npy", sample_arrays[1][:100].astype(np.int64))
    return [str(folder / "digits.npy"), "--labels", str(folder / "digits-labels.npy")]


# ------------------------------------------------------------------ --params-out collisions

COLLISION_REASONS = (
    "same",
    "collid",
    "clash",
    "conflict",
    "twice",
    "overlap",
    "both",
    "params-out",
)

PARAMS_OUT_CASES = {
    # case: (output name, params-out spelled relative to the output folder, extra options)
    "equal to -o (.npy)": ("x.npy", "x.npy", []),
    "equal to -o (.h5)": ("x.h5", "x.h5", []),
    "equal to -o, spelled differently": ("x.npy", "../out/./x.npy", []),
    "the sidecar": ("x.npy", "x.npy.json", []),
    "the labels file": ("x.npy", "x.labels.npy", []),
    "the parameter arrays": ("x.npy", "x.params.npz", ["-s", "standardize", "--scope", "image"]),
}


@pytest.mark.parametrize("case", sorted(PARAMS_OUT_CASES))
def test_params_out_colliding_with_an_output(
    tmp_path: Path, out_dir: Path, labelled: list[str], case: str
) -> None:
    name, params_out, extra = PARAMS_OUT_CASES[case]
    before = snapshot(tmp_path)
    result = cli(
        ["convert", *labelled, "-o", out_dir / name, "--params-out", out_dir / params_out, *extra]
    )
    assert_clean_failure(result, names=[Path(params_out).name, name], reasons=COLLISION_REASONS)
    assert_unchanged(tmp_path, before)


def test_params_out_collision_with_overwrite_is_refused_too(
    tmp_path: Path, out_dir: Path, labelled: list[str]
) -> None:
    """--overwrite allows replacing old files, not writing two outputs to one name."""
    ok = cli(["convert", *labelled, "-o", out_dir / "x.npy", "-q"])
    assert ok.code == 0, ok.describe()
    before = snapshot(tmp_path)
    result = cli(
        [
            "convert",
            *labelled,
            "-o",
            out_dir / "x.npy",
            "--params-out",
            out_dir / "x.npy.json",
            "--overwrite",
        ]
    )
    assert_clean_failure(result, names=["x.npy.json", "x.npy"], reasons=COLLISION_REASONS)
    assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------ special files as outputs

NODE_REASONS = ("regular", "fifo", "pipe", "device", "special", "not a file", "symlink", "link")


def make_node(folder: Path, kind: str, name: str) -> Path:
    path = folder / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink to /dev/null":
        path.symlink_to("/dev/null")
    elif kind == "symlink to a fifo":
        os.mkfifo(folder / "real-fifo")
        path.symlink_to(folder / "real-fifo")
    else:
        raise AssertionError(kind)
    return path


def devnull_identity() -> tuple[int, int]:
    info = os.stat("/dev/null")
    return stat.S_IFMT(info.st_mode), info.st_rdev


SPECIAL_OUTPUTS = {
    # case: (node kind, node name, command builder)
    "convert -o fifo.npy": ("fifo", "x.npy", lambda i, o: ["convert", i, "-o", o / "x.npy"]),
    "convert -o fifo.h5": ("fifo", "x.h5", lambda i, o: ["convert", i, "-o", o / "x.h5"]),
    "convert -o link-to-null.npy": (
        "symlink to /dev/null",
        "x.npy",
        lambda i, o: ["convert", i, "-o", o / "x.npy"],
    ),
    "convert -o link-to-fifo.h5": (
        "symlink to a fifo",
        "x.h5",
        lambda i, o: ["convert", i, "-o", o / "x.h5"],
    ),
    "convert, sidecar is a fifo": (
        "fifo",
        "x.npy.json",
        lambda i, o: ["convert", i, "-o", o / "x.npy"],
    ),
    "convert --params-out fifo": (
        "fifo",
        "p.json",
        lambda i, o: ["convert", i, "-o", o / "x.h5", "--params-out", o / "p.json"],
    ),
    "fit -o link-to-null.json": (
        "symlink to /dev/null",
        "p.json",
        lambda i, o: ["fit", i, "-s", "standardize", "-o", o / "p.json"],
    ),
    "preview -o fifo.png": ("fifo", "p.png", lambda i, o: ["preview", i, "-o", o / "p.png"]),
}


@pytest.mark.parametrize("case", sorted(SPECIAL_OUTPUTS))
def test_overwrite_never_replaces_a_fifo_or_device(
    tmp_path: Path, out_dir: Path, small_npy: Path, case: str
) -> None:
    skip_unless_fifo_supported(out_dir)
    kind, name, build = SPECIAL_OUTPUTS[case]
    node = make_node(out_dir, kind, name)
    null_before = devnull_identity()
    before = snapshot(tmp_path)
    result = isolated_cli([*build(small_npy, out_dir), "--overwrite"], timeout=60)
    assert_clean_failure(result, names=[node.name], reasons=NODE_REASONS)
    assert_unchanged(tmp_path, before)
    assert devnull_identity() == null_before


def test_invert_overwrite_never_replaces_a_fifo(
    tmp_path: Path, out_dir: Path, small_npy: Path
) -> None:
    skip_unless_fifo_supported(out_dir)
    converted = tmp_path / "converted.npy"
    assert cli(["convert", small_npy, "-o", converted, "-q"]).code == 0
    node = make_node(out_dir, "fifo", "back.npy")
    before = snapshot(tmp_path)
    result = isolated_cli(["invert", converted, "-o", node, "--overwrite"], timeout=60)
    assert_clean_failure(result, names=[node.name], reasons=NODE_REASONS)
    assert_unchanged(tmp_path, before)


def test_read_only_output_folder(tmp_path: Path, out_dir: Path, small_npy: Path) -> None:
    """Permission checks do not apply to root, which writes anywhere: skipped as root."""
    if IS_ROOT:
        pytest.skip("running as root: a read-only folder is still writable")
    out_dir.chmod(0o500)
    try:
        before = snapshot(tmp_path)
        result = cli(["convert", small_npy, "-o", out_dir / "x.npy"])
        assert_clean_failure(result, names=["x.npy", out_dir.name], reasons=["permission"])
        assert_unchanged(tmp_path, before)
    finally:
        out_dir.chmod(0o700)


# ------------------------------------------------------------------ stale companions


def test_overwrite_removes_stale_labels(
    tmp_path: Path, out_dir: Path, labelled: list[str], small_npy: Path
) -> None:
    first = cli(["convert", *labelled, "-o", out_dir / "x.npy", "-q"])
    assert first.code == 0 and (out_dir / "x.labels.npy").is_file(), first.describe()
    second = cli(["convert", small_npy, "-o", out_dir / "x.npy", "--overwrite", "-q"])
    assert second.code == 0, second.describe()
    record = load_json(out_dir / "x.npy.json")
    assert "labels" not in record["output"]
    assert not (out_dir / "x.labels.npy").exists(), (
        "x.labels.npy of the previous run is still beside x.npy, which has no labels"
    )


def test_overwrite_removes_stale_parameter_arrays(
    tmp_path: Path, out_dir: Path, small_npy: Path
) -> None:
    first = cli(
        ["convert", small_npy, "-o", out_dir / "x.npy", "-s", "standardize", "--scope", "image"]
    )
    assert first.code == 0 and (out_dir / "x.params.npz").is_file(), first.describe()
    second = cli(["convert", small_npy, "-o", out_dir / "x.npy", "--overwrite", "-q"])
    assert second.code == 0, second.describe()
    assert "arrays" not in load_json(out_dir / "x.npy.json")["output"]
    assert not (out_dir / "x.params.npz").exists(), (
        "x.params.npz of the previous run is still beside x.npy, which has no such arrays"
    )


# ------------------------------------------------------------------ collisions found first


@pytest.fixture
def late_corrupt(tmp_path: Path) -> Path:
    """The bundled sample (with its labels) with damage that only reading to the end finds.

    Converting it fails with "corrupt or truncated gzip" after all the work; an output
    collision reported instead proves that outputs were checked before the work began.
    """
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    data = bytearray(SAMPLE_IMAGES.read_bytes())
    data[-3000:-2000] = bytes(1000)
    path = folder / "late-images-idx3-ubyte.gz"
    path.write_bytes(bytes(data))
    (folder / "late-labels-idx1-ubyte.gz").write_bytes(SAMPLE_LABELS.read_bytes())
    return path


def test_control_late_corruption_is_found_at_the_end(
    tmp_path: Path, out_dir: Path, late_corrupt: Path
) -> None:
    before = snapshot(tmp_path)
    result = cli(["convert", late_corrupt, "-o", out_dir / "x.npy"])
    assert_clean_failure(result, names=[late_corrupt.name], reasons=["corrupt"])
    assert_unchanged(tmp_path, before)


COLLISIONS = {
    # case: (existing file or None, output, extra options, the name the error must give)
    "labels file exists": ("x.labels.npy", "x.npy", [], "x.labels.npy"),
    "sidecar exists": ("x.npy.json", "x.npy", [], "x.npy.json"),
    "parameter arrays exist": (
        "x.params.npz",
        "x.npy",
        ["-s", "standardize", "--scope", "image"],
        "x.params.npz",
    ),
    "--params-out exists": ("p.json", "x.h5", ["--params-out", "{out}/p.json"], "p.json"),
    "--params-out folder missing": (None, "x.h5", ["--params-out", "{out}/nope/p.json"], "nope"),
}


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_output_collision_found_before_the_conversion(
    tmp_path: Path, out_dir: Path, late_corrupt: Path, case: str
) -> None:
    existing, output, extra, named = COLLISIONS[case]
    if existing is not None:
        (out_dir / existing).write_text("precious")
    before = snapshot(tmp_path)
    options = [e.format(out=out_dir) for e in extra]
    result = cli(["convert", late_corrupt, "-o", out_dir / output, *options])
    assert_clean_failure(result, names=[named], reasons=["exist", "folder"], forbidden=["corrupt"])
    assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------ racing runs

FORKED_RACES = 20
PROCESS_RACES = 2


@pytest.fixture
def contenders(tmp_path: Path) -> dict[str, tuple[Path, np.ndarray, str]]:
    """Two different inputs racing for one output name: path, pixels, sha256."""
    rng = np.random.default_rng(7)
    found = {}
    for name in ("A.npy", "B.npy"):
        pixels = rng.integers(0, 256, (500, 28, 28), dtype=np.uint8)
        path = tmp_path / name
        np.save(path, pixels)
        found[name] = (path, pixels, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def race_problems(
    attempt: str,
    folder: Path,
    outcomes: dict[str, Outcome],
    contenders: dict[str, tuple[Path, np.ndarray, str]],
) -> list[str]:
    """What went wrong in one race: exactly one winner, a clean 'already exists' for the
    loser, and out.npy and out.npy.json both from the winner."""
    codes = sorted(o.code if o.code is not None else -999 for o in outcomes.values())
    if codes != [0, 1]:
        details = "; ".join(f"{n}: {o.code} {o.note} {o.stderr!r}" for n, o in outcomes.items())
        return [f"{attempt}: exit codes {codes} ({details})"]
    problems = []
    winner = next(name for name, o in outcomes.items() if o.code == 0)
    loser = next(o for o in outcomes.values() if o.code == 1)
    lines = loser.stderr.splitlines()
    clean = isinstance(loser.exception, (SystemExit, type(None))) and len(lines) == 1
    if not (clean and lines[0].startswith("Error: ") and "already exists" in lines[0]):
        problems.append(f"{attempt}: the loser said {loser.stderr!r} {loser.exc_text[-300:]}")
    record = load_json(folder / "out.npy.json")
    _, pixels, digest = contenders[winner]
    if record["source"]["name"] != winner or record["source"]["sha256"] != digest:
        problems.append(f"{attempt}: {winner} won but the record describes another source")
    data = np.load(folder / "out.npy", mmap_mode="r")
    if not np.array_equal(data[:3], unit_values(pixels[:3])):
        problems.append(f"{attempt}: out.npy does not hold the winner's data")
    if leftovers(folder):
        problems.append(f"{attempt}: left behind {leftovers(folder)}")
    return problems


def test_concurrent_runs_one_winner_whole_outputs(
    tmp_path: Path, contenders: dict[str, tuple[Path, np.ndarray, str]]
) -> None:
    """Two runs writing out.npy at once without --overwrite, released at the same moment
    (forked processes behind a barrier), FORKED_RACES times."""
    problems: list[str] = []
    for attempt in range(FORKED_RACES):
        folder = tmp_path / f"race{attempt}"
        folder.mkdir()
        names = list(contenders)
        results = race_cli(
            [["convert", contenders[n][0], "-o", folder / "out.npy", "-q"] for n in names]
        )
        outcomes = dict(zip(names, results, strict=True))
        problems += race_problems(f"race {attempt}", folder, outcomes, contenders)
    assert not problems, "\n".join(problems)


def test_concurrent_processes_one_winner_whole_outputs(
    tmp_path: Path, contenders: dict[str, tuple[Path, np.ndarray, str]]
) -> None:
    """The same race between two ``pixscale`` processes started together."""
    problems: list[str] = []
    for attempt in range(PROCESS_RACES):
        folder = tmp_path / f"race{attempt}"
        folder.mkdir()
        children = {
            name: start_cli(["convert", path, "-o", folder / "out.npy", "-q"])
            for name, (path, _, _) in contenders.items()
        }
        outcomes = {name: child.finish(timeout=120) for name, child in children.items()}
        problems += race_problems(f"process race {attempt}", folder, outcomes, contenders)
    assert not problems, "\n".join(problems)
