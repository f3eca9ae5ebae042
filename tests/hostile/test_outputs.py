"""Outputs are safe: committed whole or not at all, never clobbering, never replacing a FIFO
or a device, checkable without their source; records read back robustly.

An output never clobbers another output of the same run, a FIFO or a device; collisions are
found before any work; two runs racing for one output name leave one run's files, whole;
``verify`` catches edited data and records; a malformed record is one clean error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from cli_helpers import fails_with, run_cli
from pixscale.engine.local import convert
from pixscale.errors import InputError, OutputError, ParamsError, PixscaleError
from pixscale.store.backends.hdf5.writer import Hdf5Writer
from pixscale.store.io import atomic
from pixscale.store.io.atomic import staged_outputs
from pixscale.store.io.checksum import crc32_combine
from pixscale.store.naming import labels_path, sidecar_path
from pixscale.store.output import Output, open_writer
from pixscale.store.reader import open_converted
from pixscale.store.records import load_params, read_record
from pixscale.tasks.invert import invert
from pixscale.tasks.verify import verify

from .conftest import (
    IS_ROOT,
    SAMPLE_IMAGES,
    SAMPLE_LABELS,
    Outcome,
    assert_clean_failure,
    assert_unchanged,
    isolated_cli,
    load_json,
    race_cli,
    skip_unless_fifo_supported,
    snapshot,
    start_cli,
    unit_values,
)

REFUSED_NODE = "not a regular file; refusing to replace it"
EXISTS = "already exists. Use --overwrite to replace it."
PARAMS_OUT_CLASH = "--params-out names a file the output itself writes"
#: What converting ``late_corrupt`` ends with, once all the work is done.
LATE_DAMAGE = "gzip CRC check failed: the file is damaged"


def entries(folder: Path) -> list[str]:
    """Every name in ``folder``, hidden temporary files included."""
    return sorted(os.listdir(folder))


@pytest.fixture
def labelled(tmp_path: Path, sample_arrays: tuple[np.ndarray, np.ndarray]) -> list[str]:
    """Arguments for a small labelled input: 100 images and --labels."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    np.save(folder / "digits.npy", sample_arrays[0][:100])
    np.save(folder / "digits-labels.npy", sample_arrays[1][:100].astype(np.int64))
    return [str(folder / "digits.npy"), "--labels", str(folder / "digits-labels.npy")]


# ------------------------------------------------------------------ commits never clobber


def test_a_file_appearing_after_the_check_is_not_clobbered(tmp_path: Path) -> None:
    target = tmp_path / "x.npy"
    with pytest.raises(OutputError, match=EXISTS):
        with staged_outputs(False) as staged:
            staged.stage(target).write_bytes(b"this run")
            target.write_bytes(b"another run")  # after the up-front check, before the commit
    assert target.read_bytes() == b"another run"
    assert entries(tmp_path) == ["x.npy"]


def test_a_failed_link_undoes_what_this_run_linked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main file is linked last; when its link fails, the companions this run already
    linked are removed again, and only those."""
    target = tmp_path / "x.npy"
    real_link = os.link

    def racing_link(source: Any, destination: Any, **kw: Any) -> None:
        if Path(destination) == target:  # another writer wins the main file at the last moment
            target.write_bytes(b"another run")
        real_link(source, destination, **kw)

    monkeypatch.setattr(atomic.os, "link", racing_link)
    with pytest.raises(OutputError, match="x.npy: already exists"):
        with staged_outputs(False) as staged:
            staged.stage(target).write_bytes(b"data")
            staged.stage(labels_path(target)).write_bytes(b"labels")
            staged.stage(sidecar_path(target)).write_bytes(b"record")
    assert entries(tmp_path) == ["x.npy"]
    assert target.read_bytes() == b"another run"


def test_a_fifo_appearing_before_the_commit_is_not_replaced(tmp_path: Path) -> None:
    skip_unless_fifo_supported(tmp_path)
    target = tmp_path / "x.npy"
    with pytest.raises(OutputError, match=REFUSED_NODE):
        with staged_outputs(True) as staged:
            staged.stage(target).write_bytes(b"this run")
            os.mkfifo(target)
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert entries(tmp_path) == ["x.npy"]


# ------------------------------------------------------------------ special files as outputs

NODE_KINDS = ["fifo", "symlink to /dev/null", "symlink to a fifo"]


def make_node(folder: Path, kind: str, name: str) -> Path:
    path = folder / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink to /dev/null":
        path.symlink_to(os.devnull)
    elif kind == "symlink to a fifo":
        os.mkfifo(folder / "real-fifo")
        path.symlink_to(folder / "real-fifo")
    else:
        raise AssertionError(kind)
    return path


def node_identities(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Kind, inode and device of every entry: a FIFO replaced by another FIFO shows."""
    found = {}
    for name in entries(folder):
        info = os.lstat(folder / name)
        found[name] = (stat.S_IFMT(info.st_mode), info.st_ino, info.st_rdev)
    return found


