"""uint8 and uint16 ``.npy`` files, read one window at a time (never loaded or mapped
whole)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pixscale.core.layouts import default_layout
from pixscale.core.location import Location, open_bytes
from pixscale.core.pixels import native, require_source_dtype
from pixscale.core.rawio import check_size, read_chunked, read_npy_header
from pixscale.errors import InputError
from pixscale.sources.base import Source, UInt8Array, check_labels_size


def require_labels(path: Location, shape: tuple[int, ...], dtype: np.dtype, expected: int) -> None:
    """Refuse, from its header alone, a labels array that is not ``expected`` integers.

    Object arrays (pickles) are refused here, never loaded.
    """
    if len(shape) != 1 or dtype.kind not in "iu" or dtype.hasobject:
        raise InputError(f"{path}: labels must be a 1-D integer array, got {dtype}{tuple(shape)}")
    if shape[0] != expected:
        raise InputError(f"{path}: {shape[0]} labels for {expected} images")
    check_labels_size(path, expected, dtype.itemsize)


def require_pixels(path: Location, dtype: np.dtype) -> str:
    """``"uint8"`` or ``"uint16"`` for an array of those (either byte order), or an error."""
    return require_source_dtype(path, dtype)


@dataclass
class NpySource(Source):
    """A C-ordered uint8 or uint16 array in a .npy file."""

    random_access: ClassVar[bool] = True

    data_offset: int = 0
    #: The dtype as stored (``>u2`` is read, then swapped to native order).
    stored: str = "|u1"

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.window(0, self.n_images, max_images)

    def read_window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        """Images ``start``…``stop - 1``; a window that reaches the last image also requires
        the file to end there."""
        path = self.files[0]
        stored = np.dtype(self.stored)
        ends = stop == self.n_images
        with open_bytes(path) as handle:
            handle.seek(self.data_offset + start * self.image_bytes)
            chunks = read_chunked(
                handle, path, stop - start, self.image_shape, max_images, stored, ends
            )
            for chunk in chunks:
                yield native(chunk, self.dtype)


def open_npy(path: Location) -> NpySource:
    with open_bytes(path) as handle:
        shape, fortran_order, dtype = read_npy_header(handle, path)
        offset = handle.tell()
    pixels = require_pixels(path, dtype)
    if fortran_order:
        raise InputError(f"{path}: Fortran-ordered arrays are not supported; save a C-ordered copy")
    if len(shape) < 2:
        raise InputError(f"{path}: array has shape {shape}; expected images along the first axis")
    check_size(path, offset + math.prod(shape) * dtype.itemsize)
    return NpySource(
        name=path.name,
        format="npy",
        shape=tuple(shape),
        layout=default_layout(len(shape)),
        files=(path,),
        data_offset=offset,
        stored=dtype.str,
        dtype=pixels,
    )
