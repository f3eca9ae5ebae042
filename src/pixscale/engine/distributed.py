"""The same conversion on a Dask cluster.

The input is split into partitions (by file, then by ranges of the first axis); each task
reads only its own partition. Fitted statistics come back from the tasks as exact integer
sums and are merged by addition, so the parameters are bit-identical to the local engine's.
Each task writes its own HDF5 shard with the local pipeline (no write locks); the master
``.h5`` exposes the shards as one virtual ``images`` dataset, with labels and the record.
Shards go to a temporary folder and the master file appears last; a failed run removes both.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pixscale.core.layouts import output_shape
from pixscale.core.params import Params
from pixscale.core.spec import Spec, build_params
from pixscale.core.stats import PixelSums
from pixscale.engine.fitting import geometry_of, merge_image_params, prepare_params
from pixscale.engine.local import check_reuse, write_images
from pixscale.engine.record import build_record
from pixscale.engine.scan import DEFAULT_CHUNK_MB, Progress, dataset_sums
from pixscale.errors import OutputError
from pixscale.sources import ConcatSource, Source
from pixscale.sources.base import WindowSource, files_sha256, window_of
from pixscale.store.hdf5 import Hdf5Writer, store_record
from pixscale.store.io.atomic import StagedOutputs, current_umask, staged_outputs
from pixscale.store.io.space import check_room
from pixscale.store.output import Output, check_targets, write_mode

#: Input megabytes per task: large enough to amortise scheduling, small enough to balance.
DEFAULT_PARTITION_MB = 64.0
#: Times Dask re-runs a task whose worker died.
RETRIES = 2

Partition = tuple[int, WindowSource]


def partitions(source: Source, partition_mb: float = DEFAULT_PARTITION_MB) -> list[Partition]:
    """(first image in the dataset, window) per task: by file first, then by image ranges."""
    parts = source.parts if isinstance(source, ConcatSource) else (source,)
    found: list[Partition] = []
    offset = 0
    for part in parts:
        rows = max(1, int(partition_mb * (1 << 20)) // max(1, part.image_bytes))
        for start in range(0, part.n_images, rows):
            found.append((offset + start, window_of(part, start, min(start + rows, part.n_images))))
        offset += part.n_images
    return found


def partial_sums(window: Source, chunk_mb: float) -> PixelSums:
    """Task: exact integer sums of one partition."""
    return dataset_sums(window, chunk_mb)


def write_shard(
    window: Source, params: Params, spec: Spec, shard: Path, layout: str, chunk_mb: float
) -> Params | None:
    """Task: scale one partition into its own HDF5 file; per-image parameters come back."""
    staged = StagedOutputs(overwrite=True)
    writer = Hdf5Writer(shard, output_shape(window.shape, window.layout, layout), staged)
    try:
        done = write_images(window, params, spec, writer, chunk_mb, None, layout)
        writer.close()
        staged.commit()
    except BaseException:
        staged.discard()
        raise
    finally:
        writer.close()
    return done if done.scope == "image" else None


def dask_params(
    client: Any,
    source: Source,
    spec: Spec,
    windows: list[Partition],
    params_from: str | os.PathLike[str] | None,
    chunk_mb: float,
) -> Params:
    """Parameters exactly as the local engine computes them, statistics from the tasks."""
    if params_from is not None or not spec.needs_dataset_stats:
        return prepare_params(source, spec, params_from, chunk_mb, None)  # no data pass
    futures = [
        client.submit(partial_sums, w, chunk_mb, retries=RETRIES, pure=False) for _, w in windows
    ]
    sums = functools.reduce(PixelSums.merge, client.gather(futures))
    return build_params(spec, geometry_of(source), sums.reduce(spec.scope, source.channel_axis))


def replace_folder(temp: Path, target: Path) -> None:
    """Move ``temp`` to ``target``; an older ``target`` is removed only after the move."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(temp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def convert_on_dask(
    source: Source,
    output: Output,
    spec: Spec,
    client: Any,
    *,
    params_from: str | os.PathLike[str] | None = None,
    chunk_mb: float = DEFAULT_CHUNK_MB,
    partition_mb: float = DEFAULT_PARTITION_MB,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Convert ``source`` on the cluster behind ``client`` into a master .h5 and its shards."""
    spec = check_reuse(spec, params_from)
    if output.to_stdout or output.resolved_format() != "h5":
        raise OutputError(
            f"{output.path}: the dask engine writes HDF5 (a shard per task and a master file); "
            "use a .h5 output"
        )
    write_mode(output, 0)
    target = output.path
    shards_name = target.name + ".shards"
    layout = output.layout or source.layout
    shape = output_shape(source.shape, source.layout, layout)
    windows = partitions(source, partition_mb)
    with staged_outputs(output.overwrite, source.files) as staged:
        check_targets(output, staged)
        check_room(target, 4 * int(np.prod(shape)))
        digest = client.submit(files_sha256, source.files, pure=False)
        params = dask_params(client, source, spec, windows, params_from, chunk_mb)
        temp = Path(tempfile.mkdtemp(prefix=f".{shards_name}.", dir=target.parent))
        try:
            names = [f"part-{i:05d}.h5" for i in range(len(windows))]
            futures = [
                client.submit(
                    write_shard,
                    window,
                    params,
                    spec,
                    temp / name,
                    layout,
                    chunk_mb,
                    retries=RETRIES,
                    pure=False,
                )
                for (_, window), name in zip(windows, names, strict=True)
            ]
            results = []
            for (_, window), future in zip(windows, futures, strict=True):
                results.append(future.result())
                if progress:
                    progress(window.n_images, source.n_images, window.nbytes)
            if params.scope == "image":
                params = merge_image_params(
                    params, [r for r in results if r is not None], spec.zero_std
                )
            fitted_here = spec.needs_stats and params_from is None and params.scope != "image"
            record = build_record(params, source, digest.result(), fitted_here, layout)
            record["output"] = {
                **record["output"],
                "file": target.name,
                "format": "hdf5",
                "dataset": "images",
                "shape": list(shape),
                "dtype": "float32",
                "engine": "dask",
                "virtual": True,
                "shards": [f"{shards_name}/{name}" for name in names],
            }
            master = staged.stage(target)
            with h5py.File(master, "w", track_order=False) as handle:
                virtual = h5py.VirtualLayout(shape=shape, dtype="<f4")
                for (start, window), name in zip(windows, names, strict=True):
                    rows = (window.n_images, *shape[1:])
                    virtual[start : start + window.n_images] = h5py.VirtualSource(
                        f"{shards_name}/{name}", "images", shape=rows
                    )
                handle.create_virtual_dataset("images", virtual)
                store_record(handle, record, params.external_arrays(), source.labels)
            os.chmod(temp, 0o777 & ~current_umask())
            replace_folder(temp, target.parent / shards_name)  # shards first, master last
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
    return record


@contextmanager
def dask_client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A client of an existing scheduler, or of a new local cluster of ``workers`` processes;
    whatever is started here is closed on exit."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise OutputError(
            "the dask engine needs dask and distributed: pip install 'pixscale[dask]'"
        ) from exc
    if scheduler:
        with Client(scheduler) as client:  # type: ignore[no-untyped-call]
            yield client
        return
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: never collides with another cluster
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client
