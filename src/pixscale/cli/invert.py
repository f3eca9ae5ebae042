"""invert: the exact uint8 images back from an output."""

from __future__ import annotations

from typing import Any

import click

from pixscale.cli.app import main
from pixscale.cli.errors import reports_errors
from pixscale.cli.options import input_options, located, overwrite_option, quiet_option
from pixscale.core.location import Location


@main.command()
@click.argument("converted", metavar="FILE", type=click.Path(path_type=str))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=str),
    help="uint8 output: .npy, .h5, or an IDX name (…-idx3-ubyte[.gz]).",
)
@click.option(
    "--verify",
    "verify_source",
    type=click.Path(path_type=str),
    help=(
        "Compare with the original source: pixels that differ (beyond a --clip's loss) "
        "mean FILE is damaged, and nothing is written."
    ),
)
@input_options
@overwrite_option
@quiet_option
@reports_errors
@located("converted", "output", "verify_source")
def invert(
    converted: Location,
    output: Location,
    verify_source: Location | None,
    overwrite: bool,
    quiet: bool,
    reading: dict[str, Any],
) -> None:
    """Recover the exact uint8 images from a pixscale output, using only its record.

    \b
      pixscale invert train.h5 -o back.npy
      pixscale invert train.h5 -o back-idx3-ubyte.gz --verify train-images-idx3-ubyte.gz
    """
    from pixscale.tasks.invert import describe
    from pixscale.tasks.invert import invert as run_invert

    report = run_invert(
        converted, output, overwrite=overwrite, verify_source=verify_source, **reading
    )
    lines = describe(report)
    if not report.source_mismatches:
        exact = not any(line.startswith("Warning: lossy") for line in lines)
        lines.insert(0, f"{output}: {report.images:,} images{', exact' if exact else ''}")
    for line in lines:
        if not quiet or line.startswith("Warning"):
            click.echo(line, err=True)
    if report.source_mismatches:
        raise click.exceptions.Exit(1)
