"""Telling a Zarr v3 store, and a pixscale Zarr output, apart (without importing zarr)."""

from __future__ import annotations

import re

from pixscale.core.formats import RECORD_ATTRIBUTE
from pixscale.core.location import Location

#: The metadata document of every Zarr v3 node.
ZARR_JSON = "zarr.json"
#: Keys a pixscale store holds, relative to its prefix: the group's metadata, ``images``
#: (``c.<i>.0…`` keys), ``labels`` (zarr-python's ``c/<i>``) and the parameter arrays under
#: ``params/``; nothing else is pixscale's to remove.
OWN_KEY = re.compile(
    r"^(?:zarr\.json"
    r"|images/(?:zarr\.json|c(?:[./]\d+)+)"
    r"|labels/(?:zarr\.json|c(?:[./]\d+)+)"
    r"|params/zarr\.json"
    r"|params/[A-Za-z_]\w*/(?:zarr\.json|c(?:[./]\d+)*))$"
)


def is_zarr_store(path: Location) -> bool:
    """True for a folder holding a Zarr v3 ``zarr.json`` (a group or an array)."""
    return path.is_dir() and (path / ZARR_JSON).is_file()


def is_zarr_output(path: Location) -> bool:
    """True for a Zarr store with a pixscale record in its attributes (no zarr import)."""
    if not is_zarr_store(path):
        return False
    try:
        import json

        meta = json.loads((path / ZARR_JSON).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and RECORD_ATTRIBUTE in (meta.get("attributes") or {})
