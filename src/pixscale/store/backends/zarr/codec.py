"""Encoding ``images`` chunks as the Zarr ``gzip`` codec stores them, reproducibly."""

from __future__ import annotations

import gzip
import io
from typing import Any

import numpy as np
import numpy.typing as npt


def gzip_chunk(values: npt.NDArray[Any], level: int) -> bytes:
    """The stored bytes of one chunk under the codecs ``bytes`` (little-endian) and
    ``gzip`` (``level``): what zarr-python (numcodecs' ``GZip``) writes, except that the
    gzip header's MTIME is 0, not the time of writing, so that equal chunks are equal
    bytes. Readers ignore MTIME: they decode the same values."""
    data = np.ascontiguousarray(values, values.dtype.newbyteorder("<"))
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=level, mtime=0) as compressor:
        compressor.write(data.data.cast("B"))
    return buffer.getvalue()
