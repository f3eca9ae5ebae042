"""Running ``pixscale`` from the tests, in-process or as a real process.

- ``invoke`` runs ``pixscale.cli.main`` in-process with click's CliRunner (stdout and stderr
  kept apart) and checks nothing; ``run_cli`` does the same and asserts that no Python
  traceback reached the user; ``fails_with`` asserts a clean failure: exit code 1 and one
  ``Error: …`` line on stderr giving the expected reason.
- ``run_process`` runs the installed ``pixscale`` as a child process, for what needs a real
  one (signals, resource limits, stdin pipes, a dask cluster); ``start_process`` starts it
  without waiting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from click.testing import CliRunner, Result

from pixscale.cli import main

TRACEBACK = "Traceback (most recent call last)"

CliInput = str | bytes | IO[Any] | None


def pixscale_command() -> list[str]:
    """The installed entry point beside this interpreter, else ``python -m pixscale``."""
    script = Path(sys.executable).parent / "pixscale"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "pixscale"]


#: The command that starts ``pixscale`` as a process.
PIXSCALE = pixscale_command()


def invoke(args: Sequence[object], input: CliInput = None) -> Result:
    """Run ``pixscale ARGS`` in-process and return click's result, unchecked."""
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def describe(result: Result) -> str:
    """Exit code, exception and stderr of a run, for assertion messages."""
    return (
        f"exit code {result.exit_code}, exception {result.exception!r}, "
        f"stderr {result.stderr[-3000:]!r}"
    )


def run_cli(*args: object, input: CliInput = None) -> Result:
    """Run ``pixscale ARGS`` in-process; assert that it ended without a Python traceback.

    Parameters
    ----------
    *args
        Command-line arguments; each is passed through ``str``.
    input
        What the command reads on standard input.

    Returns
    -------
    click.testing.Result
        ``exit_code``, ``stdout``, ``stdout_bytes`` and ``stderr`` of the run.
    """
    result = invoke(args, input)
    detail = describe(result)
    assert result.exception is None or isinstance(result.exception, SystemExit), detail
    assert TRACEBACK not in result.output, detail
    return result


def fails_with(
    args: Sequence[object], phrase: str, *, names: Sequence[object] = (), input: CliInput = None
) -> Result:
    """Run ``pixscale ARGS`` and assert a clean failure giving ``phrase``.

    A clean failure: exit code 1, no traceback, and exactly one line on stderr, starting with
    ``Error: `` and containing ``phrase`` and every one of ``names``.

    Returns
    -------
    click.testing.Result
        The failed run.
    """
    result = run_cli(*args, input=input)
    detail = describe(result)
    assert result.exit_code == 1, detail
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), detail
    assert phrase in lines[0], f"the error does not say {phrase!r}: {detail}"
    for name in names:
        assert str(name) in lines[0], f"the error does not name {name}: {detail}"
    return result


def start_process(args: Sequence[object], **options: Any) -> subprocess.Popen[str]:
    """Start ``pixscale ARGS`` as a child process with text stdout and stderr piped.

    ``options`` go to ``subprocess.Popen`` (``stdin``, ``env``, ``preexec_fn``, …).
    """
    options.setdefault("stdout", subprocess.PIPE)
    options.setdefault("stderr", subprocess.PIPE)
    options.setdefault("text", True)
    return subprocess.Popen([*PIXSCALE, *map(str, args)], **options)


def run_process(
    args: Sequence[object], *, timeout: float = 300, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``pixscale ARGS`` as a child process to completion; assert no traceback.

    ``options`` go to ``subprocess.run`` (``stdin``, ``env``, ``preexec_fn``, ``text``, …);
    output is captured, as text unless ``text=False``.
    """
    options.setdefault("text", True)
    done = subprocess.run(
        [*PIXSCALE, *map(str, args)],
        capture_output=True,
        timeout=timeout,
        check=False,
        **options,
    )
    stderr = done.stderr if isinstance(done.stderr, str) else done.stderr.decode("utf-8", "replace")
    assert TRACEBACK not in stderr, stderr[-3000:]
    return done


def assert_one_error_line(done: subprocess.CompletedProcess[str], phrase: str) -> str:
    """Exit code 1 and one ``Error: …`` line on stderr containing ``phrase``; returns it."""
    detail = f"exit code {done.returncode}, stderr {done.stderr[-3000:]!r}"
    assert done.returncode == 1, detail
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), detail
    assert phrase in lines[0], f"the error does not say {phrase!r}: {detail}"
    return lines[0]
