"""MNIST-style IDX files, raw or gzip, recognised by their magic number."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from pixscale.core.layouts import default_layout
from pixscale.core.location import Location
from pixscale.core.rawio import (
    check_end,
    check_size,
    open_maybe_gzip,
    read_chunked,
    read_exact,
    read_images,
)
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array, check_labels_size

IDX_DTYPES = {
    0x08: "uint8",
    0x09: "int8",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}


def looks_like_idx(head: bytes) -> bool:
    """True when the first four (decompressed) bytes are an IDX magic number."""
    return len(head) >= 4 and head[:2] == b"\0\0" and head[2] in IDX_DTYPES and 1 <= head[3] <= 8


def read_idx_header(handle: BinaryIO, path: Location) -> tuple[int, ...]:
    """Parse the header and return the array shape; the dtype must be uint8."""
    magic = read_exact(handle, 4, path, "IDX magic number")
    if not looks_like_idx(magic):
        raise InputError(f"{path}: not an IDX file (magic number 0x{magic.hex()})")
    if magic[2] != 0x08:
        raise InputError(f"{path}: IDX data type is {IDX_DTYPES[magic[2]]}, expected uint8")
    ndim = magic[3]
    return struct.unpack(f">{ndim}I", read_exact(handle, 4 * ndim, path, "IDX dimensions"))


def read_idx_array(path: Location, expected: int) -> np.ndarray:
    """Read a labels IDX file of ``expected`` entries; the count is checked first."""
    with open_maybe_gzip(path) as handle:
        shape = read_idx_header(handle, path)
        if len(shape) != 1:
            raise InputError(f"{path}: labels must be 1-D, this IDX array has shape {shape}")
        if shape[0] != expected:
            raise InputError(f"{path}: {shape[0]} labels for {expected} images")
        check_labels_size(path, expected, 1)
        check_size(path, 4 + 4 * len(shape) + math.prod(shape))
        values: np.ndarray = read_images(handle, path, shape[0], tuple(shape[1:]))
        check_end(handle, path)
        return values


_IMAGES_NAME = re.compile(r"images([-.])idx(\d)")


def sibling_labels(path: Location) -> Location | None:
    """``train-images-idx3-ubyte.gz`` → ``train-labels-idx1-ubyte.gz`` when that file exists."""
    candidate = path.with_name(_IMAGES_NAME.sub(r"labels\g<1>idx1", path.name, count=1))
    return candidate if candidate != path and candidate.is_file() else None


@dataclass
class IdxSource(Source):
    """An IDX file: uint8 array of any dimension, first axis = images."""

    header_size: int = 0

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        """The images in chunks; the file must end with the last (see ``read_chunked``)."""
        path = self.files[0]
        with open_maybe_gzip(path) as handle:
            read_exact(handle, self.header_size, path, "IDX header")
            yield from read_chunked(handle, path, self.n_images, self.image_shape, max_images)


def open_idx(path: Location) -> IdxSource:
    """Open an IDX image file; labels come from the sibling labels file when present."""
    with open_maybe_gzip(path) as handle:
        shape = read_idx_header(handle, path)
    if len(shape) < 2:
        raise InputError(f"{path}: IDX file holds a 1-D array (labels?), not images")
    check_size(path, 4 + 4 * len(shape) + math.prod(shape))
    source = IdxSource(
        name=path.name,
        format="idx",
        shape=tuple(shape),
        layout=default_layout(len(shape)),
        files=(path,),
        header_size=4 + 4 * len(shape),
    )
    labels_file = sibling_labels(path)
    if labels_file is not None:
        source.labels = Labels(
            read_idx_array(labels_file, shape[0]), labels_file.name, path=labels_file
        )
    return source