def devnull_identity() -> tuple[int, int]:
    info = os.stat(os.devnull)
    return stat.S_IFMT(info.st_mode), info.st_rdev


Build = Callable[[Path, Path], list[object]]


def convert_to(name: str) -> Build:
    return lambda i, o: ["convert", i, "-o", o / name]


SPECIAL_OUTPUTS: dict[str, tuple[str, Build]] = {
    # target: (name of the node, command writing it)
    "convert -o x.npy": ("x.npy", convert_to("x.npy")),
    "convert -o x.h5": ("x.h5", convert_to("x.h5")),
    "convert, its sidecar": ("x.npy.json", convert_to("x.npy")),
    "convert --params-out": (
        "p.json",
        lambda i, o: ["convert", i, "-o", o / "x.h5", "--params-out", o / "p.json"],
    ),
    "fit -o": ("p.json", lambda i, o: ["fit", i, "-s", "standardize", "-o", o / "p.json"]),
    "preview -o": ("p.png", lambda i, o: ["preview", i, "-o", o / "p.png"]),
}


@pytest.mark.parametrize("kind", NODE_KINDS)
@pytest.mark.parametrize("case", sorted(SPECIAL_OUTPUTS))
def test_overwrite_never_replaces_a_fifo_or_device(
    tmp_path: Path, out_dir: Path, small_npy: Path, case: str, kind: str
) -> None:
    """Run in a forked child: a run that opened the FIFO would hang, not fail."""
    skip_unless_fifo_supported(out_dir)
    name, build = SPECIAL_OUTPUTS[case]
    make_node(out_dir, kind, name)
    null_before, nodes_before = devnull_identity(), node_identities(out_dir)
    before = snapshot(tmp_path)
    result = isolated_cli([*build(small_npy, out_dir), "--overwrite"], timeout=60)
    assert_clean_failure(result, names=[f"{name}: "], reasons=[REFUSED_NODE])
    assert_unchanged(tmp_path, before)
    assert node_identities(out_dir) == nodes_before
    assert devnull_identity() == null_before


@pytest.mark.parametrize("kind", NODE_KINDS)
def test_invert_overwrite_never_replaces_a_fifo_or_device(
    tmp_path: Path, out_dir: Path, small_npy: Path, kind: str
) -> None:
    skip_unless_fifo_supported(out_dir)
    converted = tmp_path / "converted.npy"
    assert run_cli("convert", small_npy, "-o", converted, "-q").exit_code == 0
    node = make_node(out_dir, kind, "back.npy")
    nodes_before = node_identities(out_dir)
    before = snapshot(tmp_path)
    result = isolated_cli(["invert", converted, "-o", node, "--overwrite"], timeout=60)
    assert_clean_failure(result, names=["back.npy: "], reasons=[REFUSED_NODE])
    assert_unchanged(tmp_path, before)
    assert node_identities(out_dir) == nodes_before


def test_read_only_output_folder(tmp_path: Path, out_dir: Path, small_npy: Path) -> None:
    """Permission checks do not apply to root, which writes anywhere: skipped as root."""
    if IS_ROOT:
        pytest.skip("running as root: a read-only folder is still writable")
    out_dir.chmod(0o500)
    try:
        before = snapshot(tmp_path)
        fails_with(["convert", small_npy, "-o", out_dir / "x.npy"], "ermission denied")
        assert_unchanged(tmp_path, before)
    finally:
        out_dir.chmod(0o700)


# ------------------------------------------------------------------ stale companions


def test_overwrite_removes_companions_the_new_output_does_not_have(
    out_dir: Path, labelled: list[str]
) -> None:
    """Labels and per-image parameter arrays of the previous run would otherwise be read as
    this run's."""
    target = out_dir / "x.npy"
    per_image = ["-s", "standardize", "--scope", "image"]
    first = run_cli("convert", *labelled, "-o", target, *per_image, "-q")
    assert first.exit_code == 0, first.stderr
    assert entries(out_dir) == ["x.labels.npy", "x.npy", "x.npy.json", "x.params.npz"]
    second = run_cli("convert", labelled[0], "-o", target, "--overwrite", "-q")
    assert second.exit_code == 0, second.stderr
    assert entries(out_dir) == ["x.npy", "x.npy.json"]
    output = load_json(sidecar_path(target))["output"]
    assert "labels" not in output and "arrays" not in output


