"""The commit is the one decision point: inputs protected by identity, exactly the declared
images sealed with their checksum, and nothing placed after a signal is reported."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from cli_helpers import assert_one_error_line, run_process
from pixscale.engine.local import convert
from pixscale.errors import InputError, OutputError
from pixscale.sources.base import Source, UInt8Array
from pixscale.store.io import atomic
from pixscale.store.io.atomic import StagedOutputs, staged_outputs

from .conftest import (
    SAMPLE_IMAGES,
    SAMPLE_LABELS,
    assert_clean_failure,
    assert_unchanged,
    cli,
    file_digest,
    leftovers,
    snapshot,
)


@pytest.fixture
def mnist(tmp_path: Path) -> Path:
    """The sample images with their labels found beside them, in a folder of their own."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLE_IMAGES, folder / "train-images-idx3-ubyte.gz")
    shutil.copy(SAMPLE_LABELS, folder / "train-labels-idx1-ubyte.gz")
    return folder / "train-images-idx3-ubyte.gz"


def digests(folder: Path) -> dict[str, str]:
    return {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.is_file()}


# -------------------------------------------------------------------- protected inputs


def test_overwrite_never_replaces_labels_found_beside_the_images(mnist: Path) -> None:
    labels = mnist.with_name("train-labels-idx1-ubyte.gz")
    before = digests(mnist.parent)
    outcome = cli(["convert", mnist, "-o", labels, "--format", "npy", "--overwrite"])
    assert_clean_failure(outcome, names=[str(labels)], reasons=["overwrite an input"])
    assert digests(mnist.parent) == before


def test_a_companion_never_replaces_a_labels_input(tmp_path: Path, mnist: Path) -> None:
    labels = tmp_path / "x.labels.npy"  # the labels companion of x.npy
    np.save(labels, np.arange(1000) % 10)
    before = digests(tmp_path)
    outcome = cli(["convert", mnist, "-o", tmp_path / "x.npy", "--labels", labels, "--overwrite"])
    assert_clean_failure(outcome, names=[str(labels)], reasons=["overwrite an input"])
    assert digests(tmp_path) == before


def test_a_hard_link_of_an_input_is_an_input(tmp_path: Path, mnist: Path) -> None:
    link = tmp_path / "linked.npy"
    os.link(mnist, link)
    before = digests(tmp_path)
    outcome = cli(["convert", mnist, "-o", link, "--overwrite"])
    assert_clean_failure(outcome, names=[str(link)], reasons=["overwrite an input"])
    assert digests(tmp_path) == before
    assert file_digest(mnist) == file_digest(SAMPLE_IMAGES)


@pytest.mark.parametrize("which", ["output", "params-out", "sidecar"])
def test_params_from_and_its_record_are_inputs(tmp_path: Path, mnist: Path, which: str) -> None:
    fitted = tmp_path / "fitted.npy"
    assert cli(["convert", mnist, "-o", fitted, "-s", "standardize"]).code == 0
    before = snapshot(tmp_path)
    target = {
        "output": ["-o", fitted],
        "params-out": ["-o", tmp_path / "y.h5", "--params-out", fitted],
        "sidecar": ["-o", tmp_path / "y.h5", "--params-out", fitted.with_name("fitted.npy.json")],
    }[which]
    outcome = cli(["convert", mnist, *target, "--params-from", fitted, "--overwrite"])
    assert_clean_failure(outcome, reasons=["overwrite an input"])
    assert_unchanged(tmp_path, before)


def test_params_out_the_same_as_params_from_is_refused(tmp_path: Path, mnist: Path) -> None:
    params = tmp_path / "p.json"
    assert cli(["fit", mnist, "-s", "standardize", "-o", params]).code == 0
    before = snapshot(tmp_path)
    outcome = cli(
        ["convert", mnist, "-o", tmp_path / "y.h5", "--params-from", params,
         "--params-out", params, "--overwrite"]
    )  # fmt: skip
    assert_clean_failure(outcome, names=[str(params)], reasons=["overwrite an input"])
    assert_unchanged(tmp_path, before)


