"""Standard input as a source: spooled to a temporary file so it can be read twice."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

#: Name that stands for standard input on the command line and in the record.
STDIN = "-"


@contextmanager
def spooled(stream: BinaryIO) -> Iterator[Path]:
    """Copy ``stream`` to a private temporary file (fitting needs two passes, sha256 one)."""
    with tempfile.TemporaryDirectory(prefix="pixscale-stdin-") as folder:
        path = Path(folder) / "stdin"
        with path.open("wb") as handle:
            shutil.copyfileobj(stream, handle, 1 << 20)
        yield path