# ------------------------------------------------------------------ collisions found first


@pytest.fixture
def late_corrupt(tmp_path: Path) -> Path:
    """The bundled sample (with its labels) with damage that only reading to the end finds.

    Converting it fails with ``LATE_DAMAGE`` after all the work; an output collision reported
    instead proves that outputs were checked before the work began.
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
    fails_with(["convert", late_corrupt, "-o", out_dir / "x.npy"], f"{late_corrupt}: {LATE_DAMAGE}")
    assert_unchanged(tmp_path, before)


PER_IMAGE = ["-s", "standardize", "--scope", "image"]

PARAMS_OUT_CASES = {
    # case: (-o, --params-out relative to the output folder, extra options, the file it is)
    "equal to -o (.npy)": ("x.npy", "x.npy", [], "x.npy"),
    "equal to -o (.h5)": ("x.h5", "x.h5", [], "x.h5"),
    "equal to -o, spelled differently": ("x.npy", "../out/./x.npy", [], "x.npy"),
    "equal to -o through a symlink": ("x.h5", "link.h5", [], "x.h5"),
    "the sidecar": ("x.npy", "x.npy.json", [], "x.npy.json"),
    "the labels file": ("x.npy", "x.labels.npy", [], "x.labels.npy"),
    "the parameter arrays": ("x.npy", "x.params.npz", PER_IMAGE, "x.params.npz"),
    "the parameter arrays, not written this run": ("x.npy", "x.params.npz", [], "x.params.npz"),
}


@pytest.mark.parametrize("case", sorted(PARAMS_OUT_CASES))
def test_params_out_colliding_with_an_output_is_refused_before_the_work(
    tmp_path: Path, out_dir: Path, late_corrupt: Path, case: str
) -> None:
    output, params_out, extra, clashes_with = PARAMS_OUT_CASES[case]
    if case.endswith("symlink"):
        (out_dir / "link.h5").symlink_to(out_dir / output)
    before = snapshot(tmp_path)
    args = ["convert", late_corrupt, "-o", out_dir / output, "--params-out", out_dir / params_out]
    says = f"{PARAMS_OUT_CLASH} ({out_dir / clashes_with})"
    assert LATE_DAMAGE not in fails_with([*args, *extra], says).stderr
    assert_unchanged(tmp_path, before)


def test_params_out_collision_with_overwrite_is_refused_too(
    tmp_path: Path, out_dir: Path, labelled: list[str]
) -> None:
    """--overwrite allows replacing old files, not writing two outputs to one name."""
    assert run_cli("convert", *labelled, "-o", out_dir / "x.npy", "-q").exit_code == 0
    before = snapshot(tmp_path)
    args = ["-o", out_dir / "x.npy", "--params-out", out_dir / "x.npy.json", "--overwrite"]
    fails_with(["convert", *labelled, *args], PARAMS_OUT_CLASH, names=["x.npy.json"])
    assert_unchanged(tmp_path, before)


EXISTING = {
    # case: (existing file or None, -o, extra options, what the error says)
    "labels file exists": ("x.labels.npy", "x.npy", [], f"x.labels.npy: {EXISTS}"),
    "sidecar exists": ("x.npy.json", "x.npy", [], f"x.npy.json: {EXISTS}"),
    "parameter arrays exist": ("x.params.npz", "x.npy", PER_IMAGE, f"x.params.npz: {EXISTS}"),
    "parameter arrays exist, not written this run": (
        "x.params.npz",
        "x.npy",
        [],
        f"x.params.npz: {EXISTS}",
    ),
    "--params-out exists": (
        "p.json",
        "x.h5",
        ["--params-out", "{out}/p.json"],
        f"p.json: {EXISTS}",
    ),
    "--params-out folder missing": (
        None,
        "x.h5",
        ["--params-out", "{out}/nope/p.json"],
        "nope/p.json: output folder {out}/nope does not exist",
    ),
}


@pytest.mark.parametrize("case", sorted(EXISTING))
def test_existing_companions_are_refused_before_the_work(
    tmp_path: Path, out_dir: Path, late_corrupt: Path, case: str
) -> None:
    existing, output, extra, says = EXISTING[case]
    if existing is not None:
        (out_dir / existing).write_text("precious")
    before = snapshot(tmp_path)
    options = [e.format(out=out_dir) for e in extra]
    line = fails_with(
        ["convert", late_corrupt, "-o", out_dir / output, *options], says.format(out=out_dir)
    ).stderr
    assert LATE_DAMAGE not in line
    assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------ racing runs

FORKED_RACES = 20
PROCESS_RACES = 2
OVERWRITE_RACES = 5


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


def whole_run_problems(
    attempt: str, folder: Path, contenders: dict[str, tuple[Path, np.ndarray, str]]
) -> tuple[str | None, list[str]]:
    """Which input's run ``out.npy`` is, and what is wrong with it: the record names one
    input, the data is all of that input's, the recorded checksum is the data's, and
    nothing else is in the folder."""
    names = entries(folder)
    if names != ["out.npy", "out.npy.json"]:
        return None, [f"{attempt}: the folder holds {names}"]
    record = load_json(folder / "out.npy.json")
    source = record["source"]
    winner = next((n for n, (_, _, d) in contenders.items() if source["sha256"] == d), None)
    if winner is None or source["name"] != winner:
        return None, [f"{attempt}: the record describes neither input: {source}"]
    data = np.load(folder / "out.npy")
    problems = []
    if not np.array_equal(data, unit_values(contenders[winner][1])):
        problems.append(f"{attempt}: out.npy is not the data of its record's run ({winner})")
    if record["output"]["checksum"]["value"] != f"{zlib.crc32(data.tobytes()):08x}":
        problems.append(f"{attempt}: the recorded checksum is not that of out.npy")
    return winner, problems


def race_problems(
    attempt: str,
    folder: Path,
    outcomes: dict[str, Outcome],
    contenders: dict[str, tuple[Path, np.ndarray, str]],
) -> list[str]:
    """Exactly one winner, a clean 'already exists' for the loser, and out.npy and
    out.npy.json both wholly the winner's."""
    codes = sorted(o.code if o.code is not None else -999 for o in outcomes.values())
    if codes != [0, 1]:
        details = "; ".join(f"{n}: {o.code} {o.note} {o.stderr!r}" for n, o in outcomes.items())
        return [f"{attempt}: exit codes {codes} ({details})"]
    loser = next(o for o in outcomes.values() if o.code == 1)
    problems = []
    try:
        # out.npy or its sidecar, whichever the loser reached first
        assert_clean_failure(loser, names=["out.npy"], reasons=[EXISTS])
    except AssertionError as error:
        problems.append(f"{attempt}: the loser failed otherwise: {error}")
    winner, found = whole_run_problems(attempt, folder, contenders)
    problems += found
    expected = next(name for name, o in outcomes.items() if o.code == 0)
    if winner is not None and winner != expected:
        problems.append(f"{attempt}: {expected} won but out.npy is {winner}'s")
    return problems


