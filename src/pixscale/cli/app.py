"""The ``pixscale`` command group; each command lives in its own module."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import click

from pixscale._version import __version__
from pixscale.cli.errors import RECEIVED, Terminated
from pixscale.store.io.atomic import COMMITTING, INTERRUPTED, PLACED

#: Loggers silenced unless --debug: the storage libraries', whose failures come back as the
#: one error line, and imagecodecs', whose libpng warnings are about PNGs decoded anyway.
QUIET_LOGGERS = (
    *("fsspec", "s3fs", "gcsfs", "adlfs", "aiobotocore", "botocore", "azure"),
    "imagecodecs",
)
#: The signals that end a terminal session or a job: all three stop a run alike.
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def on_signal(signum: int, frame: object) -> None:
    """A stopping signal unwinds, so temporary outputs are removed; the flag stops the
    commit even where Python swallows the exception (inside a finalizer). While a commit
    places its outputs, the signal only sets the flag: the commit finishes placing, then
    stops the run itself."""
    INTERRUPTED.set()
    RECEIVED["signal"] = signum
    if COMMITTING.is_set():
        return
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


def quiet_unraisable(unraisable: Any) -> None:
    """A signal's exception raised inside a finalizer is swallowed by Python, which would print
    its traceback; ``INTERRUPTED`` carries it to the commit instead, so say nothing here."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


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
    INTERRUPTED.clear()
    PLACED.clear()
    sys.unraisablehook = quiet_unraisable
    for number in STOPPING_SIGNALS:
        signal.signal(number, on_signal)
    # Past a file-size limit, fail the write with EFBIG (a clean error) instead of dying.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if not debug:  # their failures come back as the one error line; their notes are noise
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
