"""invert, verify, info and preview."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pixscale.cli import main, reports_errors


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
