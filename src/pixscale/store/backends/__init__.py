"""The registry of output formats: a path or ``--format`` to its ``Backend``.

To add a format, write ``store/backends/<name>/`` (or one module ``<name>.py``) with a
``Backend`` subclass (see ``base.py``: names, target policy, writers, record and reading)
and add one line to ``BACKENDS`` below; ``--format``, ``--compression`` and every command
pick it up. Each format here is a package: ``backend.py`` (the ``Backend``), ``writer.py``
(the float writer and its storage variants), ``pixels.py`` (source pixels, for ``invert``),
and modules for its record and reading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pixscale.core.location import Location
from pixscale.errors import OutputError
from pixscale.store.backends.base import Backend
from pixscale.store.backends.hdf5 import Hdf5Backend
from pixscale.store.backends.npy import NpyBackend
from pixscale.store.backends.zarr import ZarrBackend
from pixscale.store.naming import uint8_format

if TYPE_CHECKING:
    from pixscale.store.io.atomic import StagedOutputs
    from pixscale.store.pixels import PixelWriter

BACKENDS: dict[str, Backend] = {
    backend.name: backend for backend in (Hdf5Backend(), NpyBackend(), ZarrBackend())
}
#: ``--format`` choices.
FORMATS = tuple(BACKENDS)
#: ``--compression`` choices of any format (each backend refuses those it lacks).
COMPRESSIONS = tuple(dict.fromkeys(c for b in BACKENDS.values() for c in b.compressions))


def backend_named(path: Location, fmt: str | None = None) -> Backend:
    """The backend an output at ``path`` is written with: ``fmt`` (``--format``) when
    given, else the one whose suffix ``path`` has."""
    if fmt is not None:
        if fmt not in BACKENDS:
            raise OutputError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")
        return BACKENDS[fmt]
    suffix = path.suffix.lower()
    for backend in BACKENDS.values():
        if suffix in backend.suffixes:
            return backend
    endings = ", ".join(s for b in BACKENDS.values() for s in b.suffixes)
    raise OutputError(
        f"{path}: cannot tell the output format from the extension; use {endings}, "
        f"or --format {'|'.join(FORMATS)}"
    )


def backend_of(path: Location) -> Backend | None:
    """The backend of an existing output, by what ``path`` holds; None for anything else."""
    for backend in BACKENDS.values():
        if backend.holds(path):
            return backend
    return None


def all_companions(path: Location) -> list[Location]:
    """Every file any format may keep beside an output at ``path``."""
    return [c for backend in BACKENDS.values() for c in backend.companions(path)]


def open_pixel_writer(
    target: Location, shape: tuple[int, ...], staged: StagedOutputs, dtype: str = "uint8"
) -> PixelWriter:
    """The writer of source pixels (``"uint8"`` or ``"uint16"``) that ``invert`` writes to
    ``target``: .npy or HDF5 by its backend, or IDX (``…-idx3-ubyte[.gz]``; uint8 only).

    Raises
    ------
    OutputError
        For a name of no such format, or a dtype the format cannot hold.
    """
    fmt = uint8_format(target)
    if fmt == "idx":
        from pixscale.store.idx import IdxWriter

        return IdxWriter(target, shape, staged, dtype)
    return BACKENDS[fmt].open_pixel_writer(target, shape, staged, dtype)


__all__ = [
    "BACKENDS",
    "COMPRESSIONS",
    "FORMATS",
    "Backend",
    "all_companions",
    "backend_named",
    "open_pixel_writer",
]
