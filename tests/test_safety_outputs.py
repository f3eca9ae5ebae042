"""Outputs are safe: committed whole or not at all, never clobbering, never crashing HDF5,
checkable without their source; records read back robustly.

Each test names the promise it checks; all of them run real files in ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result

from conftest import SAMPLE_IMAGES, SAMPLE_LABELS
from pixscale.cli import main
from pixscale.engine.local import convert
from pixscale.errors import InputError, OutputError, ParamsError, PixscaleError
from pixscale.store.hdf5 import Hdf5Writer
from pixscale.store.io import atomic
from pixscale.store.io.atomic import staged_outputs
from pixscale.store.io.checksum import crc32_combine
from pixscale.store.naming import labels_path, sidecar_path
from pixscale.store.output import Output, open_writer
from pixscale.store.reader import open_converted
from pixscale.store.records import load_params, read_record
from pixscale.tasks.invert import invert
from pixscale.tasks.verify import verify

PIXSCALE = str(Path(sys.executable).parent / "pixscale")


# ----------------------------------------------------------------------------- helpers


def cli(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result: Result) -> str:
    """The single ``Error: …`` line of a clean failure (exit 1, no traceback)."""
    detail = f"exit {result.exit_code}, stderr {result.stderr!r}, exception {result.exception!r}"
    assert result.exit_code == 1, detail
    assert isinstance(result.exception, SystemExit), detail
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), detail
    return lines[0]


def entries(folder: Path) -> list[str]:
    """Every name in ``folder``, hidden temporary files included."""
    return sorted(os.listdir(folder))


def digits(tmp_path: Path, count: int = 100, labels: bool = False) -> list[str]:
    """Input arguments for ``count`` MNIST sample images (and their labels)."""
    images = gzip.decompress(SAMPLE_IMAGES.read_bytes())[16:]
    pixels = np.frombuffer(images, np.uint8).reshape(-1, 28, 28)[:count]
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    np.save(folder / "digits.npy", pixels)
    if not labels:
        return [str(folder / "digits.npy")]
    values = np.frombuffer(gzip.decompress(SAMPLE_LABELS.read_bytes())[8:], np.uint8)[:count]
    np.save(folder / "labels.npy", values.astype(np.int64))
    return [str(folder / "digits.npy"), "--labels", str(folder / "labels.npy")]


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def needs_fifo() -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")


def node_identity(path: Path) -> tuple[int, int, int]:
    info = os.lstat(path)
    return stat.S_IFMT(info.st_mode), info.st_ino, info.st_rdev


# ----------------------------------------------------------------- 1. no-clobber commits


def test_a_file_appearing_after_the_check_is_not_clobbered(tmp_path: Path) -> None:
    target = tmp_path / "x.npy"
    with pytest.raises(OutputError, match="already exists. Use --overwrite to replace it."):
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


SPECIAL_NODES = ["fifo", "symlink to /dev/null", "symlink to a fifo"]


def make_node(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink to /dev/null":
        path.symlink_to(os.devnull)
    else:
        os.mkfifo(path.with_name("real-fifo"))
        path.symlink_to(path.with_name("real-fifo"))


@pytest.mark.parametrize("kind", SPECIAL_NODES)
@pytest.mark.parametrize("name", ["x.npy", "x.h5", "x.npy.json", "p.json"])
def test_overwrite_refuses_targets_that_are_not_regular_files(
    tmp_path: Path, out_dir: Path, kind: str, name: str
) -> None:
    needs_fifo()
    node = out_dir / name
    make_node(node, kind)
    before = {p: node_identity(out_dir / p) for p in entries(out_dir)}
    data = "x.h5" if name == "p.json" else name.removesuffix(".json")
    extra = ["--params-out", node] if name == "p.json" else []
    result = cli("convert", *digits(tmp_path), "-o", out_dir / data, *extra, "--overwrite")
    line = error_line(result)
    assert f"{name}: not a regular file; refusing to replace it" in line
    assert {p: node_identity(out_dir / p) for p in entries(out_dir)} == before


def test_a_fifo_appearing_before_the_commit_is_not_replaced(tmp_path: Path) -> None:
    needs_fifo()
    target = tmp_path / "x.npy"
    with pytest.raises(OutputError, match="not a regular file; refusing to replace it"):
        with staged_outputs(True) as staged:
            staged.stage(target).write_bytes(b"this run")
            os.mkfifo(target)
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert entries(tmp_path) == ["x.npy"]


def test_overwrite_removes_companions_the_new_output_does_not_have(
    tmp_path: Path, out_dir: Path
) -> None:
    target = out_dir / "x.npy"
    per_image = ["-s", "standardize", "--scope", "image"]
    first = cli("convert", *digits(tmp_path, labels=True), "-o", target, *per_image, "-q")
    assert first.exit_code == 0, first.stderr
    assert entries(out_dir) == ["x.labels.npy", "x.npy", "x.npy.json", "x.params.npz"]
    second = cli("convert", *digits(tmp_path), "-o", target, "--overwrite", "-q")
    assert second.exit_code == 0, second.stderr
    assert entries(out_dir) == ["x.npy", "x.npy.json"]
    output = json.loads(sidecar_path(target).read_text())["output"]
    assert "labels" not in output and "arrays" not in output


def race(args_a: list[str], args_b: list[str]) -> list[subprocess.CompletedProcess[str]]:
    children = [
        subprocess.Popen(
            [PIXSCALE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args in (args_a, args_b)
    ]
    done = []
    for child in children:
        stdout, stderr = child.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr))
    return done


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("race-inputs")
    rng = np.random.default_rng(7)
    arrays = {}
    for name in ("A.npy", "B.npy"):
        arrays[str(folder / name)] = rng.integers(0, 256, (400, 28, 28), dtype=np.uint8)
        np.save(folder / name, arrays[str(folder / name)])
    return arrays


def run_of(out: Path, inputs: dict[str, np.ndarray]) -> str:
    """The input whose run wrote ``out``, checked against its sidecar (one run, whole)."""
    record = json.loads(sidecar_path(out).read_text())
    data = np.load(out)
    for name, pixels in inputs.items():
        if record["source"]["name"] == Path(name).name:
            expected = (pixels.astype(np.float64) / 255).astype(np.float32)
            assert np.array_equal(data, expected), "out.npy is not the data of its sidecar's run"
            checksum = record["output"]["checksum"]["value"]
            assert checksum == f"{zlib.crc32(data.tobytes()):08x}"
            return name
    raise AssertionError(f"the sidecar names neither input: {record['source']}")


def test_two_runs_racing_for_one_output_leave_one_run_whole(
    tmp_path: Path, two_inputs: dict[str, np.ndarray]
) -> None:
    names = list(two_inputs)
    for attempt in range(20):
        folder = tmp_path / f"race{attempt}"
        folder.mkdir()
        out = folder / "out.npy"
        results = race(
            ["convert", names[0], "-o", str(out), "-q"], ["convert", names[1], "-o", str(out), "-q"]
        )
        codes = sorted(r.returncode for r in results)
        assert codes == [0, 1], [(r.returncode, r.stderr) for r in results]
        loser = next(r for r in results if r.returncode == 1)
        assert loser.stderr.strip().endswith("already exists. Use --overwrite to replace it.")
        assert len(loser.stderr.strip().splitlines()) == 1
        winner = next(i for i, r in enumerate(results) if r.returncode == 0)
        assert run_of(out, two_inputs) == names[winner]
        assert entries(folder) == ["out.npy", "out.npy.json"]


def test_two_runs_racing_with_overwrite_never_mix_their_files(
    tmp_path: Path, two_inputs: dict[str, np.ndarray]
) -> None:
    names = list(two_inputs)
    for attempt in range(5):
        folder = tmp_path / f"race{attempt}"
        folder.mkdir()
        out = folder / "out.npy"
        common = ["-o", str(out), "-q", "--overwrite"]
        results = race(["convert", names[0], *common], ["convert", names[1], *common])
        assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
        run_of(out, two_inputs)
        assert entries(folder) == ["out.npy", "out.npy.json"]


# ------------------------------------------------------------ 2. every target checked first


@pytest.fixture
def late_corrupt(tmp_path: Path) -> Path:
    """The sample with damage only reading to the end finds: an output error reported instead
    proves the outputs were checked before the work."""
    folder = tmp_path / "late"
    folder.mkdir()
    data = bytearray(SAMPLE_IMAGES.read_bytes())
    data[-3000:-2000] = bytes(1000)
    path = folder / "late-images-idx3-ubyte.gz"
    path.write_bytes(bytes(data))
    return path


COLLISIONS = {
    # case: (-o, --params-out relative to the output folder, options, words of the error)
    "params-out is -o, spelled differently": ("x.npy", "../out/./x.npy", [], "params-out"),
    "params-out is -o through a symlink": ("x.h5", "link.h5", [], "params-out"),
    "params-out is the sidecar": ("x.npy", "x.npy.json", [], "params-out"),
    "params-out is the labels file": ("x.npy", "x.labels.npy", [], "params-out"),
    "params-out is the arrays file": ("x.npy", "x.params.npz", [], "params-out"),
    "params-out folder missing": ("x.h5", "nope/p.json", [], "nope does not exist"),
}


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_params_out_collisions_are_refused_before_the_work(
    tmp_path: Path, out_dir: Path, late_corrupt: Path, case: str
) -> None:
    output, params_out, extra, words = COLLISIONS[case]
    if case.endswith("symlink"):
        (out_dir / "link.h5").symlink_to(out_dir / "x.h5")
    before = entries(out_dir)
    result = cli(
        "convert", late_corrupt, "-o", out_dir / output, "--params-out", out_dir / params_out
    )
    line = error_line(result)
    assert words in line and "corrupt" not in line
    assert entries(out_dir) == before


@pytest.mark.parametrize("existing", ["x.labels.npy", "x.params.npz", "x.npy.json"])
def test_existing_companions_are_refused_before_the_work(
    tmp_path: Path, out_dir: Path, late_corrupt: Path, existing: str
) -> None:
    (out_dir / existing).write_text("precious")
    result = cli("convert", late_corrupt, "-o", out_dir / "x.npy")
    line = error_line(result)
    assert f"{existing}: already exists" in line and "corrupt" not in line
    assert entries(out_dir) == [existing] and (out_dir / existing).read_text() == "precious"


# ---------------------------------------------------------- 3. HDF5 write errors are clean


def limited(size: int) -> Callable[[], None]:
    def prepare() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return prepare


def run_pixscale(args: list[object], limit: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PIXSCALE, *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=limited(limit),
        timeout=120,
        check=False,
    )


def assert_failed_cleanly(result: subprocess.CompletedProcess[str], words: str) -> None:
    detail = f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert result.returncode == 1, detail
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], detail


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 random 64×64 images: 32 MB of float32 that compresses poorly."""
    path = tmp_path_factory.mktemp("noise") / "noise.npy"
    np.save(path, np.random.default_rng(3).integers(0, 256, (2000, 64, 64), dtype=np.uint8))
    return path


