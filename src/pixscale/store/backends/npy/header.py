"""The bytes of .npy files: headers padded for direct writes, and deterministic .npz."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from pixscale.store.io.direct import ALIGN

NPY_PREAMBLE = b"\x93NUMPY\x01\x00"


def write_npz(path: Path, arrays: dict[str, npt.NDArray[Any]]) -> None:
    """Like ``np.savez`` but with fixed zip timestamps, so equal inputs give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, values in sorted(arrays.items()):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(values), allow_pickle=False)


def write_npy_header(handle: BinaryIO, shape: tuple[int, ...], descr: str = "<f4") -> None:
    header: dict[str, Any] = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_2_0(handle, header)


def padded_npy_header(shape: tuple[int, ...], size: int = ALIGN, descr: str = "<f4") -> bytes:
    """A version 1.0 .npy header (float32 unless ``descr`` says) padded to ``size`` bytes.

    The data then starts on a page boundary, which direct writes need and memory-mapped
    readers like; numpy itself pads to 64 bytes the same way.
    """
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    text = buffer.getvalue()[len(NPY_PREAMBLE) + 2 :].rstrip(b" \n")
    total = -(-(len(NPY_PREAMBLE) + 2 + len(text) + 1) // size) * size
    length = total - len(NPY_PREAMBLE) - 2
    return NPY_PREAMBLE + struct.pack("<H", length) + text.ljust(length - 1) + b"\n"
