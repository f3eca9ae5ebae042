"""Refuse up front an output that the disk or the file-size limit cannot hold."""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
from pathlib import Path

from pixscale.core.location import Location, is_remote
from pixscale.errors import OutputError

#: Room kept for headers, HDF5 metadata, sidecars and labels beyond the data bytes.
SLACK_BYTES = 1 << 20


def check_room(target: Location, data_bytes: int) -> None:
    """Fail before writing when ``data_bytes`` cannot fit beside ``target`` (for a URL: in
    the temporary folder its upload is staged in)."""
    needed = data_bytes + SLACK_BYTES
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and needed > soft:
        raise OutputError(
            f"{target}: needs about {needed:,} bytes but the file-size limit is {soft:,}"
        )
    folder = Path(tempfile.gettempdir()) if is_remote(target) else target.parent
    free = shutil.disk_usage(folder if str(folder) else Path(os.curdir)).free
    if needed > free:
        raise OutputError(f"{target}: needs about {needed:,} bytes but only {free:,} are free")