@pytest.mark.parametrize(
    "options",
    [["--compression", "gzip", "--chunk-images", "10"], ["--compression", "lzf"]],
    ids=["gzip", "lzf"],
)
def test_file_size_limit_hit_writing_compressed_hdf5_exits_cleanly(
    noise: Path, out_dir: Path, options: list[str]
) -> None:
    result = run_pixscale(["convert", noise, "-o", out_dir / "x.h5", *options], 6 << 20)
    assert_failed_cleanly(result, "x.h5: write failed: File too large")
    assert entries(out_dir) == []


def test_compressed_output_is_not_refused_for_its_uncompressed_size(
    tmp_path: Path, out_dir: Path
) -> None:
    """32 MB of float32 zeros compress to almost nothing: an 8 MiB limit is no reason to
    refuse them up front."""
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((2000, 64, 64), np.uint8))
    result = run_pixscale(
        ["convert", flat, "-o", out_dir / "x.h5", "--compression", "gzip"], 8 << 20
    )
    assert result.returncode == 0, result.stderr
    assert (out_dir / "x.h5").stat().st_size < 8 << 20


def wait_for_growing_temp(folder: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if any((folder / n).stat().st_size > (1 << 20) for n in os.listdir(folder)):
                return
        time.sleep(0.002)
    raise AssertionError("the conversion never started writing")


def test_file_size_limit_lowered_while_writing_chunked_hdf5_exits_cleanly(
    tmp_path: Path, out_dir: Path
) -> None:
    big = tmp_path / "big.npy"
    np.save(big, np.random.default_rng(4).integers(0, 256, (8000, 64, 64), dtype=np.uint8))
    args = ["convert", str(big), "-o", str(out_dir / "x.h5"), "--chunk-images", "10"]
    child = subprocess.Popen([PIXSCALE, *args], stderr=subprocess.PIPE, text=True)
    wait_for_growing_temp(out_dir)
    resource.prlimit(child.pid, resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    _, stderr = child.communicate(timeout=120)
    result = subprocess.CompletedProcess(args, child.returncode, "", stderr)
    assert_failed_cleanly(result, "x.h5: write failed: File too large")
    assert entries(out_dir) == []


def test_file_size_limit_hit_by_invert_to_hdf5_exits_cleanly(tmp_path: Path, out_dir: Path) -> None:
    converted = tmp_path / "x.npy"
    convert(SAMPLE_IMAGES, converted)
    result = run_pixscale(["invert", converted, "-o", out_dir / "back.h5"], 256 << 10)
    assert_failed_cleanly(result, "back.h5: write failed: File too large")
    assert entries(out_dir) == []


# --------------------------------------------------------------- 4. integrity without source


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
    result = cli("convert", SAMPLE_IMAGES, "-o", out, *options, "-q")
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
    result = subprocess.run(
        [PIXSCALE, "convert", str(SAMPLE_IMAGES), "-o", "-", "--params-out", str(params_out)],
        capture_output=True,
        check=True,
    )
    (tmp_path / "s.npy").write_bytes(result.stdout)
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
    assert cli("verify", sample_output, "-q").exit_code == 0


@pytest.mark.parametrize("value", [7.0, float("nan"), float("-inf"), 0.5])
def test_verify_without_source_catches_a_value_the_record_cannot_produce(
    sample_output: Path, value: float
) -> None:
    edit(sample_output, (500, 14, 14), value)
    assert failed_checks(sample_output) == ["checksum", "values allowed by the record"]
    line = error_line(cli("verify", sample_output))
    assert f"{sample_output.name}: verification failed" in line and "checksum" in line


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
    line = error_line(cli("verify", out))
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
    line = error_line(cli("verify", sample_output, "--source", SAMPLE_IMAGES))
    assert "verification failed" in line


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
    for command in (["verify", dask_output], ["info", dask_output]):
        assert "missing" in error_line(cli(*command))
    assert "missing" in error_line(cli("invert", dask_output, "-o", tmp_path / "back.npy"))
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


# ---------------------------------------------------------------- 5. invert --verify safety


@pytest.mark.parametrize("target", ["back.npy", "back-idx3-ubyte.gz", "back.h5"])
def test_invert_verify_that_finds_differences_leaves_no_output(
    tmp_path: Path, out_dir: Path, target: str
) -> None:
    converted = tmp_path / "x.npy"
    convert(SAMPLE_IMAGES, converted)
    edit(converted, (1, 14, 14), np.float32(3) / np.float32(255))
    result = cli("invert", converted, "-o", out_dir / target, "--verify", SAMPLE_IMAGES)
    line = error_line(result)
    assert "1 pixels differ from the source" in line
    assert entries(out_dir) == []
    with pytest.raises(InputError, match="1 pixels differ"):
        invert(converted, out_dir / target, verify_source=SAMPLE_IMAGES)
    assert entries(out_dir) == []


@pytest.mark.parametrize("kind", SPECIAL_NODES)
def test_invert_refuses_a_target_that_is_not_a_regular_file(
    tmp_path: Path, out_dir: Path, kind: str
) -> None:
    needs_fifo()
    converted = tmp_path / "x.npy"
    convert(SAMPLE_IMAGES, converted)
    node = out_dir / "back.npy"
    make_node(node, kind)
    before = {p: node_identity(out_dir / p) for p in entries(out_dir)}
    line = error_line(cli("invert", converted, "-o", node, "--overwrite"))
    assert "back.npy: not a regular file; refusing to replace it" in line
    assert {p: node_identity(out_dir / p) for p in entries(out_dir)} == before


def test_invert_never_writes_over_the_companions_of_its_input(tmp_path: Path) -> None:
    converted = tmp_path / "x.npy"
    convert(SAMPLE_IMAGES, converted)
    before = labels_path(converted).read_bytes()
    line = error_line(cli("invert", converted, "-o", labels_path(converted), "--overwrite"))
    assert "refusing to overwrite an input" in line
    assert labels_path(converted).read_bytes() == before


# -------------------------------------------------------------- 6. robust record readers

DEEP = "[" * 100_000 + "]" * 100_000

RECORD_EDITS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "record is a list": lambda r: [r],
    "output is a list": lambda r: {**r, "output": [1, 2]},
    "output is a string": lambda r: {**r, "output": "x"},
    "source is a string": lambda r: {**r, "source": "x"},
    "stats is a list": lambda r: {**r, "stats": [1, 2]},
    "fitted_on is a string": lambda r: {**r, "fitted_on": "x"},
    "output.labels is a list": lambda r: {**r, "output": {**r["output"], "labels": [1]}},
    "output.labels leaves the folder": lambda r: {
        **r,
        "output": {**r["output"], "labels": "../x.labels.npy"},
    },
    "output.arrays is absolute": lambda r: {**r, "output": {**r["output"], "arrays": "/etc"}},
    "output.arrays is missing": lambda r: {**r, "output": {**r["output"], "arrays": "no.npz"}},
    "output.layout is a number": lambda r: {**r, "output": {**r["output"], "layout": 5}},
    "output.layout unknown": lambda r: {**r, "output": {**r["output"], "layout": "nwhc"}},
    "image_shape a string": lambda r: {**r, "image_shape": "28x28"},
    "image_shape huge": lambda r: {**r, "image_shape": [1 << 40, 1 << 40]},
    "image_shape wrong": lambda r: {**r, "image_shape": [14, 56]},
    "channel_axis 1e309": lambda r: {**r, "channel_axis": "@inf@"},
    "source_low NaN": lambda r: {**r, "source_low": "@nan@"},
    "target_span -Infinity": lambda r: {**r, "target_span": "@-inf@"},
    "source_low nested deeply": lambda r: {**r, "source_low": "@deep@"},
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
    sidecar_path(out).write_text(render(RECORD_EDITS[case](record)))
    for reader in (read_record, load_params, open_converted):
        with contextlib.suppress(ParamsError, InputError):
            reader(out)
    for command in (["info", out], ["verify", out], ["invert", out, "-o", tmp_path / "b.npy"]):
        line = error_line(cli(*command))
        assert "x.npy" in line
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
    assert "x.h5" in error_line(cli("invert", out, "-o", tmp_path / "b.npy"))


def test_per_image_arrays_of_the_wrong_length_are_refused(tmp_path: Path) -> None:
    cli("convert", SAMPLE_IMAGES, "-o", tmp_path / "p.npy", "-s", "standardize", "--scope", "image")
    arrays = tmp_path / "p.params.npz"
    with np.load(arrays) as archive:
        cut = {name: archive[name][:5] for name in archive.files}
    np.savez(arrays, **cut)
    with pytest.raises(PixscaleError, match="p.npy"):
        open_converted(tmp_path / "p.npy")
