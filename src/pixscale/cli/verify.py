"""verify: an output checked against its record and its source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pixscale.cli.app import main
from pixscale.cli.errors import reports_errors
from pixscale.cli.options import input_options, quiet_option


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
@input_options
@quiet_option
@reports_errors
def verify(
    converted: Path,
    source_path: Path | None,
    samples: int,
    quiet: bool,
    reading: dict[str, Any],
) -> None:
    """Check that FILE's record is complete and matches its data (and its source).

    \b
      pixscale verify train.h5 --source train-images-idx3-ubyte.gz
    """
    from pixscale.tasks.verify import verify as run_verify

    report = run_verify(converted, source_path, samples, **reading)
    for name, passed, detail in report.checks:
        if not quiet:
            click.echo(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}")
    if not report.ok:
        raise click.ClickException(f"{converted}: verification failed")
