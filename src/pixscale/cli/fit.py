"""fit: parameters fitted on a training set, written as a params JSON."""

from __future__ import annotations

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
from pixscale.core.location import Location
from pixscale.core.params import dumps
from pixscale.core.spec import Spec


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=str),
    help="Write the params JSON here (default: print it).",
)
@strategy_options
@input_options
@overwrite_option
@chunk_mb_option
@quiet_option
@reports_errors
@located("inputs", "output")
def fit(
    inputs: tuple[Location, ...],
    output: Location | None,
    overwrite: bool,
    chunk_mb: float,
    quiet: bool,
    spec: Spec,
    reading: dict[str, Any],
) -> None:
    """Fit parameters on INPUTS (shards count as one dataset) without converting.

    \b
      pixscale fit train-images-idx3-ubyte.gz -s standardize -o mnist.params.json
    """
    from pixscale.engine.local import fit as run_fit

    advance, close = progress_bar(quiet, "fitting")
    try:
        record = run_fit(
            expand_globs(inputs),
            output,
            spec,
            overwrite=overwrite,
            chunk_mb=chunk_mb,
            progress=advance,
            **reading,
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


def _as_list(value: Any) -> list[float]:
    return value if isinstance(value, list) else [value]
