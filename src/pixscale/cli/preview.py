"""preview: a PNG of the first images with labels, and histograms."""

from __future__ import annotations

from typing import Any

import click

from pixscale.cli.app import main
from pixscale.cli.errors import reports_errors
from pixscale.cli.options import input_options, located, overwrite_option, quiet_option
from pixscale.core.location import Location


@main.command()
@click.argument("path", metavar="FILE", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str), help="PNG file.")
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Images in the grid.",
)
@input_options
@overwrite_option
@quiet_option
@reports_errors
@located("path")
def preview(
    path: Location,
    output: Location,
    count: int,
    overwrite: bool,
    quiet: bool,
    reading: dict[str, Any],
) -> None:
    """Draw the first images of FILE with labels, and pixel histograms, to a PNG.

    \b
      pixscale preview train.h5 -o preview.png
      pixscale preview sample_data/mnist-train-1k-images-idx3-ubyte.gz -o sample.png -n 32
    """
    from pixscale.tasks.preview import preview as draw

    width, height = draw(path, output, count, overwrite, **reading)
    if not quiet:
        click.echo(f"{output}: {width}×{height} PNG", err=True)
