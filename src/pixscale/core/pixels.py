"""The source pixel types pixscale reads: uint8, and uint16 with an optional bit depth.

Every reader asks ``source_dtype`` whether an array's dtype is one of them (any byte
order); everything downstream speaks of the dtype by name (``"uint8"``, ``"uint16"``).
A 12-bit camera stores its pixels in uint16 but only uses 0..4095: ``bits`` (``--bits``)
says so, and sets the range the fixed strategies map from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.errors import InputError, ParamsError

#: Source dtypes read, by name.
SOURCE_DTYPES = ("uint8", "uint16")
#: Bits each source dtype holds.
DTYPE_BITS = {"uint8": 8, "uint16": 16}
#: Pillow image modes of single-band 16-bit images (``I`` holds them in int32 and must
#: be checked to lie within 0..65535 before it is cast).
PILLOW_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def source_dtype(dtype: Any) -> str | None:
    """``"uint8"`` or ``"uint16"`` for an unsigned 8- or 16-bit dtype (either byte
    order), None for any other."""
    try:
        found = np.dtype(dtype)
    except TypeError:
        return None
    if found.kind != "u" or found.itemsize not in (1, 2) or found.fields is not None:
        return None
    return "uint8" if found.itemsize == 1 else "uint16"


def require_source_dtype(path: object, dtype: Any, what: str = "array") -> str:
    """The name of ``dtype`` if pixscale reads it.

    Raises
    ------
    InputError
        Naming ``path``, ``what`` it is and the dtype found.
    """
    name = source_dtype(dtype)
    if name is None:
        raise InputError(f"{path}: {what} dtype is {dtype}, expected uint8 or uint16")
    return name


def native(chunk: npt.NDArray[Any], dtype: str) -> npt.NDArray[Any]:
    """``chunk`` as a C-ordered array of the native-order ``dtype`` (a no-op when it is)."""
    return np.ascontiguousarray(chunk, np.dtype(dtype))


def dtype_bits(dtype: str) -> int:
    """Bits of the source dtype ``dtype``."""
    if dtype not in DTYPE_BITS:
        raise ParamsError(f"unknown source dtype {dtype!r}; choose from {SOURCE_DTYPES}")
    return DTYPE_BITS[dtype]


def check_bits(bits: int, dtype: str) -> int:
    """``bits`` if the source dtype ``dtype`` can hold that many.

    Raises
    ------
    ParamsError
        For a bit depth outside 1..16 or beyond the dtype (``--bits 12`` on uint8 data).
    """
    width = dtype_bits(dtype)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ParamsError(f"--bits must be an integer from 1 to 16, not {bits!r}")
    if bits > width:
        raise ParamsError(f"--bits {bits} is more than {dtype} data holds ({width} bits)")
    return bits


def max_value(bits: int) -> int:
    """The largest pixel value of ``bits`` bits."""
    return (1 << bits) - 1


def first_above(chunk: npt.NDArray[Any], limit: int) -> tuple[int, int] | None:
    """(image index within ``chunk``, value) of the first value above ``limit``, or None."""
    flat = chunk.reshape(chunk.shape[0], -1)
    if flat.size == 0 or int(flat.max()) <= limit:
        return None
    position = int(np.argmax(flat.reshape(-1) > limit))
    return position // flat.shape[1], int(flat.reshape(-1)[position])


def above_message(value: int, bits: int, where: str = "") -> str:
    """The error text for a pixel ``value`` beyond ``bits`` bits."""
    return (
        f"value {value}{where} is above the {bits}-bit maximum {max_value(bits)} "
        f"(--bits {bits}); nothing is clipped"
    )


#: Largest image read, in values (pixels × channels): 64 Mi, e.g. 8192×8192 greyscale or
#: 4729×4729 RGB. The statistics keep 18 bytes per value (two uint64 sums, a uint8 minimum
#: and maximum) for each of their threads and once more when merging them, so this bounds
#: them near 3.4 GiB; one image must also fit in a chunk (uint8 in, float32 out).
MAX_IMAGE_VALUES = 1 << 26
