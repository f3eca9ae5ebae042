"""Where and how an output is written (float32, float16 or packed uint8), and the one
place that picks its writer."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pixscale.core.location import Location, is_remote, locate, shown
from pixscale.core.storage import DTYPES, STORES
from pixscale.errors import OutputError
from pixscale.store.backends import BACKENDS, COMPRESSIONS, Backend, backend_named
from pixscale.store.backends.npy.writer import StreamNpyWriter
from pixscale.store.base import Writer
from pixscale.store.io.atomic import StagedOutputs
from pixscale.store.io.direct import IO_MODES, use_direct
from pixscale.store.io.space import check_room
from pixscale.store.naming import STREAM


@dataclass(frozen=True)
class Output:
    """Where and how to write: format (a backend's name), compression, chunking, layout.

    Parameters
    ----------
    path
        The output file; ``"-"`` streams .npy to standard output.
    format
        A backend's name (``pixscale.store.backends.FORMATS``); None takes it from the
        extension.
    overwrite
        Replace an existing output (atomically).
    compression
        ``"none"``, ``"gzip"`` or (HDF5) ``"lzf"``: each format takes its own.
    chunk_images
        Chunk length in images, HDF5 or Zarr (uncompressed HDF5 is contiguous without it).
    layout
        Output layout (``"nhwc"`` or ``"nchw"``); None keeps the input's.
    params_out
        Also write the record to this JSON file (the only record of a stream).
    io
        How .npy and contiguous HDF5 data reach the disk: ``"direct"`` (bypassing the
        page cache), ``"buffered"``, or ``"auto"`` (direct for outputs too large to stay
        in the cache).
    dtype
        ``"float32"`` (default) or ``"float16"``: each value the nearest of that dtype to
        the exact result.
    store
        ``"float"`` (default): the scaled values; ``"uint8"``: the original pixels packed
        with CF ``scale_factor``/``add_offset`` that decode them exactly to float32.
    """

    path: Location
    format: str | None = None
    overwrite: bool = False
    compression: str = "none"
    chunk_images: int | None = None
    layout: str | None = None
    params_out: Location | None = None
    io: str = "auto"
    dtype: str = "float32"
    store: str = "float"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", locate(self.path, error=OutputError))
        if self.params_out is not None:
            object.__setattr__(self, "params_out", locate(self.params_out, error=OutputError))
        if self.compression not in COMPRESSIONS:
            raise OutputError(f"unknown compression {self.compression!r}; choose {COMPRESSIONS}")
        if self.io not in IO_MODES:
            raise OutputError(f"unknown io mode {self.io!r}; choose from {IO_MODES}")
        if self.dtype not in DTYPES:
            raise OutputError(f"unknown output dtype {self.dtype!r}; choose from {DTYPES}")
        if self.store not in STORES:
            raise OutputError(f"unknown store {self.store!r}; choose from {STORES}")
        if self.store == "uint8" and self.dtype != "float32":
            raise OutputError("--store uint8 decodes to float32: --dtype does not apply to it")
        if self.store == "uint8" and self.to_stdout:
            raise OutputError("-o -: a packed output needs its record beside it; write a file")
        self.backend.check_options(self)

    @property
    def stored_dtype(self) -> str:
        """The dtype of the data as written: ``<f4``, ``<f2`` or ``|u1`` (packed)."""
        if self.store == "uint8":
            return "|u1"
        return "<f2" if self.dtype == "float16" else "<f4"

    @property
    def item_bytes(self) -> int:
        return int(np.dtype(self.stored_dtype).itemsize)

    @property
    def to_stdout(self) -> bool:
        return str(self.path) == STREAM

    @property
    def backend(self) -> Backend:
        """The output format: ``format`` (``--format``) or the path's suffix; a stream is .npy."""
        if self.to_stdout:
            if self.format not in (None, "npy"):
                named = BACKENDS[self.format].title if self.format in BACKENDS else self.format
                raise OutputError(f"{named} cannot be streamed: it needs a seekable file")
            return BACKENDS["npy"]
        return backend_named(self.path, self.format)

    def targets(self) -> list[Location]:
        """Every file this output may create: the data, its companions, ``params_out``."""
        found = [] if self.to_stdout else [self.path, *self.backend.companions(self.path)]
        if self.params_out is not None:
            found.append(self.params_out)
        return found


def write_mode(output: Output, nbytes: int) -> str:
    """How the output's bytes reach the disk: stream, direct or buffered (page cache)."""
    raw = output.backend.raw(output)
    if output.io == "direct" and (output.to_stdout or not raw):
        raise OutputError(
            f"{output.path}: direct writes need a .npy file or uncompressed, unchunked HDF5"
        )
    if output.to_stdout:
        return "stream"
    if raw and use_direct(output.io, nbytes):
        return "direct"
    return "buffered"


def check_targets(output: Output, staged: StagedOutputs) -> None:
    """Refuse, before any work, targets that collide with each other (however spelled:
    ``../out/./x.npy``, a symlink), an input, a folder, an existing file without
    ``overwrite``, or anything but a regular file; and a missing folder."""
    seen: dict[str, Location] = {}
    for target in output.targets():
        real = shown(target) if is_remote(target) else os.path.realpath(target)
        if real in seen:
            raise OutputError(
                f"{output.params_out}: --params-out names a file the output itself writes "
                f"({seen[real]})"
            )
        seen[real] = target
    for target in output.targets():
        if target == output.path:
            output.backend.check_target(output, staged)  # a file, or a folder store
        else:
            staged.check(target)


def check_before_reading(output: Output, inputs: Iterable[Location]) -> None:
    """Refuse bad targets before any input is read (stdin spooled, a dataset scanned):
    the same checks the run repeats when it opens its writer."""
    check_targets(output, StagedOutputs(output.overwrite, inputs))


def room_needed(output: Output, nbytes: int) -> int:
    """Data bytes to find room for before writing.

    Uncompressed data takes exactly ``nbytes``. Compressed data takes an unknown part of it
    (2–10× less for typical images): checking the raw size would refuse outputs that fit,
    so only the metadata slack is checked and a full disk or file-size limit met while
    writing fails cleanly (nothing is left behind).
    """
    return nbytes if output.compression == "none" else 0


def open_writer(output: Output, shape: tuple[int, ...], staged: StagedOutputs) -> Writer:
    """The writer for ``output``, its targets checked and room for the data confirmed."""
    nbytes = output.item_bytes * math.prod(shape)
    mode = write_mode(output, nbytes)
    check_targets(output, staged)
    dtype = output.stored_dtype
    if output.to_stdout:
        return StreamNpyWriter(sys.stdout.buffer, shape, dtype)
    check_room(output.path, room_needed(output, nbytes))
    return output.backend.open_writer(output, shape, staged, mode == "direct")


__all__ = [
    "Output",
    "check_before_reading",
    "check_targets",
    "open_writer",
    "room_needed",
    "write_mode",
]