def test_concurrent_runs_one_winner_whole_outputs(
    tmp_path: Path, contenders: dict[str, tuple[Path, np.ndarray, str]]
) -> None:
    """Two runs writing out.npy at once without --overwrite, released at the same moment
    (forked processes behind a barrier), FORKED_RACES times."""
    problems: list[str] = []
    names = list(contenders)
    for attempt in range(FORKED_RACES):
        folder = tmp_path / f"race{attempt}"
        folder.mkdir()
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


def test_concurrent_runs_with_overwrite_never_mix_their_files(
    tmp_path: Path, contenders: dict[str, tuple[Path, np.ndarray, str]]
) -> None:
    """With --overwrite both runs succeed; what is left is one run's files, whole."""
    problems: list[str] = []
    names = list(contenders)
    for attempt in range(OVERWRITE_RACES):
        folder = tmp_path / f"race{attempt}"
        folder.mkdir()
        common = ["-o", folder / "out.npy", "-q", "--overwrite"]
        results = race_cli([["convert", contenders[n][0], *common] for n in names])
        codes = [o.code for o in results]
        if codes != [0, 0]:
            problems.append(f"race {attempt}: exit codes {codes}: {[o.stderr for o in results]}")
            continue
        problems += whole_run_problems(f"race {attempt}", folder, contenders)[1]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ integrity without source


def npy_data_bytes(path: Path) -> bytes:
    return np.ascontiguousarray(np.load(path), "<f4").tobytes()


