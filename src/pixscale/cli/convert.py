"""convert: scale inputs to a float32 output and record the parameters."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Any

import click

from pixscale.cli.app import main
from pixscale.cli.errors import reports_errors
from pixscale.cli.options import (
    chunk_mb_option,
    expand_globs,
    input_options,
    located,
    overwrite_option,
    quiet_option,
    strategy_options,
)
from pixscale.cli.progress import progress_bar
from pixscale.core.layouts import OUTPUT_LAYOUTS
from pixscale.core.location import Location, locate
from pixscale.core.spec import Spec
from pixscale.core.storage import DTYPES, STORES
from pixscale.engine.plan import plan
from pixscale.sources import open_source
from pixscale.sources.stdin import STDIN, spooled
from pixscale.store.backends import COMPRESSIONS, FORMATS
from pixscale.store.io.direct import IO_MODES
from pixscale.store.output import Output, check_before_reading


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def stdout_is_open() -> bool:
    if sys.stdout is None:  # started with standard output closed
        return False
    try:
        os.fstat(sys.stdout.fileno())
    except io.UnsupportedOperation:  # a stream with no descriptor, as in tests
        return True
    except (OSError, ValueError):
        return False
    return True


def check_stdout(spec: Spec, params_from: Location | None, params_out: Location | None) -> None:
    """``-o -``: standard output must be open and not a terminal, and parameters fitted on
    the data need --params-out, the only place their record can go."""
    if not stdout_is_open():
        raise click.ClickException("-o -: standard output is closed")
    if stdout_is_terminal():
        raise click.UsageError("refusing to write binary .npy to a terminal; redirect or pipe it")
    fitted = spec.needs_stats or spec.scope == "image"
    if fitted and params_from is None and params_out is None:
        raise click.ClickException(
            "-o - writes only the data: give --params-out FILE to keep the fitted parameters"
        )


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=str),
    help="Output: .h5/.hdf5, .npy (sidecar <output>.json) or .zarr; - for .npy on stdout.",
)
@strategy_options
@input_options
@click.option(
    "--params-from",
    type=click.Path(path_type=str),
    help="Reuse parameters from a params JSON or an earlier pixscale output.",
)
@click.option(
    "--layout",
    type=click.Choice(OUTPUT_LAYOUTS),
    help="Output layout (default: the input's); nchw for PyTorch.",
)
@click.option(
    "--params-out",
    type=click.Path(path_type=str),
    help="Also write the parameter record to this JSON file (needed with -o -).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Output format (default: from the extension).",
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    default="none",
    show_default=True,
    help="Compression of HDF5 or Zarr outputs (lzf: HDF5 only).",
)
@click.option(
    "--chunk-images",
    type=click.IntRange(min=1),
    help="Chunk length in images, HDF5 or Zarr (uncompressed HDF5 is contiguous without it).",
)
@click.option(
    "--io",
    type=click.Choice(IO_MODES),
    default="auto",
    show_default=True,
    help=".npy and uncompressed HDF5 writes: direct bypasses the page cache, buffered goes "
    "through it; auto is direct for outputs of 64 MiB or more.",
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="float32",
    show_default=True,
    help="float16: half the bytes, each value the float16 nearest the exact result "
    "(outputs beyond ±65504 are refused).",
)
@click.option(
    "--store",
    type=click.Choice(STORES),
    default="float",
    show_default=True,
    help="uint8: keep the pixels (¼ the bytes of float32) with CF scale_factor/add_offset "
    "that decode them exactly to the float32 values (pixscale.open, xarray).",
)
@chunk_mb_option
@overwrite_option
@click.option(
    "--dry-run", is_flag=True, help="Print what would be read, written and needed; then stop."
)
@click.option(
    "--engine",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="dask: run the partitions on a Dask cluster (pip install 'pixscale[dask]').",
)
@click.option("--workers", type=click.IntRange(min=1), help="dask: start a local cluster of N.")
@click.option("--scheduler", metavar="ADDRESS", help="dask: join a running cluster.")
@quiet_option
@reports_errors
@located("inputs", "output", "params_from", "params_out")
def convert(
    inputs: tuple[Location, ...],
    output: Location,
    params_from: Location | None,
    layout: str | None,
    params_out: Location | None,
    fmt: str | None,
    compression: str,
    chunk_images: int | None,
    io: str,
    dtype: str,
    store: str,
    chunk_mb: float,
    overwrite: bool,
    dry_run: bool,
    engine: str,
    workers: int | None,
    scheduler: str | None,
    quiet: bool,
    spec: Spec,
    reading: dict[str, Any],
) -> None:
    """Scale INPUTS to float32 OUTPUT and record the parameters.

    \b
    INPUTS, recognised by content (several of one kind are read as one dataset):
      IDX (.gz too), .npy, .npz (--key), HDF5 (--key), Zarr v3 stores,
      image folders (one sub-folder per class; PNG, JPEG, BMP, TIFF),
      .zip / .tar / .tar.gz archives of images (--key picks a folder),
      Hugging Face Hub Parquet (--key image column, --labels label column),
      WebDataset shards (quoted globs or braces: 'shard-{000000..000099}.tar'),
      CIFAR (.bin, pickled python batches, their .tar.gz),
      - for standard input.
    OUTPUT: .h5/.hdf5, .npy (sidecar <output>.json; - for standard output)
      or .zarr (pip install 'pixscale[zarr]').

    Each output value is the float32 nearest to
    y = (x - source_low) * target_span / source_span + target_low.

    \b
      pixscale convert train-images-idx3-ubyte.gz -o train.h5
      pixscale convert x.npy -o y.h5 -s range --from 0 255 --to -2 3
      pixscale convert train.npy -o train.h5 -s standardize --scope channel
      pixscale convert mnist.npz --key x_train -o train.h5 --layout nchw
      pixscale convert train.npy -o train16.h5 --dtype float16
      pixscale convert train.npy -o packed.h5 --store uint8 -s standardize --scope channel
      pixscale convert photos -o photos.zarr --resize 64x64
      pixscale convert train-00000-of-00001.parquet --labels coarse_label -o c.h5
      pixscale convert 'shard-{000000..000009}.tar' -o shards.h5
      gunzip -c t10k-images-idx3-ubyte.gz | pixscale convert - -o - --params-out p.json > t.npy
    """
    from pixscale.engine.local import convert as run_convert
    from pixscale.engine.pipeline import check_reuse, named_inputs

    spec = check_reuse(spec, params_from)
    if str(output) == STDIN:
        check_stdout(spec, params_from, params_out)
    target = Output(
        output, fmt, overwrite, compression, chunk_images, layout, params_out, io, dtype, store
    )
    named = expand_globs(inputs)
    if not dry_run:
        check_before_reading(target, named_inputs(named, reading, params_from))
    advance, close = progress_bar(quiet, "converting")
    with contextlib.ExitStack() as stack:
        stack.callback(close)
        paths = [
            stack.enter_context(spooled(sys.stdin.buffer)) if str(p) == STDIN else p for p in named
        ]
        source = open_source(paths, **reading)
        if STDIN in map(str, inputs):
            source.name = "<stdin>" if len(inputs) == 1 else source.name
        if dry_run:
            show_plan(plan(source, target, spec, chunk_mb, params_from is not None))
            return
        if engine == "dask" and (dtype, store) != ("float32", "float"):
            raise click.UsageError("--dtype float16 and --store uint8 need --engine local")
        if engine == "dask":
            from pixscale.engine.distributed import convert_on_dask, dask_client

            with dask_client(scheduler, workers) as client:
                record = convert_on_dask(
                    source,
                    target,
                    spec,
                    client,
                    params_from=params_from,
                    chunk_mb=chunk_mb,
                    progress=advance,
                    extra_inputs=tuple(
                        locate(p, reading.get("storage_options"))
                        for p in [reading.get("labels")]
                        if p
                    ),
                )
            if not quiet:
                report(record)
            return
        if workers is not None or scheduler is not None:
            raise click.UsageError("--workers and --scheduler need --engine dask")
        record = run_convert(
            source,
            target,
            spec,
            params_from=params_from,
            chunk_mb=chunk_mb,
            progress=advance,
        )
    if not quiet:
        report(record)


def show_plan(details: dict[str, Any]) -> None:
    """--dry-run: the plan on stdout; refuse when the output cannot fit."""
    mib = 1 << 20
    click.echo(
        f"read    {details['input_files']} file(s), {details['input_bytes_on_disk']:,} bytes "
        f"on disk: {details['images']:,} images {details['input_shape']}"
    )
    click.echo(
        f"write   {details['output']}: {details['output_bytes']:,} bytes "
        f"{details.get('output_dtype', 'float32')} {details['output_shape']}"
    )
    click.echo(f"passes  {details['passes']} (chunks of {details['chunk_images']:,} images)")
    click.echo(f"writes  {details['writes']}")
    click.echo(f"memory  about {details['peak_memory_bytes'] / mib:.0f} MiB peak")
    click.echo(f"disk    {details['free_disk_bytes']:,} bytes free")
    if not details["fits"]:
        raise click.ClickException(
            f"{details['output']}: needs {details['output_bytes']:,} bytes, "
            f"only {details['free_disk_bytes']:,} free"
        )


def report(record: dict[str, Any]) -> None:
    out = record["output"]
    shape = "×".join(str(n) for n in out["shape"])
    labels = f", labels in {out['labels']}" if "labels" in out else ""
    kind = out.get("dtype", "float32")
    if out.get("store") == "uint8":
        kind = "uint8 packed (decodes exactly to float32)"
    click.echo(f"{out['file']}: {kind} {shape}, strategy {record['strategy']}{labels}", err=True)
    zero = record.get("zero_std")
    if zero:
        click.echo(
            f"Note: {zero['constant_count']} constant {record['scope']} element(s): centred only",
            err=True,
        )
