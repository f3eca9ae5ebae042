"""The ``pixscale`` command: a thin click layer over the library.

This module holds the group and what every command shares; the commands live in
``pixscale.cli.conversion`` (convert, fit, export) and ``pixscale.cli.inspection``
(invert, verify, info, preview).
"""

from __future__ import annotations

import functools
import glob
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from pixscale import __version__
from pixscale.errors import PixscaleError
from pixscale.pipeline import Progress
from pixscale.strategies import SCOPES, STRATEGIES, ZERO_STD_POLICIES, Spec

F = TypeVar("F", bound=Callable[..., Any])

TEST_SPLIT = re.compile(r"(^|[^a-z])(test|t10k|val|valid|validation)([^a-z]|$)", re.IGNORECASE)


def looks_like_test_split(paths: Sequence[Path]) -> bool:
    return any(TEST_SPLIT.search(p.name) for p in paths)


def warn_if_test_split(paths: Sequence[Path]) -> None:
    """Statistics belong to the training set: say so when the inputs look like test data."""
    if looks_like_test_split(paths):
        click.echo(
            "Warning: fitting on what looks like a test/validation split; "
            "fit on training data and reuse the parameters with --params-from.",
            err=True,
        )


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


#: Runs shorter than this show no progress bar at all.
PROGRESS_AFTER_SECONDS = 1.0


def progress_bar(quiet: bool, label: str) -> tuple[Progress | None, Callable[[], None]]:
    """A click progress bar on stderr (images, input bytes and rate) for runs that last
    over ``PROGRESS_AFTER_SECONDS``; none without a terminal or with --quiet."""
    if quiet or not sys.stderr.isatty():
        return None, lambda: None
    state: dict[str, Any] = {"start": time.monotonic(), "images": 0, "bytes": 0}

    def throughput(done: int | None) -> str:
        seconds = time.monotonic() - state["start"]
        rate = f" at {format_bytes(done / seconds)}/s" if done and seconds > 0 else ""
        return f"{format_bytes(done or 0)}{rate}"

    def advance(images: int, total: int, nbytes: int) -> None:
        state["images"] += images
        state["bytes"] += nbytes
        if "bar" in state:
            state["bar"].update(images, state["bytes"])
        elif time.monotonic() - state["start"] >= PROGRESS_AFTER_SECONDS:
            state["bar"] = click.progressbar(
                length=total,
                label=f"{label} (images)",
                file=sys.stderr,
                show_pos=True,
                item_show_func=throughput,
            )
            state["bar"].__enter__()
            state["bar"].update(state["images"], state["bytes"])

    def close() -> None:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)

    return advance, close


def format_bytes(count: float) -> str:
    """``1536`` → ``1.5 KiB``: binary units, three significant digits."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            break
        count /= 1024
    return f"{count:.0f} {unit}" if unit == "B" else f"{count:.3g} {unit}"


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


from pixscale.cli import conversion, inspection  # noqa: E402  (registers the commands)

__all__ = ["conversion", "inspection", "main"]