@pytest.mark.parametrize(
    "name, options",
    [
        ("x.npy", []),
        ("x.h5", []),
        ("x.h5", ["--compression", "gzip"]),
        ("x.h5", ["--layout", "nchw", "--chunk-images", "7"]),
    ],
)
def test_the_record_holds_the_checksum_of_the_data_as_written(
    tmp_path: Path, name: str, options: list[str]
) -> None:
    out = tmp_path / name
    result = run_cli("convert", SAMPLE_IMAGES, "-o", out, *options, "-q")
    assert result.exit_code == 0, result.stderr
    record, _ = read_record(out)
    if name.endswith(".npy"):
        data, labels = npy_data_bytes(out), np.load(labels_path(out))
    else:
        with h5py.File(out, "r") as handle:
            data, labels = handle["images"][()].astype("<f4").tobytes(), handle["labels"][()]
    output = record["output"]
    assert output["checksum"] == {"algorithm": "crc32", "value": f"{zlib.crc32(data):08x}"}
    assert output["labels_checksum"] == {
        "algorithm": "crc32",
        "value": f"{zlib.crc32(np.ascontiguousarray(labels).tobytes()):08x}",
    }


def test_a_stream_records_its_checksum_in_params_out(tmp_path: Path) -> None:
    params_out = tmp_path / "p.json"
    result = run_cli("convert", SAMPLE_IMAGES, "-o", "-", "--params-out", params_out)
    assert result.exit_code == 0, result.stderr
    (tmp_path / "s.npy").write_bytes(result.stdout_bytes)
    data = npy_data_bytes(tmp_path / "s.npy")
    record = json.loads(params_out.read_text())
    assert record["output"]["checksum"] == {
        "algorithm": "crc32",
        "value": f"{zlib.crc32(data):08x}",
    }


def edit(path: Path, index: tuple[int, ...], value: float) -> None:
    if path.suffix == ".npy":
        data = np.load(path, mmap_mode="r+")
        data[index] = value
        data.flush()
        del data
    else:
        with h5py.File(path, "r+") as handle:
            handle["images"][index] = value


