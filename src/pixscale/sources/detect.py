"""Recognise an input's format by its content, not its name, and open it."""

from __future__ import annotations

import stat

import numpy as np
import numpy.typing as npt

from pixscale.core.formats import HDF5_SIGNATURE, NPY_MAGIC
from pixscale.core.location import (
    Location,
    is_remote,
    open_bytes,
    size_of,
    storage_errors,
)
from pixscale.core.rawio import (
    GZIP_MAGIC,
    check_size,
    is_gzip,
    open_maybe_gzip,
    read_images,
    read_npy_header,
)
from pixscale.errors import InputError
from pixscale.sources.archive import open_tar_images, open_zip_images, tar_kind, zip_kind
from pixscale.sources.base import Source, check_images
from pixscale.sources.cifar import looks_like_pickle, open_cifar
from pixscale.sources.cifar_python import open_cifar_archive, open_cifar_batch
from pixscale.sources.folder import open_folder
from pixscale.sources.hdf5 import open_hdf5
from pixscale.sources.idx import looks_like_idx, open_idx, read_idx_array
from pixscale.sources.npy import open_npy, require_labels
from pixscale.sources.npz import ZIP_MAGIC, open_npz
from pixscale.sources.parquet import looks_like_parquet, open_parquet
from pixscale.sources.resize import Resize
from pixscale.sources.webdataset import open_webdataset
from pixscale.sources.zarr import looks_like_zarr, looks_like_zarr_v2, open_zarr, refuse_zarr_v2

FORMAT_NAMES = (
    "IDX, .npy, .npz, HDF5, Zarr v3, CIFAR (.bin, pickled batches or their .tar.gz), "
    "Parquet, a .zip or .tar of images, WebDataset shards or an image folder"
)
#: Where a tar header says "ustar" (POSIX and GNU tar alike).
TAR_MAGIC_AT = 257
#: Formats whose ``--key`` picks an array, a dataset, archive members or a column.
KEYED = (
    "npz",
    "hdf5",
    "zarr",
    "cifar-archive",
    "parquet",
    "image-zip",
    "image-tar",
    "webdataset",
)
#: Formats of encoded images, which ``--mode`` applies to.
IMAGE_FORMATS = ("folder", "parquet", "image-zip", "image-tar", "webdataset")


def sniff(path: Location, key: str | None = None) -> str:
    """Name the format of ``path`` from its first bytes (after gunzip); an archive's from
    the first bytes of its members. ``key`` says which members to read where an archive
    holds two kinds (``zip_kind``, ``tar_kind``)."""
    kind = file_kind(path)
    if kind == "folder":
        if looks_like_zarr_v2(path) and not looks_like_zarr(path):
            raise refuse_zarr_v2(path)
        return "zarr" if looks_like_zarr(path) else kind
    if size_of(path) == 0:
        raise InputError(f"{path}: file is empty")
    try:
        with open_bytes(path) as raw:
            head = raw.read(TAR_MAGIC_AT + 8)
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from exc
    if head.startswith(HDF5_SIGNATURE):
        return "hdf5"
    if head.startswith(ZIP_MAGIC):
        return zip_kind(path, key)
    if looks_like_parquet(head):
        return "parquet"
    if head.startswith(GZIP_MAGIC):
        with open_maybe_gzip(path) as handle:
            head = handle.read(TAR_MAGIC_AT + 8)
        if head.startswith(NPY_MAGIC):
            raise InputError(f"{path}: is a gzip-compressed .npy; gunzip it first")
    if head.startswith(NPY_MAGIC):
        return "npy"
    if looks_like_idx(head):
        return "idx"
    if head[TAR_MAGIC_AT : TAR_MAGIC_AT + 5] == b"ustar":
        return tar_kind(path, key)
    if looks_like_pickle(head):
        return "cifar-python"
    if path.suffix.lower() == ".bin":
        return "cifar"
    raise InputError(f"{path}: unknown format (expected {FORMAT_NAMES})")


def file_kind(path: Location) -> str:
    """``folder`` or ``file``; anything else (a FIFO, a device, a socket) is refused, since
    reading it could block or never end. Symbolic links count as what they point to. On an
    object store, a prefix is a folder."""
    if is_remote(path):
        return remote_kind(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from exc
    if stat.S_ISDIR(mode):
        return "folder"
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular file ({special_kind(mode)})")
    return "file"


def remote_kind(location: Location) -> str:
    """``folder`` (a prefix holding objects) or ``file`` (an object) on an object store."""
    with storage_errors(location):
        found = location.fs.info(location.path)  # type: ignore[union-attr]
    return "folder" if found.get("type") == "directory" else "file"


def special_kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


def open_one(
    path: Location,
    key: str | None = None,
    mode: str | None = None,
    resize: Resize | None = None,
    labels: str | None = None,
) -> Source:
    """Open one input of any format, refusing images that are empty or over the size limit.
    ``labels`` names the label column of a Parquet input (``none``: no labels)."""
    source = open_format(path, key, mode, resize, labels)
    check_images(path, source.shape)
    return source


def open_format(
    path: Location,
    key: str | None,
    mode: str | None,
    resize: Resize | None = None,
    labels: str | None = None,
) -> Source:
    fmt = sniff(path, key)
    if key is not None and fmt not in KEYED:
        raise InputError(
            f"{path}: --key applies to .npz, HDF5, Zarr, Parquet and archive inputs, this is {fmt}"
        )
    if mode is not None and fmt not in IMAGE_FORMATS:
        raise InputError(
            f"{path}: --mode applies to images (folders, archives, Parquet), this is {fmt}"
        )
    if resize is not None and fmt not in IMAGE_FORMATS:
        raise InputError(
            f"{path}: --resize applies to images (folders, archives, Parquet), this is {fmt}"
        )
    if fmt == "npy":
        return open_npy(path)
    if fmt == "npz":
        return open_npz(path, key)
    if fmt == "hdf5":
        return open_hdf5(path, key)
    if fmt == "folder":
        return open_folder(path, mode, resize)
    if fmt == "cifar":
        return open_cifar(path)
    if fmt == "zarr":
        return open_zarr(path, key)
    if fmt == "cifar-archive":
        return open_cifar_archive(path, key)
    if fmt == "cifar-python":
        return open_cifar_batch(path)
    if fmt == "parquet":
        return open_parquet(path, key, mode, resize, labels)
    if fmt == "image-zip":
        return open_zip_images(path, key, mode, resize)
    if fmt == "image-tar":
        return open_tar_images(path, key, mode, resize)
    if fmt == "webdataset":
        return open_webdataset(path, key, mode, resize)
    return open_idx(path)


def read_labels(path: Location, expected: int) -> npt.NDArray[np.integer]:
    """Read a 1-D integer labels array of ``expected`` entries from an IDX or .npy file.

    The count is checked against the header before anything is allocated.
    """
    fmt = sniff(path)
    if fmt == "idx":
        return read_idx_array(path, expected)
    if fmt != "npy" or is_gzip(path):
        raise InputError(f"{path}: labels must be an IDX or .npy file, this is {fmt}")
    with open_bytes(path) as handle:
        shape, _, dtype = read_npy_header(handle, path)
        require_labels(path, shape, dtype, expected)
        check_size(path, handle.tell() + expected * dtype.itemsize)
        values: npt.NDArray[np.integer] = read_images(handle, path, expected, (), dtype)
    return values
