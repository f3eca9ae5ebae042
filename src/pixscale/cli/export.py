"""export: parameters in the form and units of a training framework."""

from __future__ import annotations

from pathlib import Path

import click

from pixscale.cli.app import main
from pixscale.cli.errors import reports_errors
from pixscale.cli.options import quiet_option
from pixscale.tasks.export import TARGETS as EXPORT_TARGETS


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
    type=click.IntRange(1, 17),
    default=4,
    show_default=True,
    help="Decimal places (more where a small number needs them).",
)
@click.option("--exact", is_flag=True, help="Full float64 precision instead of --digits.")
@quiet_option
@reports_errors
def export(params_file: Path, target: str, digits: int, exact: bool, quiet: bool) -> None:
    """Print PARAMS (a params JSON or pixscale output) as a framework's Normalize.

    \b
      pixscale export mnist.params.json --to torchvision
      → transforms.Normalize(mean=(0.1307,), std=(0.3081,))  # after ToTensor()
    """
    from pixscale.store.records import load_params
    from pixscale.tasks.export import export as render

    params, _ = load_params(params_file)
    click.echo(render(params, target, None if exact else digits))
