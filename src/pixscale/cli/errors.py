"""Library errors and warnings as the command line shows them: one line on stderr."""

from __future__ import annotations

import functools
import os
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pixscale.core.location import shown, storage_exceptions, storage_reason
from pixscale.errors import PixscaleError, PixscaleWarning
from pixscale.store.io.atomic import INTERRUPTED, PLACED

F = TypeVar("F", bound=Callable[..., Any])


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, unwinding like Ctrl-C so that temporary outputs are removed."""


#: The signal that stopped the run, for the exit status (128 + its number, as shells
#: report it) when its exception surfaces later, e.g. from the commit.
RECEIVED = {"signal": int(signal.SIGINT)}


def one_line(message: str) -> str:
    """``message`` on one line: line breaks (in file names, say) shown as ``\\n``."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def echo_warning(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
    """Show a library warning as one ``Warning: …`` line on stderr."""
    click.echo(f"Warning: {one_line(str(message))}", err=True)


def reported() -> tuple[type[BaseException], ...]:
    """Library errors and the storage libraries' own: reported on one line."""
    return (PixscaleError, *storage_exceptions())


def reports_errors(command: F) -> F:
    """Library errors become ``Error: …`` and exit 1, library warnings ``Warning: …``;
    ``--debug`` shows the traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", PixscaleWarning)
                warnings.showwarning = echo_warning
                return command(*args, **kwargs)
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, as shell tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(141) from None
        except KeyboardInterrupt as exc:
            if debug:
                raise
            default = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
            number = RECEIVED["signal"] if INTERRUPTED.is_set() else int(default)
            what = "interrupted" if number == signal.SIGINT else "terminated"
            if PLACED:
                placed = ", ".join(str(p) for p in PLACED)
                click.echo(f"Error: {what} after {one_line(placed)} was written whole", err=True)
            else:
                click.echo(f"Error: {what}; no output was written", err=True)
            raise click.exceptions.Exit(128 + number) from None
        except reported() as exc:
            if debug:
                raise
            message = str(exc) if isinstance(exc, PixscaleError) else describe_os_error(exc)
            raise click.ClickException(one_line(message)) from exc

    return wrapper  # type: ignore[return-value]


def describe_os_error(exc: BaseException) -> str:
    """An ``OSError`` (or a storage library's error) as ``file: reason``."""
    filename = getattr(exc, "filename", None)
    where = f"{shown(filename)}: " if filename else ""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{where}{exc.strerror}"
    if isinstance(exc, OSError) and type(exc) is OSError:
        return f"{where}{exc}"
    return f"{where}{storage_reason(exc)}"
