"""convert, fit and export."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from pixscale.cli import (
    expand_globs,
    main,
    make_spec,
    progress_bar,
    reports_errors,
    stdout_is_terminal,
    strategy_options,
    warn_if_test_split,
)
from pixscale.export import TARGETS as EXPORT_TARGETS
from pixscale.pipeline import DEFAULT_CHUNK_MB, Output, plan
from pixscale.sources import open_source
from pixscale.sources.stdin import STDIN, spooled
from pixscale.strategies import Spec
from pixscale.writers.direct import IO_MODES
from pixscale.writers.hdf5 import COMPRESSIONS


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Output file: .h5/.hdf5 or .npy (sidecar <output>.json); - for .npy on stdout.",
)
@strategy_options
@click.option(
    "--params-from",
    type=click.Path(path_type=Path),
    help="Reuse parameters from a params JSON or an earlier pixscale output.",
)
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="Labels file (IDX or .npy); default: the IDX sibling labels file.",
)
@click.option(
    "--key", help="Array of an .npz (x_train) or dataset of an HDF5 input (images/train)."
)
@click.option(
    "--mode",
    type=click.Choice(["L", "RGB"]),
    help="Image folders: convert to greyscale (L) or RGB (default: as found).",
)
@click.option(
    "--input-layout",
    type=click.Choice(["nhw", "nhwc", "nchw"]),
    help="Layout of array inputs (default: NHW for 3-D, NHWC for 4-D).",
)
@click.option(
    "--layout",
    type=click.Choice(["nhwc", "nchw"]),
    help="Output layout (default: the input's); nchw for PyTorch.",
)
@click.option(
    "--params-out",
    type=click.Path(path_type=Path),
    help="Also write the parameter record to this JSON file (needed with -o -).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["h5", "npy"]),
    help="Output format (default: from the extension).",
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    default="none",
    show_default=True,
    help="HDF5 compression.",
)
@click.option(
    "--chunk-images",
    type=click.IntRange(min=1),
    help="HDF5 chunk length in images (uncompressed HDF5 is contiguous unless this is given).",
)
@click.option(
    "--io",
    type=click.Choice(IO_MODES),
    default="auto",
    show_default=True,
    help=".npy and uncompressed HDF5 writes: direct bypasses the page cache, buffered goes "
    "through it; auto is direct for outputs larger than the kernel's write-back threshold.",
)
@click.option(
    "--chunk-mb",
    type=click.FloatRange(min=0.01),
    default=DEFAULT_CHUNK_MB,
    show_default=True,
    help="Input megabytes processed at a time (sets peak memory).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output (atomically).")
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
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or report.")
@reports_errors
def convert(
    inputs: tuple[Path, ...],
    output: Path,
    params_from: Path | None,
    labels: Path | None,
    key: str | None,
    mode: str | None,
    input_layout: str | None,
    layout: str | None,
    params_out: Path | None,
    fmt: str | None,
    compression: str,
    chunk_images: int | None,
    io: str,
    chunk_mb: float,
    overwrite: bool,
    dry_run: bool,
    engine: str,
    workers: int | None,
    scheduler: str | None,
    quiet: bool,
    **strategy: Any,
) -> None:
    """Scale INPUTS (IDX, .npy, .npz, HDF5, image folders, CIFAR .bin; - for stdin)
    to float32 OUTPUT (.h5 or .npy; - for .npy on stdout) and record the parameters.

    Each output value is the float32 nearest to
    y = (x - source_low) * target_span / source_span + target_low.

    \b
      pixscale convert train-images-idx3-ubyte.gz -o train.h5
      pixscale convert x.npy -o y.h5 -s range --from 0 255 --to -2 3
      pixscale convert train.npy -o train.h5 -s standardize --scope channel
      pixscale convert mnist.npz --key x_train -o train.h5 --layout nchw
      gunzip -c t10k-images-idx3-ubyte.gz | pixscale convert - -o - --params-out p.json > t.npy
    """
    from pixscale.pipeline import convert as run_convert

    channel_axis = strategy.get("channel_axis")
    spec = make_spec(strategy)
    if params_from is not None and spec != Spec(zero_std=spec.zero_std):
        raise click.UsageError("--params-from replaces the strategy options; give one or the other")
    if spec.needs_stats and params_from is None:
        warn_if_test_split(inputs)
    if str(output) == STDIN and stdout_is_terminal():
        raise click.UsageError("refusing to write binary .npy to a terminal; redirect or pipe it")
    advance, close = progress_bar(quiet, "converting")
    with contextlib.ExitStack() as stack:
        stack.callback(close)
        paths = [
            stack.enter_context(spooled(sys.stdin.buffer)) if str(p) == STDIN else p
            for p in expand_globs(inputs)
        ]
        source = open_source(
            paths, labels=labels, layout=input_layout, channel_axis=channel_axis, key=key, mode=mode
        )
        if STDIN in map(str, inputs):
            source.name = "<stdin>" if len(inputs) == 1 else source.name
        target = Output(output, fmt, overwrite, compression, chunk_images, layout, params_out, io)
        if dry_run:
            show_plan(plan(source, target, spec, chunk_mb, params_from is not None))
            return
        if engine == "dask":
            from pixscale.distributed import convert_on_dask, dask_client

            with dask_client(scheduler, workers) as client:
                record = convert_on_dask(
                    source,
                    target,
                    spec,
                    client,
                    params_from=params_from,
                    chunk_mb=chunk_mb,
                    progress=advance,
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
        f"float32 {details['output_shape']}"
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
    click.echo(f"{out['file']}: float32 {shape}, strategy {record['strategy']}{labels}", err=True)
    zero = record.get("zero_std")
    if zero:
        click.echo(
            f"Note: {zero['constant_count']} constant {record['scope']} element(s): centred only",
            err=True,
        )


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Write the params JSON here (default: print it).",
)
@strategy_options
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option(
    "--chunk-mb",
    type=click.FloatRange(min=0.01),
    default=DEFAULT_CHUNK_MB,
    show_default=True,
    help="Input megabytes processed at a time.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or report.")
@reports_errors
def fit(
    inputs: tuple[Path, ...],
    output: Path | None,
    overwrite: bool,
    chunk_mb: float,
    quiet: bool,
    **strategy: Any,
) -> None:
    """Fit parameters on INPUTS (shards count as one dataset) without converting.

    \b
      pixscale fit train-images-idx3-ubyte.gz -s standardize -o mnist.params.json
    """
    from pixscale.params import dumps
    from pixscale.pipeline import fit as run_fit

    channel_axis = strategy.get("channel_axis")
    spec = make_spec(strategy)
    warn_if_test_split(inputs)
    advance, close = progress_bar(quiet, "fitting")
    try:
        record = run_fit(
            expand_globs(inputs),
            output,
            spec,
            overwrite=overwrite,
            channel_axis=channel_axis,
            chunk_mb=chunk_mb,
            progress=advance,
        )
    finally:
        close()
    if output is None:
        click.echo(dumps(record), nl=False)
    elif not quiet:
        stats = record.get("stats")
        if stats:
            mean = ", ".join(f"{v:.4f}" for v in _as_list(stats["mean_unit"]))
            std = ", ".join(f"{v:.4f}" for v in _as_list(stats["std_unit"]))
            click.echo(f"{output}: mean ({mean}), std ({std}) in [0,1] units", err=True)
        else:
            click.echo(f"{output}: {record['strategy']} parameters written", err=True)


@main.command()
@click.argument("params_file", metavar="PARAMS", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "target",
    type=click.Choice(EXPORT_TARGETS),
    default="torchvision",
    show_default=True,
    help="Framework whose Normalize form to print.",
)
@click.option(
    "--digits",
    type=click.IntRange(0, 17),
    default=4,
    show_default=True,
    help="Decimal places to round to.",
)
@click.option("--exact", is_flag=True, help="Full float64 precision instead of --digits.")
@reports_errors
def export(params_file: Path, target: str, digits: int, exact: bool) -> None:
    """Print PARAMS (a params JSON or pixscale output) as a framework's Normalize.

    \b
      pixscale export mnist.params.json --to torchvision
      → transforms.Normalize(mean=(0.1307,), std=(0.3081,))  # after ToTensor()
    """
    from pixscale.export import export as render
    from pixscale.records import load_params

    params, _ = load_params(params_file)
    click.echo(render(params, target, None if exact else digits))


def _as_list(value: Any) -> list[float]:
    return value if isinstance(value, list) else [value]
