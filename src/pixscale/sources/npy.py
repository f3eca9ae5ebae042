"""uint8 ``.npy`` files, read one window at a time (never loaded or mapped whole)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

import numpy as np

from pixscale.core.layouts import default_layout
from pixscale.errors import InputError
from pixscale.sources.base import Source, UInt8Array
from pixscale.sources.rawio import read_images


def read_npy_header(handle: BinaryIO, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Return (shape, fortran_order, dtype) and leave ``handle`` at the data."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(handle)
        return np.lib.format.read_array_header_2_0(handle)
    except Exception as exc:  # numpy's header parser raises many kinds on damaged input
        raise InputError(f"{path}: not a valid .npy file (damaged header)") from exc


def require_uint8(path: Path, dtype: np.dtype) -> None:
    if dtype != np.uint8:
        raise InputError(f"{path}: array dtype is {dtype}, expected uint8")


@dataclass
class NpySource(Source):
    """A C-ordered uint8 array in a .npy file."""

    random_access: ClassVar[bool] = True

    data_offset: int = 0

    def chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.window(0, self.n_images, max_images)

    def window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        path = self.files[0]
        with path.open("rb") as handle:
            handle.seek(self.data_offset + start * self.image_bytes)
            for first in range(start, stop, max_images):
                count = min(max_images, stop - first)
                yield read_images(handle, path, count, self.image_shape)


def open_npy(path: Path) -> NpySource:
    with path.open("rb") as handle:
        shape, fortran_order, dtype = read_npy_header(handle, path)
        offset = handle.tell()
    require_uint8(path, dtype)
    if fortran_order:
        raise InputError(f"{path}: Fortran-ordered arrays are not supported; save a C-ordered copy")
    if len(shape) < 2:
        raise InputError(f"{path}: array has shape {shape}; expected images along the first axis")
    expected = offset + int(np.prod(shape))
    actual = path.stat().st_size
    if actual < expected:
        raise InputError(f"{path}: truncated: header promises {expected} bytes, file has {actual}")
    return NpySource(
        name=path.name,
        format="npy",
        shape=tuple(shape),
        layout=default_layout(len(shape)),
        files=(path,),
        data_offset=offset,
    )
