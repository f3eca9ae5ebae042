"""Telling a Zarr v3 store, and a pixscale Zarr output, apart (without importing zarr)."""

from __future__ import annotations

from pixscale.core.formats import RECORD_ATTRIBUTE
from pixscale.core.location import Location

#: The metadata document of every Zarr v3 node.
ZARR_JSON = "zarr.json"


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
