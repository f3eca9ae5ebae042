"""verify: an output checked against its record and its source."""

from __future__ import annotations

from typing import Any

import click

from pixscale.cli.app import main
from pixscale.cli.errors import reports_errors
from pixscale.cli.options import input_options, located, quiet_option
from pixscale.core.location import Location


@main.command()
@click.argument("converted", metavar="FILE", type=click.Path(path_type=str))
@click.option(
    "--source",
    "source_path",
    type=click.Path(path_type=str),
    help="The original input: check its sha256 and re-derive every image bit for bit.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=None,
    help="Re-derive only N evenly spaced images from the source (default: all).",
)
@input_options
@quiet_option
@reports_errors
@located("converted", "source_path")
def verify(
    converted: Location,
    source_path: Location | None,
    samples: int | None,
    quiet: bool,
    reading: dict[str, Any],
) -> None:
    """Check that FILE's record is complete and matches its data (and its source).

    Without --source: the record's fields, the derived scale and offset, the checksum of
    the data and that every value is one the parameters can produce. With --source: also
    its sha256 and every image re-derived bit for bit.

    \b
      pixscale verify train.h5
      pixscale verify train.h5 --source train-images-idx3-ubyte.gz
    """
    from pixscale.tasks.verify import verify as run_verify

    report = run_verify(converted, source_path, samples, **reading)
    for name, passed, detail in report.checks:
        if not quiet:
            click.echo(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}")
    if not report.ok:
        failures = "; ".join(report.failures)
        raise click.ClickException(f"{converted}: verification failed ({failures})")