def test_overwrite_replaces_no_foreign_file_inside_an_old_store(tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    store = tmp_path / "out.zarr"
    assert cli(["convert", SAMPLE_IMAGES, "-o", store]).code == 0
    (store / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    outcome = cli(["convert", SAMPLE_IMAGES, "-o", store, "--overwrite"])
    assert_clean_failure(outcome, names=["notes.txt"], reasons=["not part of pixscale's output"])
    assert_unchanged(tmp_path, before)


def test_overwrite_keeps_a_foreign_array_inside_an_old_store(tmp_path: Path) -> None:
    """An array someone added to a pixscale store (its own zarr.json and chunks) is not
    pixscale's to remove."""
    zarr = pytest.importorskip("zarr")
    store = tmp_path / "out.zarr"
    assert cli(["convert", SAMPLE_IMAGES, "-o", store]).code == 0
    zarr.open_group(str(store), mode="a", zarr_format=3).create_array(
        "mydata", data=np.arange(3, dtype=np.uint8)
    )
    before = snapshot(tmp_path)
    outcome = cli(["convert", SAMPLE_IMAGES, "-o", store, "--overwrite"])
    assert_clean_failure(outcome, names=["mydata"], reasons=["not part of pixscale's output"])
    assert_unchanged(tmp_path, before)


def test_overwrite_replaces_no_zarr_store_pixscale_did_not_write(tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    store = tmp_path / "theirs.zarr"
    zarr.open_group(str(store), mode="w", zarr_format=3).create_array(
        "data", shape=(4,), dtype="u1"
    )
    before = snapshot(tmp_path)
    outcome = cli(["convert", SAMPLE_IMAGES, "-o", store, "--overwrite"])
    assert_clean_failure(outcome, names=[str(store)], reasons=["pixscale did not write"])
    assert_unchanged(tmp_path, before)


def test_overwrite_of_its_own_store_still_works(tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    store = tmp_path / "out.zarr"
    assert cli(["convert", SAMPLE_IMAGES, "-o", store]).code == 0
    outcome = cli(["convert", SAMPLE_IMAGES, "-o", store, "--overwrite", "-s", "symmetric"])
    assert outcome.code == 0, outcome.describe()
    record = json.loads((store / "zarr.json").read_text())["attributes"]["pixscale_params"]
    assert json.loads(record)["strategy"] == "symmetric"


# ------------------------------------------------------------- targets before any input


def test_an_existing_folder_as_params_out_is_refused_before_stdin_is_read(
    tmp_path: Path,
) -> None:
    """stdin stays open and unwritten: a run that read it first would never end."""
    folder = tmp_path / "p.json"
    folder.mkdir()
    read_end, write_end = os.pipe()
    try:
        done = run_process(
            ["convert", "-", "-o", tmp_path / "x.h5", "--params-out", folder], stdin=read_end
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert_one_error_line(done, f"{folder}: is a folder")


def test_an_existing_labels_companion_is_refused_before_stdin_is_read(tmp_path: Path) -> None:
    (tmp_path / "x.labels.npy").write_bytes(b"someone's")
    read_end, write_end = os.pipe()
    try:
        done = run_process(["convert", "-", "-o", tmp_path / "x.npy"], stdin=read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert_one_error_line(done, "x.labels.npy: already exists")


# ------------------------------------------------------------------ count and checksum


@dataclass
class ShortSource(Source):
    """Declares ``shape[0]`` images and holds ``holds`` of them (a lying header)."""

    random_access: ClassVar[bool] = False
    holds: int = 0

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        done = 0
        while done < self.holds:
            count = min(max_images, self.holds - done)
            yield np.full((count, *self.image_shape), 7, np.uint8)
            done += count


@pytest.mark.parametrize("holds", [0, 5, 11, 40])
@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_a_source_that_holds_other_than_it_declares_commits_nothing(
    tmp_path: Path, holds: int, suffix: str
) -> None:
    source = ShortSource("lying", "test", (10, 4, 4), "nhw", (tmp_path / "lying",), holds=holds)
    (tmp_path / "lying").write_bytes(b"x")
    reason = "fewer images than the 10" if holds < 10 else "more images than the 10"
    with pytest.raises(InputError, match=reason):
        convert(source, tmp_path / f"out{suffix}", chunk_mb=0.0001)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lying"]


def test_the_commit_refuses_data_not_sealed(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="not sealed; nothing was committed"):
        with staged_outputs(False) as staged:
            staged.stage_data(tmp_path / "x.npy", 10).write_bytes(b"data")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("written", [0, 9, 11])
def test_the_seal_refuses_another_count(tmp_path: Path, written: int) -> None:
    staged = StagedOutputs(False)
    staged.stage_data(tmp_path / "x.npy", 10)
    record = {"output": {"checksum": {"algorithm": "crc32", "value": "00000000"}}}
    with pytest.raises(OutputError, match=f"{written:,} images were written of the 10 declared"):
        staged.seal(written, record)
    staged.discard()
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------- signals


@pytest.fixture
def on_stop_signals() -> Iterator[None]:
    """pixscale's own handler on SIGTERM/SIGHUP for the test, as the CLI installs it."""
    from pixscale.cli.app import STOPPING_SIGNALS, on_signal

    previous = {n: signal.signal(n, on_signal) for n in STOPPING_SIGNALS}
    atomic.INTERRUPTED.clear()
    atomic.PLACED.clear()
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        atomic.INTERRUPTED.clear()
        atomic.PLACED.clear()


def signal_while_placing(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Make the commit send this process ``number`` as it places each file."""
    place = StagedOutputs.place

    def place_and_signal(self: StagedOutputs, temp: Path, target: Path) -> None:
        os.kill(os.getpid(), number)
        place(self, temp, target)

    monkeypatch.setattr(StagedOutputs, "place", place_and_signal)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_while_placing_lets_the_placing_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_stop_signals: None, number: int
) -> None:
    """The decision was taken: the outputs are placed whole, then the run stops and says so."""
    signal_while_placing(monkeypatch, number)
    with pytest.raises(KeyboardInterrupt):
        with staged_outputs(False) as staged:
            staged.stage(tmp_path / "a.json").write_text("a")
            staged.stage(tmp_path / "b.json").write_text("b")
    assert (tmp_path / "a.json").read_text() == "a"
    assert (tmp_path / "b.json").read_text() == "b"
    assert atomic.PLACED == [tmp_path / "a.json"]
    assert leftovers(tmp_path) == []


def test_a_signal_reported_before_the_commit_places_nothing(
    tmp_path: Path, on_stop_signals: None
) -> None:
    atomic.INTERRUPTED.set()  # the handler's exception was swallowed (inside a finalizer)
    with pytest.raises(KeyboardInterrupt):
        with staged_outputs(False) as staged:
            staged.stage(tmp_path / "a.json").write_text("a")
    assert sorted(tmp_path.iterdir()) == []
    assert atomic.PLACED == []


def test_the_cli_says_an_output_was_written_when_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signal_while_placing(monkeypatch, signal.SIGTERM)
    previous = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        outcome = cli(["convert", SAMPLE_IMAGES, "-o", tmp_path / "x.h5"])
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        atomic.INTERRUPTED.clear()
    assert outcome.code == 128 + signal.SIGTERM, outcome.describe()
    assert outcome.stderr == f"Error: terminated after {tmp_path / 'x.h5'} was written whole\n"
    assert cli(["verify", tmp_path / "x.h5", "--source", SAMPLE_IMAGES]).code == 0


def blocked_signals(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    status = Path("/proc/self/status").read_text()
    mask = next(line for line in status.splitlines() if line.startswith("SigBlk:"))
    queue.put(int(mask.split()[1], 16))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_processes_started_for_a_cluster_leave_ctrl_c_to_pixscale(
    on_stop_signals: None,
) -> None:
    """Workers started while the cluster starts block Ctrl-C and hang-ups: those reach
    only pixscale, which closes them (no worker tracebacks on the terminal); pixscale's
    own handlers and mask are as before afterwards."""
    from pixscale.cli.app import on_signal
    from pixscale.engine.distributed import terminal_signals_held

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with terminal_signals_held():
        worker = context.Process(target=blocked_signals, args=(queue,))
        worker.start()
    mask = queue.get(timeout=120)
    worker.join(timeout=120)
    for number in (signal.SIGINT, signal.SIGHUP):
        assert mask & (1 << (number - 1)), f"signal {number} is not blocked in the worker"
    assert not mask & (1 << (signal.SIGTERM - 1)), "SIGTERM must still stop a worker"
    assert signal.getsignal(signal.SIGINT) is on_signal
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


@dataclass
class ClaimingSource(Source):
    """Creates the output store's name while it is read: another run got there first."""

    random_access: ClassVar[bool] = False
    claim: Path = Path()

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        self.claim.mkdir()
        yield np.full(self.shape, 3, np.uint8)


def test_a_store_that_cannot_be_placed_takes_its_companions_back(tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    from pixscale.store.output import Output

    (tmp_path / "in").write_bytes(b"x")
    store, params = tmp_path / "r.zarr", tmp_path / "r.params.json"
    source = ClaimingSource("in", "test", (4, 2, 2), "nhw", (tmp_path / "in",), claim=store)
    with pytest.raises(OutputError, match="already exists"):
        convert(source, Output(store, params_out=params))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "r.zarr"]  # theirs only
