"""Recognise an input's format by its content, not its name, and open it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from pixscale.errors import InputError
from pixscale.sources.base import Source
from pixscale.sources.cifar import looks_like_pickle, open_cifar
from pixscale.sources.folder import open_folder
from pixscale.sources.hdf5 import open_hdf5
from pixscale.sources.idx import looks_like_idx, open_idx, read_idx_array
from pixscale.sources.npy import open_npy, read_npy_header
from pixscale.sources.npz import ZIP_MAGIC, open_npz
from pixscale.sources.rawio import (
    GZIP_MAGIC,
    check_size,
    is_gzip,
    open_maybe_gzip,
    read_images,
)
from pixscale.store.naming import HDF5_SIGNATURE, NPY_MAGIC

FORMAT_NAMES = "IDX, .npy, .npz, HDF5, CIFAR .bin or an image folder"


def sniff(path: Path) -> str:
    """Name the format of ``path`` from its first bytes (after gunzip)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        return "folder"
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    with path.open("rb") as raw:
        head = raw.read(8)
    if head.startswith(HDF5_SIGNATURE):
        return "hdf5"
    if head.startswith(ZIP_MAGIC):
        return "npz"
    if head.startswith(GZIP_MAGIC):
        with open_maybe_gzip(path) as handle:
            head = handle.read(8)
    if head.startswith(NPY_MAGIC):
        return "npy"
    if looks_like_idx(head):
        return "idx"
    if looks_like_pickle(head):
        raise InputError(
            f"{path}: is a Python pickle; pickles are not loaded because unpickling runs "
            "arbitrary code (for CIFAR, use the binary version: data_batch_N.bin)"
        )
    if path.suffix.lower() == ".bin":
        return "cifar"
    raise InputError(f"{path}: unknown format (expected {FORMAT_NAMES})")


def open_one(path: Path, key: str | None = None, mode: str | None = None) -> Source:
    fmt = sniff(path)
    if key is not None and fmt not in ("npz", "hdf5"):
        raise InputError(f"{path}: --key applies to .npz and HDF5 inputs, this is {fmt}")
    if mode is not None and fmt != "folder":
        raise InputError(f"{path}: --mode applies to image folders, this is {fmt}")
    if fmt == "npy":
        return open_npy(path)
    if fmt == "npz":
        return open_npz(path, key)
    if fmt == "hdf5":
        return open_hdf5(path, key)
    if fmt == "folder":
        return open_folder(path, mode)
    if fmt == "cifar":
        return open_cifar(path)
    return open_idx(path)


def read_labels(path: Path, expected: int) -> npt.NDArray[np.integer]:
    """Read a 1-D integer labels array of ``expected`` entries from an IDX or .npy file.

    The count is checked against the header before anything is allocated.
    """
    fmt = sniff(path)
    if fmt == "idx":
        return read_idx_array(path, expected)
    if fmt != "npy" or is_gzip(path):
        raise InputError(f"{path}: labels must be an IDX or .npy file, this is {fmt}")
    with path.open("rb") as handle:
        shape, fortran, dtype = read_npy_header(handle, path)
        if len(shape) != 1 or dtype.kind not in "iu" or dtype.hasobject:
            raise InputError(
                f"{path}: labels must be a 1-D integer array, got {dtype}{tuple(shape)}"
            )
        if shape[0] != expected:
            raise InputError(f"{path}: {shape[0]} labels for {expected} images")
        check_size(path, handle.tell() + expected * dtype.itemsize)
        values: npt.NDArray[np.integer] = read_images(handle, path, expected, (), dtype)
    return values
