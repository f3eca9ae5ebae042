"""The dask engine on a real LocalCluster equals the local engine value for value."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_helpers import run_cli
from conftest import SAMPLE_IMAGES
from pixscale.core.spec import Spec
from pixscale.engine.local import convert
from pixscale.errors import InputError, OutputError
from pixscale.sources import open_source
from pixscale.store.output import Output
from pixscale.tasks.invert import invert

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")

from pixscale.engine.distributed import convert_on_dask  # noqa: E402
from pixscale.sources.partition import partitions  # noqa: E402

#: Record fields that describe the output file rather than the transform.
OUTPUT_ONLY = ("output",)


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: tests may run beside another cluster
        host="127.0.0.1",
    )
    with distributed.Client(cluster) as connected:
        yield connected
    cluster.close()


def both_engines(client, paths, tmp_path: Path, spec: Spec, **options):  # type: ignore[no-untyped-def]
    local = convert(paths, tmp_path / "local.h5", spec)
    source = open_source(paths)
    remote = convert_on_dask(source, Output(tmp_path / "dask.h5"), spec, client, **options)
    with h5py.File(tmp_path / "local.h5", "r") as a, h5py.File(tmp_path / "dask.h5", "r") as b:
        assert not b["images"].is_virtual and b["images"].chunks is None  # self-contained
        assert np.array_equal(a["images"][()].view(np.uint32), b["images"][()].view(np.uint32))
        if "labels" in a:
            assert np.array_equal(a["labels"][()], b["labels"][()])
        if "params" in a:
            for name in a["params"]:
                assert np.array_equal(a["params"][name][()], b["params"][name][()])
    for key in set(local) | set(remote):
        if key not in OUTPUT_ONLY:
            assert local.get(key) == remote.get(key), key
    return local, remote


@pytest.fixture
def shards(tmp_path: Path, photo_tiles: np.ndarray) -> list[Path]:
    paths = []
    for index, part in enumerate(np.array_split(photo_tiles, 3)):
        path = tmp_path / f"shard-{index}.npy"
        np.save(path, part)
        paths.append(path)
    return paths


def test_sharded_npy_standardize_per_channel_fitted_across_shards(
    client, shards, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    source = open_source(shards)
    assert len(partitions(source, partition_mb=0.05)) > len(shards)  # files, then ranges
    local, remote = both_engines(
        client, shards, tmp_path, Spec("standardize", scope="channel"), partition_mb=0.05
    )
    assert remote["fitted_on"]["files"] == [p.name for p in shards]
    assert remote["output"]["engine"] == "dask"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["dask.h5", "local.h5", *[p.name for p in shards]]
    )  # nothing beside the output


def test_partitions_cross_shards_on_chunk_boundaries(shards) -> None:  # type: ignore[no-untyped-def]
    source = open_source(shards)
    found = partitions(source, partition_mb=0.1, step=5)
    assert all(start % 5 == 0 for start, _ in found)
    assert sum(window.n_images for _, window in found) == source.n_images
    whole = np.concatenate([np.load(p) for p in shards])
    for start, window in found:
        got = np.concatenate(list(window.chunks(3)))
        assert np.array_equal(got, whole[start : start + window.n_images])


def test_h5_moved_alone_still_reads(client, shards, tmp_path: Path, photo_tiles) -> None:  # type: ignore[no-untyped-def]
    convert_on_dask(
        open_source(shards), Output(tmp_path / "d.h5"), Spec("unit"), client, partition_mb=0.05
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = elsewhere / "d.h5"
    (tmp_path / "d.h5").rename(moved)
    with h5py.File(moved, "r") as handle:
        got = handle["images"][()]
    assert np.array_equal(got, photo_tiles.astype(np.float32) / np.float32(255))


def test_per_image_scope_on_dask(client, shards, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    both_engines(client, shards, tmp_path, Spec("standardize", scope="image"), partition_mb=0.05)


def test_image_folder_on_dask(client, tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    folder = tmp_path / "digits"
    for index, (image, label) in enumerate(zip(sample[0][:90], sample[1][:90], strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{index:03d}.png")
    local, remote = both_engines(
        client, folder, tmp_path, Spec("range", from_data=True), partition_mb=0.01
    )
    assert remote["output"]["class_names"] == [str(d) for d in sorted(set(sample[1][:90].tolist()))]


def test_dask_output_inverts_exactly(client, shards, tmp_path: Path, photo_tiles) -> None:  # type: ignore[no-untyped-def]
    convert_on_dask(
        open_source(shards), Output(tmp_path / "d.h5"), Spec("symmetric"), client, partition_mb=0.05
    )
    invert(tmp_path / "d.h5", tmp_path / "back.npy")
    assert np.array_equal(np.load(tmp_path / "back.npy"), photo_tiles)


def test_npy_output_equals_the_local_engine(client, shards, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = Spec("standardize", scope="pixel")
    local = convert(shards, tmp_path / "l.npy", spec)
    remote = convert_on_dask(
        open_source(shards), Output(tmp_path / "d.npy"), spec, client, partition_mb=0.05
    )
    a, b = np.load(tmp_path / "l.npy"), np.load(tmp_path / "d.npy")
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    assert {k for k in local if local[k] != remote[k]} == {"output"}
    with np.load(tmp_path / "l.params.npz") as x, np.load(tmp_path / "d.params.npz") as y:
        assert all(np.array_equal(x[k], y[k]) for k in x.files)


def test_compressed_h5_is_a_clear_error(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OutputError, match="uncompressed, contiguous HDF5"):
        convert_on_dask(
            open_source(SAMPLE_IMAGES),
            Output(tmp_path / "x.h5", compression="gzip"),
            Spec(),
            client,
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_input_in_a_task_fails_cleanly_and_leaves_nothing(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(
            folder / f"{index}.png"
        )
    broken = folder / "5.png"
    broken.write_bytes(broken.read_bytes()[:400])  # header intact, pixels cut off
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="5.png: cannot decode image"):
        convert_on_dask(
            open_source(folder), Output(out / "x.h5"), Spec(), client, partition_mb=0.0001
        )
    assert list(out.iterdir()) == []


def test_cli_dask_engine_with_a_local_cluster(tmp_path: Path, shards) -> None:  # type: ignore[no-untyped-def]
    pattern = str(shards[0].parent / "shard-*.npy")
    result = run_cli(
        "convert", pattern, "-o", tmp_path / "c.h5", "--engine", "dask", "--workers", "2", "-q"
    )
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "c.h5", "r") as handle:
        record = json.loads(handle.attrs["pixscale_params"])
        assert handle["images"].shape[0] == sum(np.load(p).shape[0] for p in shards)
    assert record["output"]["engine"] == "dask"


def test_workers_of_a_local_cluster_start_with_malloc_reusing_memory() -> None:
    """Dask's nanny turns glibc's adaptive thresholds off; pixscale's local cluster sets them
    where glibc would settle, through Dask's own configuration of the workers' environment."""
    import os

    from pixscale.engine.distributed import WORKER_ENVIRONMENT, dask_client

    names = sorted(WORKER_ENVIRONMENT)
    with dask_client(None, 1) as client:
        seen = client.run(lambda: [os.environ.get(name) for name in names])
    assert list(seen.values()) == [[WORKER_ENVIRONMENT[name] for name in names]]