@pytest.fixture(params=[".npy", ".h5"])
def sample_output(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    out = tmp_path / f"x{request.param}"
    convert(SAMPLE_IMAGES, out)
    return out


def failed_checks(path: Path, source: Path | None = None, **options: Any) -> list[str]:
    return [name for name, passed, _ in verify(path, source, **options).checks if not passed]


def test_an_untouched_output_verifies(sample_output: Path) -> None:
    assert failed_checks(sample_output) == []
    assert failed_checks(sample_output, SAMPLE_IMAGES) == []
    assert run_cli("verify", sample_output, "-q").exit_code == 0


@pytest.mark.parametrize("value", [7.0, float("nan"), float("-inf"), 0.5])
def test_verify_without_source_catches_a_value_the_record_cannot_produce(
    sample_output: Path, value: float
) -> None:
    edit(sample_output, (500, 14, 14), value)
    assert failed_checks(sample_output) == ["checksum", "values allowed by the record"]
    line = fails_with(["verify", sample_output], f"{sample_output}: verification failed").stderr
    assert "checksum" in line


def test_verify_without_source_catches_a_plausible_value_by_its_checksum(
    sample_output: Path,
) -> None:
    edit(sample_output, (1, 20, 9), np.float32(128) / np.float32(255))
    assert failed_checks(sample_output) == ["checksum"]


@pytest.mark.parametrize("field, value", [("scale", 0.5), ("offset", 1.0), ("target_low", 0.25)])
def test_verify_catches_a_tampered_scale_or_offset(
    field: str, value: float, tmp_path: Path
) -> None:
    out = tmp_path / "x.npy"
    convert(SAMPLE_IMAGES, out)
    record = json.loads(sidecar_path(out).read_text())
    record[field] = value
    sidecar_path(out).write_text(json.dumps(record))
    reason = {
        "scale": "scale disagrees",
        "offset": "offset disagrees",
        "target_low": "strategy unit maps with",  # a defining number of a fixed strategy
    }[field]
    with pytest.raises(ParamsError, match=f"{reason} .*: the record is inconsistent"):
        failed_checks(out)  # the one validation point refuses the record itself
    line = fails_with(["verify", out], f"{out}: {reason}").stderr
    assert line.startswith(f"Error: {out}: {reason}"), line


@pytest.mark.parametrize("attribute", ["scale", "offset", "strategy"])
def test_verify_catches_tampered_hdf5_attributes(tmp_path: Path, attribute: str) -> None:
    out = tmp_path / "x.h5"
    convert(SAMPLE_IMAGES, out)
    with h5py.File(out, "r+") as handle:
        handle.attrs[attribute] = "range" if attribute == "strategy" else np.float64(0.5)
    assert failed_checks(out) == ["HDF5 attributes agree with the record"]


def forge_checksum(path: Path) -> None:
    """Update the record's checksum to the edited data: only the source can tell now."""
    if path.suffix == ".npy":
        record = json.loads(sidecar_path(path).read_text())
        record["output"]["checksum"]["value"] = f"{zlib.crc32(npy_data_bytes(path)):08x}"
        sidecar_path(path).write_text(json.dumps(record))
        return
    with h5py.File(path, "r+") as handle:
        record = json.loads(handle.attrs["pixscale_params"])
        data = handle["images"][()].tobytes()
        record["output"]["checksum"]["value"] = f"{zlib.crc32(data):08x}"
        handle.attrs["pixscale_params"] = json.dumps(record)


def test_verify_source_compares_every_image(sample_output: Path) -> None:
    edit(sample_output, (1, 20, 9), np.float32(128) / np.float32(255))  # image 1: never sampled
    forge_checksum(sample_output)
    assert failed_checks(sample_output) == []
    assert failed_checks(sample_output, SAMPLE_IMAGES) == [
        "every image re-derives exactly from the source"
    ]
    assert failed_checks(sample_output, SAMPLE_IMAGES, samples=64) == []
    args = ["verify", sample_output, "--source", SAMPLE_IMAGES]
    line = fails_with(args, f"{sample_output}: verification failed").stderr
    assert "every image re-derives exactly from the source" in line


@pytest.fixture
def dask_output(tmp_path: Path) -> Path:
    """An output as the dask engine wrote them until now: a master ``d.h5`` whose ``images``
    is a virtual dataset over shards in ``d.h5.shards/``, with labels and the record."""
    local = tmp_path / "local.h5"
    convert(SAMPLE_IMAGES, local)
    record, _ = read_record(local)
    with h5py.File(local, "r") as handle:
        images, labels = handle["images"][()], handle["labels"][()]
        attrs = {name: handle.attrs[name] for name in ("strategy", "scale", "offset")}
    (tmp_path / "d.h5.shards").mkdir()
    parts = [(start, f"d.h5.shards/part-{i:05d}.h5") for i, start in enumerate((0, 400, 800))]
    layout = h5py.VirtualLayout(images.shape, "<f4")
    for start, name in parts:
        part = images[start : start + 400]
        with h5py.File(tmp_path / name, "w") as handle:
            handle["images"] = part
        layout[start : start + len(part)] = h5py.VirtualSource(name, "images", shape=part.shape)
    record["output"].update(engine="dask", virtual=True, shards=[name for _, name in parts])
    out = tmp_path / "d.h5"
    with h5py.File(out, "w") as handle:
        handle.create_virtual_dataset("images", layout)
        handle["labels"] = labels
        handle.attrs.update(attrs)
        handle.attrs["pixscale_params"] = json.dumps(record)
    local.unlink()
    return out


def test_a_dask_output_without_its_shards_is_refused(tmp_path: Path, dask_output: Path) -> None:
    assert failed_checks(dask_output, SAMPLE_IMAGES) == []
    shards = dask_output.with_name("d.h5.shards")
    shards.rename(tmp_path / "elsewhere")
    with pytest.raises(InputError, match=r"d\.h5: shard d\.h5\.shards/part-00000\.h5 .*missing"):
        open_converted(dask_output)
    missing = "shard d.h5.shards/part-00000.h5"
    for command in (["verify", dask_output], ["info", dask_output]):
        assert "missing" in fails_with(command, missing, names=[dask_output]).stderr
    fails_with(["invert", dask_output, "-o", tmp_path / "back.npy"], missing)
    assert not (tmp_path / "back.npy").exists()


def test_a_dask_output_with_a_short_shard_is_refused(tmp_path: Path, dask_output: Path) -> None:
    with h5py.File(tmp_path / "d.h5.shards" / "part-00002.h5", "w") as handle:
        handle["images"] = np.zeros((10, 28, 28), np.float32)
    with pytest.raises(InputError, match="part-00002.h5 does not hold the images"):
        open_converted(dask_output)


@pytest.mark.parametrize("name", ["x.npy", "x.h5"])
def test_data_written_around_the_writer_gets_no_checksum_unless_adopted(
    tmp_path: Path, name: str
) -> None:
    """The dask engine's tasks write the data region themselves: the writer must not record
    the checksum of the nothing it saw, only the one the record's ``output`` gives it."""
    values = (np.arange(6 * 4 * 4).reshape(6, 4, 4) % 256 / 255).astype("<f4")
    for adopt in (False, True):
        target = tmp_path / f"{adopt}-{name}"
        with staged_outputs(False) as staged:
            writer = open_writer(Output(target), values.shape, staged)
            offset = writer.images.id.get_offset() if isinstance(writer, Hdf5Writer) else 4096
            with open(writer.temp, "r+b") as handle:
                handle.seek(offset)
                handle.write(values.tobytes())
            given = {"checksum": {"algorithm": "crc32", "value": f"{zlib.crc32(values):08x}"}}
            record = writer.finish(
                {"strategy": "unit", "scale": 1.0, "offset": 0.0, "output": given if adopt else {}},
                {},
                None,
            )
            if adopt:
                staged.seal(len(values), {"output": record})
            else:  # and so the commit refuses it
                with pytest.raises(OutputError, match="carries no checksum; nothing was"):
                    staged.seal(len(values), {"output": record})
                staged.discard()
        assert ("checksum" in record) is adopt
        assert target.exists() is adopt
        if adopt:
            assert record["checksum"]["value"] == f"{zlib.crc32(values.tobytes()):08x}"


def test_checksums_of_parts_combine_into_the_checksum_of_the_whole() -> None:
    data = np.random.default_rng(5).integers(0, 256, 100_003, dtype=np.uint8).tobytes()
    for cut in (0, 1, 4096, 77_777, len(data)):
        head, tail = data[:cut], data[cut:]
        combined = crc32_combine(zlib.crc32(head), zlib.crc32(tail), len(tail))
        assert combined == zlib.crc32(data)


def test_a_virtual_dataset_reading_outside_the_output_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out" / "x.h5"
    out.parent.mkdir()
    convert(SAMPLE_IMAGES, tmp_path / "real.h5")
    record, _ = read_record(tmp_path / "real.h5")
    with h5py.File(out, "w") as handle:
        layout = h5py.VirtualLayout((1000, 28, 28), "<f4")
        layout[:] = h5py.VirtualSource(str(tmp_path / "real.h5"), "images", shape=(1000, 28, 28))
        handle.create_virtual_dataset("images", layout)
        handle.attrs["pixscale_params"] = json.dumps(record)
    with pytest.raises(InputError, match="outside"):
        open_converted(out)


# ------------------------------------------------------------------ invert --verify safety


@pytest.mark.parametrize("target", ["back.npy", "back-idx3-ubyte.gz", "back.h5"])
def test_invert_verify_that_finds_differences_leaves_no_output(
    tmp_path: Path, out_dir: Path, target: str
) -> None:
    converted = tmp_path / "x.npy"
    convert(SAMPLE_IMAGES, converted)
    edit(converted, (1, 14, 14), np.float32(3) / np.float32(255))
    args = ["invert", converted, "-o", out_dir / target, "--verify", SAMPLE_IMAGES]
    fails_with(args, "1 pixels differ from the source")
    assert entries(out_dir) == []
    with pytest.raises(InputError, match="1 pixels differ"):
        invert(converted, out_dir / target, verify_source=SAMPLE_IMAGES)
    assert entries(out_dir) == []


def test_invert_never_writes_over_the_companions_of_its_input(tmp_path: Path) -> None:
    converted = tmp_path / "x.npy"
    convert(SAMPLE_IMAGES, converted)
    before = labels_path(converted).read_bytes()
    args = ["invert", converted, "-o", labels_path(converted), "--overwrite"]
    fails_with(args, "refusing to overwrite an input", names=[labels_path(converted)])
    assert labels_path(converted).read_bytes() == before


# ------------------------------------------------------------------ robust record readers

DEEP = "[" * 100_000 + "]" * 100_000

Edit = Callable[[dict[str, Any]], Any]

RECORD_EDITS: dict[str, tuple[Edit, str]] = {
    # case: (edit of the record, what every command says of it)
    "record is a list": (lambda r: [r], "not a parameter record (a JSON object)"),
    "output is a list": (
        lambda r: {**r, "output": [1, 2]},
        "output must be an object, not a list",
    ),
    "output is a string": (
        lambda r: {**r, "output": "x"},
        "output must be an object, not a string",
    ),
    "source is a string": (
        lambda r: {**r, "source": "x"},
        "source must be an object, not a string",
    ),
    "stats is a list": (lambda r: {**r, "stats": [1, 2]}, "stats must be an object, not a list"),
    "fitted_on is a string": (
        lambda r: {**r, "fitted_on": "x"},
        "fitted_on must be an object, not a string",
    ),
    "output.labels is a list": (
        lambda r: {**r, "output": {**r["output"], "labels": [1]}},
        "output.labels must name a file beside x.npy, not [1]",
    ),
    "output.labels leaves the folder": (
        lambda r: {**r, "output": {**r["output"], "labels": "../x.labels.npy"}},
        "output.labels must name a file beside x.npy, not '../x.labels.npy'",
    ),
    "output.arrays is absolute": (
        lambda r: {**r, "output": {**r["output"], "arrays": "/etc"}},
        "output.arrays must name a file beside x.npy, not '/etc'",
    ),
    "output.arrays is missing": (
        lambda r: {**r, "output": {**r["output"], "arrays": "no.npz"}},
        "parameter arrays no.npz missing",
    ),
    "output.layout is a number": (
        lambda r: {**r, "output": {**r["output"], "layout": 5}},
        "the record's layouts ('nhw' → 5) do not fit its data",
    ),
    "output.layout unknown": (
        lambda r: {**r, "output": {**r["output"], "layout": "nwhc"}},
        "the record's layouts ('nhw' → 'nwhc') do not fit its data",
    ),
    "image_shape a string": (
        lambda r: {**r, "image_shape": "28x28"},
        "image_shape must be a list of integers, not '28x28'",
    ),
    "image_shape huge": (
        lambda r: {**r, "image_shape": [1 << 40, 1 << 40]},
        "do not match the record's image_shape [1099511627776, 1099511627776]",
    ),
    "image_shape wrong": (
        lambda r: {**r, "image_shape": [14, 56]},
        "images of shape (28, 28) do not match the record's image_shape [14, 56]",
    ),
    "channel_axis 1e309": (
        lambda r: {**r, "channel_axis": "@inf@"},
        "channel_axis is not a finite number",
    ),
    "source_low NaN": (
        lambda r: {**r, "source_low": "@nan@"},
        "source_low is not a finite number",
    ),
    "target_span -Infinity": (
        lambda r: {**r, "target_span": "@-inf@"},
        "target_span is not a finite number",
    ),
    "source_low nested deeply": (
        lambda r: {**r, "source_low": "@deep@"},
        "invalid record: JSON nested too deeply",
    ),
}


def render(value: Any) -> str:
    text = json.dumps(value)
    for word, literal in {"inf": "1e309", "nan": "NaN", "-inf": "-Infinity", "deep": DEEP}.items():
        text = text.replace(f'"@{word}@"', literal)
    return text


@pytest.mark.parametrize("case", sorted(RECORD_EDITS))
def test_a_malformed_sidecar_raises_only_pixscale_errors(tmp_path: Path, case: str) -> None:
    out = tmp_path / "x.npy"
    convert(SAMPLE_IMAGES, out)
    record = json.loads(sidecar_path(out).read_text())
    edit, says = RECORD_EDITS[case]
    sidecar_path(out).write_text(render(edit(record)))
    for reader in (read_record, load_params):  # these check less: passing is no failure here
        with contextlib.suppress(ParamsError, InputError):
            reader(out)
    with pytest.raises((ParamsError, InputError), match=re.escape(says)):
        open_converted(out)
    for command in (["info", out], ["verify", out], ["invert", out, "-o", tmp_path / "b.npy"]):
        fails_with(command, says, names=["x.npy"])
    assert not (tmp_path / "b.npy").exists()


@pytest.mark.parametrize(
    "value", [b"{not json", np.int64(5), np.array([1.0, 2.0]), "[]", "{" * 50_000]
)
def test_a_malformed_hdf5_record_attribute_is_a_params_error(tmp_path: Path, value: Any) -> None:
    out = tmp_path / "x.h5"
    convert(SAMPLE_IMAGES, out)
    with h5py.File(out, "r+") as handle:
        handle.attrs["pixscale_params"] = value
    with pytest.raises(ParamsError, match=r"x\.h5"):
        read_record(out)
    fails_with(["invert", out, "-o", tmp_path / "b.npy"], f"{out}: ")
    assert not (tmp_path / "b.npy").exists()


def test_per_image_arrays_of_the_wrong_length_are_refused(tmp_path: Path) -> None:
    args = ["-o", tmp_path / "p.npy", "-s", "standardize", "--scope", "image"]
    assert run_cli("convert", SAMPLE_IMAGES, *args).exit_code == 0
    arrays = tmp_path / "p.params.npz"
    with np.load(arrays) as archive:
        cut = {name: archive[name][:5] for name in archive.files}
    np.savez(arrays, **cut)
    with pytest.raises(PixscaleError, match="p.npy"):
        open_converted(tmp_path / "p.npy")
