"""info: what a file holds."""

from __future__ import annotations

from typing import Any

import click

from pixscale.cli.app import main
from pixscale.cli.errors import reports_errors
from pixscale.cli.options import input_options, located, quiet_option
from pixscale.core.location import Location


@main.command()
@click.argument("path", metavar="FILE", type=click.Path(path_type=str))
@input_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@quiet_option
@reports_errors
@located("path")
def info(path: Location, as_json: bool, quiet: bool, reading: dict[str, Any]) -> None:
    """Show what FILE holds: format, shape, layout, labels, statistics, record.

    \b
      pixscale info train-images-idx3-ubyte.gz
      pixscale info train.h5 --json
    """
    import json

    from pixscale.tasks.info import describe_path

    details = describe_path(path, **reading)
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
        f"  shape      {shape} {details['dtype']}{packed_note(details)}, "
        f"layout {details['layout']}",
    ]
    if details.get("labels"):
        names = details.get("class_names")
        extra = f" ({', '.join(names)})" if names else ""
        lines.append(f"  labels     {details['labels']}, {details['classes']} classes{extra}")
    else:
        lines.append("  labels     none")
    columns = details.get("label_columns") or []
    if len(columns) > 1:
        taken = details.get("label_column") or "none"
        lines.append(
            f"  label column {taken} (of {', '.join(columns)}; --labels COLUMN picks another)"
        )
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


def packed_note(details: dict[str, Any]) -> str:
    """`` (packed: read as float32)`` for --store uint8 outputs."""
    return " (packed: read as float32)" if details.get("store") == "uint8" else ""
