"""The ``pixscale`` command: a thin click layer over the library."""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from pixscale import __version__
from pixscale.errors import PixscaleError
from pixscale.export import TARGETS as EXPORT_TARGETS
from pixscale.pipeline import DEFAULT_CHUNK_MB, Output, Progress, plan
from pixscale.sources import open_source
from pixscale.sources.stdin import STDIN, spooled
from pixscale.strategies import SCOPES, STRATEGIES, ZERO_STD_POLICIES, Spec
from pixscale.writers.hdf5 import COMPRESSIONS

F = TypeVar("F", bound=Callable[..., Any])

TEST_SPLIT = re.compile(r"(^|[^a-z])(test|t10k|val|valid|validation)([^a-z]|$)", re.IGNORECASE)


def looks_like_test_split(paths: Sequence[Path]) -> bool:
    return any(TEST_SPLIT.search(p.name) for p in paths)


def reports_errors(command: F) -> F:
    """Library errors become ``Error: …`` and exit 1; ``--debug`` shows the traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, as shell tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(141) from None
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("Error: interrupted; no output was written", err=True)
            raise click.exceptions.Exit(130) from None
        except (PixscaleError, OSError) as exc:
            if debug:
                raise
            message = str(exc) if isinstance(exc, PixscaleError) else describe_os_error(exc)
            raise click.ClickException(message) from exc

    return wrapper  # type: ignore[return-value]


def describe_os_error(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def progress_bar(quiet: bool, label: str) -> tuple[Progress | None, Callable[[], None]]:
    """A click progress bar on stderr, shown only on a terminal and without --quiet."""
    if quiet or not sys.stderr.isatty():
        return None, lambda: None
    state: dict[str, Any] = {}

    def advance(step: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = click.progressbar(length=total, label=label, file=sys.stderr)
            state["bar"].__enter__()
        state["bar"].update(step)

    def close() -> None:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)

    return advance, close


def expand_globs(inputs: Sequence[Path]) -> list[Path]:
    """Quoted patterns such as 'shards/*.npy' expand here, in sorted order."""
    expanded: list[Path] = []
    for path in inputs:
        text = str(path)
        if not path.exists() and any(c in text for c in "*?["):
            matches = sorted(Path(p) for p in glob.glob(text))
            if not matches:
                raise click.BadParameter(f"{text}: no file matches")
            expanded += matches
        else:
            expanded.append(path)
    return expanded


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def floats(text: str | None) -> tuple[float, ...] | None:
    """``0.485,0.456,0.406`` → a tuple of floats."""
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from exc


def strategy_options(command: F) -> F:
    """Options that describe a strategy, shared by convert and fit."""
    options = [
        click.option(
            "-s",
            "--strategy",
            type=click.Choice(STRATEGIES),
            default="unit",
            show_default=True,
            help="unit: x/255 → [0,1]; symmetric: → [-1,1]; range: --from → --to; "
            "standardize: (x - mean)/std; none: cast only.",
        ),
        click.option(
            "--scope",
            type=click.Choice(SCOPES),
            default="global",
            show_default=True,
            help="One statistic for the dataset, per channel, per pixel position or per image.",
        ),
        click.option(
            "--from",
            "source_range",
            type=float,
            nargs=2,
            metavar="LO HI",
            help="range: source range (default 0 255).",
        ),
        click.option(
            "--to",
            "target_range",
            type=float,
            nargs=2,
            metavar="A B",
            help="range: target range (default 0 1).",
        ),
        click.option(
            "--from-data",
            is_flag=True,
            help="range: take the source range (min, max) from the data.",
        ),
        click.option("--clip", is_flag=True, help="Clamp outputs to the target range."),
        click.option(
            "--mean",
            metavar="M[,M…]",
            help="standardize: given mean(s) in [0,1] units, e.g. 0.485,0.456,0.406.",
        ),
        click.option(
            "--std",
            metavar="S[,S…]",
            help="standardize: given std(s) in [0,1] units, e.g. 0.229,0.224,0.225.",
        ),
        click.option(
            "--zero-std",
            type=click.Choice(ZERO_STD_POLICIES),
            default="unit",
            show_default=True,
            help="Constant channels/pixels: centre only (std taken as 1), or fail.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_spec(options: dict[str, Any]) -> Spec:
    options.pop("channel_axis", None)
    return Spec(
        strategy=options["strategy"],
        scope=options["scope"],
        source_range=options["source_range"] or None,
        target_range=options["target_range"] or None,
        from_data=options["from_data"],
        mean=floats(options["mean"]),
        std=floats(options["std"]),
        clip=options["clip"],
        zero_std=options["zero_std"],
    )


def on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary outputs are removed."""
    raise KeyboardInterrupt


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message="%(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """Scale uint8 image datasets to exact float32, recording the parameters.

    \b
      pixscale convert train-images-idx3-ubyte.gz -o train.h5
      pixscale fit train-images-idx3-ubyte.gz -s standardize -o mnist.params.json
      pixscale convert t10k-images-idx3-ubyte.gz -o test.h5 --params-from mnist.params.json
    """
    signal.signal(signal.SIGTERM, on_sigterm)
    # Past a file-size limit, fail the write with EFBIG (a clean error) instead of dying.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


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
@click.option("--chunk-images", type=click.IntRange(min=1), help="HDF5 chunk length in images.")
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
    if spec.needs_stats and params_from is None and looks_like_test_split(inputs):
        click.echo(
            "Warning: fitting statistics on what looks like a test/validation split; "
            "fit on training data and pass --params-from.",
            err=True,
        )
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
        target = Output(output, fmt, overwrite, compression, chunk_images, layout, params_out)
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
    if looks_like_test_split(inputs):
        click.echo(
            "Warning: fitting on what looks like a test/validation split; "
            "fit on training data and reuse it with --params-from.",
            err=True,
        )
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


@main.command()
@click.argument("converted", metavar="FILE", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="uint8 output: .npy, .h5, or an IDX name (…-idx3-ubyte[.gz]).",
)
@click.option(
    "--verify",
    "verify_source",
    type=click.Path(path_type=Path),
    help="Compare with the original source and count differing pixels.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output (atomically).")
@reports_errors
def invert(converted: Path, output: Path, verify_source: Path | None, overwrite: bool) -> None:
    """Recover the exact uint8 images from a pixscale output, using only its record.

    \b
      pixscale invert train.h5 -o back.npy
      pixscale invert train.h5 -o back-idx3-ubyte.gz --verify train-images-idx3-ubyte.gz
    """
    from pixscale.inverse import describe
    from pixscale.inverse import invert as run_invert

    report = run_invert(converted, output, overwrite=overwrite, verify_source=verify_source)
    for line in describe(report):
        click.echo(line, err=True)
    if report.source_mismatches:
        raise click.exceptions.Exit(1)


@main.command()
@click.argument("converted", metavar="FILE", type=click.Path(path_type=Path))
@click.option(
    "--source",
    "source_path",
    type=click.Path(path_type=Path),
    help="The original input: check its sha256 and re-derive a sample of values.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Images re-derived from the source.",
)
@reports_errors
def verify(converted: Path, source_path: Path | None, samples: int) -> None:
    """Check that FILE's record is complete and matches its data (and its source).

    \b
      pixscale verify train.h5 --source train-images-idx3-ubyte.gz
    """
    from pixscale.inverse import verify as run_verify

    report = run_verify(converted, source_path, samples)
    for name, passed, detail in report.checks:
        click.echo(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}")
    if not report.ok:
        raise click.ClickException(f"{converted}: verification failed")


@main.command()
@click.argument("path", metavar="FILE", type=click.Path(path_type=Path))
@click.option("--key", help="Array of an .npz or dataset of an HDF5 input.")
@click.option("--mode", type=click.Choice(["L", "RGB"]), help="Image folders: colour mode.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@reports_errors
def info(path: Path, key: str | None, mode: str | None, as_json: bool) -> None:
    """Show what FILE holds: format, shape, layout, labels, statistics, record.

    \b
      pixscale info train-images-idx3-ubyte.gz
      pixscale info train.h5 --json
    """
    import json

    from pixscale.info import describe_path

    details = describe_path(path, key=key, mode=mode)
    if as_json:
        click.echo(json.dumps(details, indent=2, allow_nan=False))
        return
    for line in info_lines(details):
        click.echo(line)


def info_lines(details: dict[str, Any]) -> list[str]:
    """The readable form of ``info``."""
    shape = "×".join(str(n) for n in details["shape"])
    lines = [
        f"{details['file']}: {details['kind']}, {details['format']}",
        f"  shape      {shape} {details['dtype']}, layout {details['layout']}",
    ]
    if details.get("labels"):
        names = details.get("class_names")
        extra = f" ({', '.join(names)})" if names else ""
        lines.append(f"  labels     {details['labels']}, {details['classes']} classes{extra}")
    else:
        lines.append("  labels     none")
    stats = details["stats"]
    exact = "exact" if stats["exact"] else "float64 sums"
    for index, (low, high, mean, std) in enumerate(
        zip(stats["min"], stats["max"], stats["mean"], stats["std"], strict=True)
    ):
        channel = f"channel {index}" if len(stats["min"]) > 1 else "all pixels"
        lines.append(
            f"  {channel:<10} min {low:.6g}  max {high:.6g}  mean {mean:.6g}  std {std:.6g}"
            f" ({exact})"
        )
    if details["kind"] == "pixscale output":
        lines.append(f"  strategy   {details['strategy']}, scope {details['scope']}")
        for name, value in details["parameters"].items():
            lines.append(f"  {name:<18} {value}")
        source = details.get("source") or {}
        lines.append(f"  source     {source.get('name')} sha256 {source.get('sha256')}")
        fitted = details.get("fitted_on")
        if fitted:
            lines.append(f"  fitted on  {fitted.get('name')} sha256 {fitted.get('sha256')}")
    return lines


@main.command()
@click.argument("path", metavar="FILE", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="PNG file.")
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Images in the grid.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing PNG.")
@reports_errors
def preview(path: Path, output: Path, count: int, overwrite: bool) -> None:
    """Draw the first images of FILE with labels, and pixel histograms, to a PNG.

    \b
      pixscale preview train.h5 -o preview.png
      pixscale preview sample_data/mnist-train-1k-images-idx3-ubyte.gz -o sample.png -n 32
    """
    from pixscale.preview import preview as draw

    width, height = draw(path, output, count, overwrite)
    click.echo(f"{output}: {width}×{height} PNG", err=True)


def _as_list(value: Any) -> list[float]:
    return value if isinstance(value, list) else [value]


if __name__ == "__main__":  # pragma: no cover
    main()
