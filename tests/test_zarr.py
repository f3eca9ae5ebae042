"""Zarr v3 output (local and dask) equals the local HDF5 output bit for bit; Zarr input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from pixscale.core.spec import Spec
from pixscale.engine.fitting import prepare_params
from pixscale.engine.local import convert, write_images
from pixscale.engine.record import build_record
from pixscale.errors import InputError, OutputError
from pixscale.sources import Labels, Source, open_source
from pixscale.store.io.atomic import staged_outputs
from pixscale.store.naming import sidecar_path
from pixscale.store.output import Output
from pixscale.store.reader import open as pixscale_open
from pixscale.tasks.verify import verify

zarr = pytest.importorskip("zarr", reason="zarr-python 3 is not installed")

from pixscale.sources.zarr import open_zarr  # noqa: E402
from pixscale.store.backends.zarr.detect import is_zarr_output  # noqa: E402
from pixscale.store.backends.zarr.reader import open_zarr_output  # noqa: E402
from pixscale.store.backends.zarr.record import read_zarr_record  # noqa: E402
from pixscale.store.backends.zarr.storage import require_zarr  # noqa: E402
from pixscale.store.backends.zarr.writer import ZarrWriter  # noqa: E402


def local_zarr(source: Source, target: Path, spec: Spec, **options: Any) -> dict[str, Any]:
    """The local engine's pipeline into a ZarrWriter (what ``convert`` does once
    ``open_writer`` picks it for ``.zarr``)."""
    overwrite = options.pop("overwrite", False)
    with staged_outputs(overwrite, source.files) as staged:
        writer = ZarrWriter(target, source.shape, staged, **options)
        try:
            params = prepare_params(source, spec, None, 0.05, None)
            params, written = write_images(source, params, spec, writer, 0.05, None)
            fitted = spec.needs_stats and params.scope != "image"
            record = build_record(params, source, source.sha256(), fitted, source.layout)
            record["output"] = writer.finish(record, params.external_arrays(), source.labels)
            staged.seal(written, record)
        finally:
            writer.close()
    return record


def same_as_h5(h5: Path, store: Path) -> None:
    group = zarr.open_group(str(store), mode="r")
    with h5py.File(h5, "r") as a:
        assert np.array_equal(a["images"][()].view(np.uint32), group["images"][...].view(np.uint32))
        for name in ("labels",):
            assert (name in a) == (name in group)
            if name in a:
                assert np.array_equal(a[name][()], group[name][...])
        if "params" in a:
            for name in a["params"]:
                assert np.array_equal(a["params"][name][()], group["params"][name][...])
        h5_record = json.loads(a.attrs["pixscale_params"])
    record, _ = read_zarr_record(store)
    assert {k for k in record if record[k] != h5_record[k]} == {"output"}


@pytest.fixture
def labelled_npy(tmp_path: Path, photo_tiles: np.ndarray) -> tuple[Path, Path]:
    np.save(tmp_path / "x.npy", photo_tiles)
    np.save(tmp_path / "y.npy", np.arange(len(photo_tiles)) % 7)
    return tmp_path / "x.npy", tmp_path / "y.npy"


@pytest.mark.parametrize(
    "spec", [Spec("standardize", scope="channel"), Spec("standardize", scope="image"), Spec()]
)
def test_local_zarr_equals_local_h5(tmp_path: Path, labelled_npy, spec: Spec) -> None:  # type: ignore[no-untyped-def]
    images, labels = labelled_npy
    convert(images, tmp_path / "a.h5", spec, labels=labels)
    source = open_source(images, labels=labels)
    record = local_zarr(source, tmp_path / "a.zarr", spec, chunk_images=7)  # pieces of chunks
    same_as_h5(tmp_path / "a.h5", tmp_path / "a.zarr")
    assert record["output"]["format"] == "zarr" and record["output"]["chunks"][0] == 7
    assert is_zarr_output(tmp_path / "a.zarr")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_gzip_zarr_and_attributes(tmp_path: Path, labelled_npy) -> None:  # type: ignore[no-untyped-def]
    images, _ = labelled_npy
    spec = Spec("symmetric")
    convert(images, tmp_path / "a.h5", spec)
    local_zarr(open_source(images), tmp_path / "a.zarr", spec, compression="gzip")
    same_as_h5(tmp_path / "a.h5", tmp_path / "a.zarr")
    group = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")
    assert group.attrs["strategy"] == "symmetric"
    assert group["images"].dtype == np.float32 and len(group["images"].compressors) == 1
    opened = open_zarr_output(tmp_path / "a.zarr")
    assert opened.shape == np.load(images).shape and opened.labels is None


def test_existing_target_refused_and_overwrite_replaces_only_a_store(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 8, 8), np.uint8))
    source = open_source(tmp_path / "x.npy")
    local_zarr(source, tmp_path / "a.zarr", Spec())
    with pytest.raises(OutputError, match="already exists"):
        local_zarr(source, tmp_path / "a.zarr", Spec())
    local_zarr(source, tmp_path / "a.zarr", Spec("symmetric"), overwrite=True)
    assert read_zarr_record(tmp_path / "a.zarr")[0]["strategy"] == "symmetric"
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a Zarr store"):
        local_zarr(source, tmp_path / "photos", Spec(), overwrite=True)
    assert (tmp_path / "photos" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr", "photos", "x.npy"]


def test_a_failed_run_leaves_nothing(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 8, 8), np.uint8))
    with staged_outputs(False) as staged:
        writer = ZarrWriter(tmp_path / "a.zarr", (4, 8, 8), staged)
        writer.write(np.zeros((2, 8, 8), np.float32))
        writer.close()  # what a failure before finish does
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


@pytest.mark.parametrize(
    ("compression", "direct"), [("none", False), ("none", True), ("gzip", False)]
)
def test_chunks_arriving_in_any_pieces_are_written_whole(
    tmp_path: Path, compression: str, direct: bool
) -> None:
    import zlib

    values = np.random.default_rng(1).random((53, 8, 8, 3), dtype=np.float32)
    with staged_outputs(False) as staged:
        writer = ZarrWriter(tmp_path / "a.zarr", values.shape, staged, compression, 4, direct)
        try:
            start = 0
            for size in (3, 1, 9, 4, 12, 2, 22):  # across boundaries, whole chunks, the edge
                writer.write(values[start : start + size])
                start += size
            record = {"strategy": "unit", "scale": 1.0, "offset": 0.0, "output": {}}
            output = writer.finish(record, {}, None)
            staged.seal(len(values), {"output": output})
        finally:
            writer.close()
    stored = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")["images"][...]
    assert np.array_equal(stored.view(np.uint32), values.view(np.uint32))
    assert output["checksum"] == {"algorithm": "crc32", "value": f"{zlib.crc32(values):08x}"}


def test_missing_zarr_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(OutputError, match=r"pip install 'pixscale\[zarr\]'"):
        require_zarr()


def test_zarr_input_reads_uint8_and_labels(tmp_path: Path, photo_tiles: np.ndarray) -> None:
    labels = (np.arange(len(photo_tiles)) % 5).astype(np.int64)
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=3)
    group.create_array("images", data=photo_tiles, chunks=(10, 64, 64, 3))
    group.create_array("labels", data=labels)
    group.create_array("other", data=np.zeros((3, 3), np.float32))
    source = open_zarr(tmp_path / "in.zarr")
    assert source.shape == photo_tiles.shape and source.layout == "nhwc"
    assert source.key == "images" and isinstance(source.labels, Labels)
    assert np.array_equal(source.labels.values, labels)
    assert np.array_equal(np.concatenate(list(source.chunks(7))), photo_tiles)
    assert np.array_equal(np.concatenate(list(source.window(5, 30, 4))), photo_tiles[5:30])
    np.save(tmp_path / "x.npy", photo_tiles)
    np.save(tmp_path / "y.npy", labels)
    spec = Spec("standardize", scope="channel")
    from_npy = convert(tmp_path / "x.npy", tmp_path / "a.h5", spec, labels=tmp_path / "y.npy")
    from_zarr = convert(source, tmp_path / "b.h5", spec)
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
        assert np.array_equal(a["images"][()].view(np.uint32), b["images"][()].view(np.uint32))
        assert np.array_equal(a["labels"][()], b["labels"][()])
    assert from_zarr["scale"] == from_npy["scale"] and from_zarr["source"]["format"] == "zarr"


def test_zarr_input_bare_array_and_refusals(tmp_path: Path) -> None:
    zarr.create_array(str(tmp_path / "bare.zarr"), data=np.ones((6, 4, 4), np.uint8))
    assert open_zarr(tmp_path / "bare.zarr").shape == (6, 4, 4)
    zarr.create_array(str(tmp_path / "f.zarr"), data=np.ones((6, 4, 4), np.float32))
    with pytest.raises(InputError, match="expected uint8"):
        open_zarr(tmp_path / "f.zarr")
    np.save(tmp_path / "x.npy", np.zeros((4, 8, 8), np.uint8))
    local_zarr(open_source(tmp_path / "x.npy"), tmp_path / "out.zarr", Spec())
    with pytest.raises(InputError, match="pixscale output"):
        open_zarr(tmp_path / "out.zarr")


@pytest.mark.parametrize("layout", [None, "nchw"])
def test_xarray_opens_an_output_as_pixscale_does(
    tmp_path: Path, photo_tiles: np.ndarray, layout: str | None
) -> None:
    """``xarray.open_zarr`` as a user calls it (no warning: tests turn warnings into
    errors): named dimensions, consolidated metadata, the same values and labels."""
    xarray = pytest.importorskip("xarray")
    np.save(tmp_path / "in.npy", photo_tiles)
    np.save(tmp_path / "y.npy", np.arange(len(photo_tiles)) % 3)
    out = tmp_path / "out.zarr"
    options = {"layout": layout} if layout else {}
    convert(
        tmp_path / "in.npy",
        Output(out, **options),
        Spec(strategy="standardize", scope="channel"),
        labels=tmp_path / "y.npy",
    )
    dataset = xarray.open_zarr(out)
    expected = ("image", "channel", "y", "x") if layout else ("image", "y", "x", "channel")
    assert dataset["images"].dims == expected
    assert dataset["labels"].dims == ("image",)
    with pixscale_open(out) as opened:
        assert np.array_equal(dataset["images"].values.view(np.uint32), opened[:].view(np.uint32))
        assert np.array_equal(dataset["labels"].values, opened.labels)


# -- the dask engine ------------------------------------------------------------------------------

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")

from pixscale.engine.distributed import convert_on_dask, convert_with_dask  # noqa: E402


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            host="127.0.0.1",
        ) as cluster,
        distributed.Client(cluster) as connected,
    ):
        yield connected


@pytest.fixture
def shards(tmp_path: Path, photo_tiles: np.ndarray) -> list[Path]:
    paths = []
    for index, part in enumerate(np.array_split(photo_tiles, 3)):
        paths.append(tmp_path / f"shard-{index}.npy")
        np.save(paths[-1], part)
    return paths


@pytest.mark.parametrize(
    "spec", [Spec("standardize", scope="channel"), Spec("standardize", scope="image")]
)
def test_dask_zarr_equals_local_h5(client, shards, tmp_path: Path, spec: Spec) -> None:  # type: ignore[no-untyped-def]
    convert(shards, tmp_path / "a.h5", spec)
    output = Output(tmp_path / "d.zarr", chunk_images=4)
    record = convert_on_dask(open_source(shards), output, spec, client, partition_mb=0.1)
    same_as_h5(tmp_path / "a.h5", tmp_path / "d.zarr")
    assert record["output"]["engine"] == "dask" and record["output"]["format"] == "zarr"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_dask_zarr_from_zarr_input(client, tmp_path: Path, photo_tiles) -> None:  # type: ignore[no-untyped-def]
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=3)
    group.create_array("images", data=photo_tiles, chunks=(9, 64, 64, 3))
    spec = Spec("range", from_data=True, scope="channel")
    np.save(tmp_path / "x.npy", photo_tiles)
    convert(tmp_path / "x.npy", tmp_path / "a.h5", spec)
    convert_on_dask(
        open_zarr(tmp_path / "in.zarr"), Output(tmp_path / "d.zarr"), spec, client, partition_mb=0.1
    )
    group = zarr.open_group(str(tmp_path / "d.zarr"), mode="r")
    with h5py.File(tmp_path / "a.h5", "r") as a:
        assert np.array_equal(a["images"][()].view(np.uint32), group["images"][...].view(np.uint32))


def stored_checksum(path: Path) -> Any:
    """The checksum in the record stored with an output (.zarr, .h5 or .npy's sidecar)."""
    if path.suffix == ".zarr":
        return read_zarr_record(path)[0]["output"]["checksum"]
    if path.suffix == ".h5":
        with h5py.File(path, "r") as handle:
            return json.loads(handle.attrs["pixscale_params"])["output"]["checksum"]
    return json.loads(sidecar_path(path).read_text())["output"]["checksum"]


@pytest.mark.parametrize(
    "spec", [Spec("standardize", scope="channel"), Spec("standardize", scope="image")]
)
def test_every_output_records_the_checksum_of_the_local_h5(  # type: ignore[no-untyped-def]
    client, shards, tmp_path: Path, spec: Spec
) -> None:
    expected = convert(shards, tmp_path / "a.h5", spec)["output"]["checksum"]
    assert expected["algorithm"] == "crc32"
    record = local_zarr(open_source(shards), tmp_path / "l.zarr", spec, chunk_images=5)
    assert record["output"]["checksum"] == expected == stored_checksum(tmp_path / "l.zarr")
    for name, chunks in (("d.zarr", 2), ("d.h5", None), ("d.npy", None)):
        output = Output(tmp_path / name, chunk_images=chunks)
        record = convert_on_dask(open_source(shards), output, spec, client, partition_mb=0.05)
        assert record["output"]["checksum"] == expected == stored_checksum(tmp_path / name), name
        assert verify(tmp_path / name).ok, name
    assert verify(tmp_path / "l.zarr").ok


def images_chunks(store: Path) -> list[Path]:
    return sorted(p for p in (store / "images").rglob("*") if p.is_file() and p.name != "zarr.json")


@pytest.mark.parametrize(
    ("engine", "compression", "failed"),
    [
        ("local", "none", "checksum"),
        ("dask", "none", "checksum"),
        ("local", "gzip", "images readable"),
    ],
)
def test_verify_catches_a_flipped_byte_in_a_zarr_chunk(  # type: ignore[no-untyped-def]
    client, shards, tmp_path: Path, engine: str, compression: str, failed: str
) -> None:
    store = tmp_path / "d.zarr"
    spec = Spec("symmetric")
    if engine == "local":
        local_zarr(open_source(shards), store, spec, chunk_images=4, compression=compression)
    else:
        output = Output(store, chunk_images=4)
        convert_on_dask(open_source(shards), output, spec, client, partition_mb=0.05)
    assert verify(store).ok
    chunk = images_chunks(store)[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: in a raw chunk, the lowest mantissa bit of a value
    chunk.write_bytes(bytes(data))
    report = verify(store)
    assert failed in report.failed and not report.ok


def test_failed_task_leaves_no_store(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    np.save(tmp_path / "x.npy", np.zeros((40, 8, 8), np.uint8))
    source = open_source(tmp_path / "x.npy")
    (tmp_path / "x.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:1000])  # truncated
    with pytest.raises(InputError):
        convert_on_dask(source, Output(tmp_path / "d.zarr"), Spec(), client, partition_mb=0.001)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_workers(address: str, count: int, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    with distributed.Client(address, timeout=60) as probe:
        while len(probe.scheduler_info()["workers"]) < count:
            if any(p.poll() is not None for p in processes):
                raise RuntimeError("a dask process exited early")
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not connect")
            time.sleep(0.2)


@pytest.fixture
def real_cluster(tmp_path: Path) -> Iterator[str]:
    """``dask scheduler`` and two ``dask worker`` processes on localhost, stopped after."""
    dask = Path(sys.executable).with_name("dask")
    if not dask.exists():
        pytest.skip("the dask command is not installed")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    environment = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    processes: list[subprocess.Popen[bytes]] = []
    log = (tmp_path / "dask.log").open("wb")
    workdir = tmp_path / "workers"
    workdir.mkdir()
    try:
        processes.append(
            subprocess.Popen(
                [str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                 "--dashboard-address", ":0", "--no-show"],
                stdout=log, stderr=log, env=environment, cwd=workdir,
            )
        )  # fmt: skip
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    [str(dask), "worker", address, "--nworkers", "1", "--nthreads", "1",
                     "--host", "127.0.0.1", "--dashboard-address", ":0",
                     "--local-directory", str(workdir)],
                    stdout=log, stderr=log, env=environment, cwd=workdir,
                )
            )  # fmt: skip
        wait_for_workers(address, 2, processes)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def test_scheduler_and_two_worker_processes(real_cluster: str, shards, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = Spec("standardize", scope="channel")
    convert(shards, tmp_path / "a.h5", spec)
    absolute = [p.absolute() for p in shards]
    record = convert_with_dask(
        open_source(absolute),
        tmp_path / "d.zarr",
        spec,
        scheduler=real_cluster,
        partition_mb=0.05,
    )
    same_as_h5(tmp_path / "a.h5", tmp_path / "d.zarr")
    assert record["output"]["engine"] == "dask"
    convert_with_dask(
        open_source(absolute), tmp_path / "d.h5", spec, scheduler=real_cluster, partition_mb=0.05
    )
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "d.h5", "r") as b:
        assert np.array_equal(a["images"][()].view(np.uint32), b["images"][()].view(np.uint32))


def test_a_store_appears_only_at_the_runs_commit(tmp_path: Path) -> None:
    """The store is placed by the run's commit (after --params-out), so a run stopped at the
    commit leaves neither the store nor its temporary folder."""
    from conftest import SAMPLE_IMAGES
    from pixscale.engine.local import convert
    from pixscale.store.io.atomic import INTERRUPTED
    from pixscale.store.output import Output

    out = tmp_path / "out"
    out.mkdir()
    INTERRUPTED.set()  # as a signal handler does
    try:
        with pytest.raises(KeyboardInterrupt):
            convert(SAMPLE_IMAGES, Output(out / "x.zarr", params_out=out / "p.json"))
    finally:
        INTERRUPTED.clear()
    assert list(out.iterdir()) == []
    convert(SAMPLE_IMAGES, Output(out / "x.zarr", params_out=out / "p.json"))
    assert sorted(p.name for p in out.iterdir()) == ["p.json", "x.zarr"]


def test_a_zarr_input_with_chunks_not_stored_is_refused(tmp_path: Path) -> None:
    """A header alone could declare any number of images that read as fill values."""
    zarr = pytest.importorskip("zarr")
    from pixscale.errors import InputError
    from pixscale.sources import open_source

    path = tmp_path / "hollow.zarr"
    array = zarr.create_array(str(path), shape=(10, 8, 8), chunks=(2, 8, 8), dtype="uint8")
    array[:4] = 7  # two of five chunks written
    with pytest.raises(InputError, match="3 of 5 chunks not stored"):
        open_source(path)
    huge = tmp_path / "huge.zarr"
    zarr.create_array(str(huge), shape=(10**11, 28, 28), chunks=(1, 28, 28), dtype="uint8")
    with pytest.raises(InputError, match="declares 100,000,000,000 chunks"):
        open_source(huge)


def test_hdf5_only_compression_for_zarr_names_the_output(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from conftest import SAMPLE_IMAGES
    from pixscale.cli import main

    out = tmp_path / "x.zarr"
    args = ["convert", str(SAMPLE_IMAGES), "-o", str(out), "--compression", "lzf"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"Error: {out}: lzf is HDF5's own filter; Zarr outputs take --compression none or gzip\n"
    )
    assert list(tmp_path.iterdir()) == []
