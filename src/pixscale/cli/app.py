"""The ``pixscale`` command group; each command lives in its own module."""

from __future__ import annotations

import signal

import click

from pixscale._version import __version__
from pixscale.cli.errors import Terminated


def on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary outputs are removed."""
    raise Terminated


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
