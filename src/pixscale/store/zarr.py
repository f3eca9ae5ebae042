"""float32 Zarr v3 output (and reading it back): a group with ``images``, ``labels``,
parameter arrays under ``params/`` and the record in the group's attributes, as in HDF5.

The store is a folder. It is built under a temporary name beside the target and renamed
into place whole when complete, so a half-written store never carries the final name.

``images`` is chunked along the first axis only. Metadata, labels and parameter arrays go
through zarr-python. Uncompressed ``images`` chunks are written as the Zarr v3 spec stores
them (the ``bytes`` codec, little-endian, C order, a full chunk each, keys ``c/i/0/…``),
straight from pixscale's buffers (``O_DIRECT`` where asked), which is what lets many
processes write their own chunks of one store at disk speed; compressed chunks go through
zarr-python. Either way zarr-python, xarray or TensorStore read the result.
"""

from __future__ import annotations

import ctypes
import errno
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.formats import RECORD_ATTRIBUTE
from pixscale.core.params import dumps
from pixscale.errors import InputError, OutputError, ParamsError, PixscaleError
from pixscale.sources.base import Labels
from pixscale.store.base import Float32Array, Writer
from pixscale.store.io.atomic import (
    StagedOutputs,
    already_exists,
    current_umask,
    folder_lock,
    folder_of,
)
from pixscale.store.io.direct import ALIGN, DirectFile, aligned_empty
from pixscale.store.naming import (
    IMAGES_DATASET,
    LABELS_DATASET,
    PARAMS_GROUP,
)

INSTALL_HINT = "pip install 'pixscale[zarr]'"
#: The metadata document of every Zarr v3 node.
ZARR_JSON = "zarr.json"
#: Target bytes of float32 values per ``images`` chunk (at least one image): large enough
#: for disk-speed writes and few objects, small enough for a data loader's random reads.
DEFAULT_CHUNK_BYTES = 4 << 20
#: gzip level for ``compression="gzip"`` (as for HDF5).
DEFAULT_GZIP_LEVEL = 4
ZARR_COMPRESSIONS = ("none", "gzip")
#: Labels per chunk of the ``labels`` array.
LABELS_CHUNK = 1 << 20


def require_zarr(error: type[PixscaleError] = OutputError) -> Any:
    """The ``zarr`` module (v3), or a one-line error naming the extra to install."""
    try:
        import zarr
    except ImportError:
        raise error(f"Zarr needs zarr-python 3: {INSTALL_HINT}") from None
    if not str(zarr.__version__).split(".")[0].isdigit() or int(zarr.__version__[0]) < 3:
        raise error(f"Zarr needs zarr-python 3 (found {zarr.__version__}): {INSTALL_HINT}")
    return zarr


def is_zarr_store(path: Path) -> bool:
    """True for a folder holding a Zarr v3 ``zarr.json`` (a group or an array)."""
    return path.is_dir() and (path / ZARR_JSON).is_file()


def is_zarr_output(path: Path) -> bool:
    """True for a Zarr store with a pixscale record in its attributes (no zarr import)."""
    if not is_zarr_store(path):
        return False
    try:
        import json

        meta = json.loads((path / ZARR_JSON).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and RECORD_ATTRIBUTE in (meta.get("attributes") or {})


def chunk_images_for(image_shape: tuple[int, ...], chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Images per ``images`` chunk: about ``chunk_bytes`` of float32, rounded down to a
    whole number of ``ALIGN`` blocks so that every chunk can be written directly."""
    per_image = 4 * math.prod(image_shape)
    step = ALIGN // math.gcd(per_image, ALIGN)
    return max(step, chunk_bytes // per_image // step * step)


# -- placing a store ---------------------------------------------------------------------------


def check_store_target(target: Path, overwrite: bool, inputs: list[Path] | None = None) -> None:
    """Refuse a store target up front: missing folder, an input, or an existing path
    (without ``overwrite``); with it, anything but a Zarr store or a regular file."""
    folder = folder_of(target)
    if not folder.is_dir():
        raise OutputError(f"{target}: output folder {folder} does not exist")
    real = Path(os.path.realpath(target))
    for given in inputs or []:
        given = Path(os.path.realpath(given))
        if real == given or given.is_relative_to(real):
            raise OutputError(f"{target}: refusing to overwrite an input")
    if not os.path.lexists(target):
        return
    if not overwrite:
        raise already_exists(target)
    refuse_unreplaceable(target)


def refuse_unreplaceable(target: Path) -> None:
    """``--overwrite`` replaces a Zarr store or a regular file, never another folder."""
    if target.is_symlink():
        raise OutputError(f"{target}: is a symbolic link; refusing to replace it")
    if target.is_dir():
        if not is_zarr_store(target):
            raise OutputError(f"{target}: is a folder but not a Zarr store; refusing to replace it")
    elif not target.is_file():
        raise OutputError(f"{target}: not a regular file; refusing to replace it")


def rename_noreplace(temp: Path, target: Path) -> None:
    """Rename ``temp`` to ``target`` only if nothing is there, atomically where the kernel
    offers ``renameat2(RENAME_NOREPLACE)``, else checked just before under the folder lock."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, noreplace = -100, 1
        done = renameat2(at_fdcwd, os.fsencode(temp), at_fdcwd, os.fsencode(target), noreplace)
        if done == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise already_exists(target)
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(target))
    if os.path.lexists(target):
        raise already_exists(target)
    os.rename(temp, target)


def commit_store(temp: Path, target: Path, overwrite: bool) -> None:
    """Put the finished store ``temp`` under the name ``target`` in one rename; a replaced
    older store is moved aside first and removed only after the new one is in place."""
    mode = 0o777 & ~current_umask()
    os.chmod(temp, mode)
    with folder_lock([folder_of(target)]):
        if not os.path.lexists(target):
            rename_noreplace(temp, target)
            return
        if not overwrite:
            raise already_exists(target)
        refuse_unreplaceable(target)
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / "store")
        try:
            os.rename(temp, target)
        except BaseException:
            os.replace(old / "store", target)  # the older store back where it was
            shutil.rmtree(old, ignore_errors=True)
            raise
    shutil.rmtree(old, ignore_errors=True)


def new_store_folder(target: Path) -> Path:
    """A fresh temporary folder beside ``target`` for the store being built."""
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder_of(target)))


# -- writing -----------------------------------------------------------------------------------


def create_store(root: Path, shape: tuple[int, ...], rows: int, compression: str = "none") -> None:
    """An empty group at ``root`` with the float32 ``images`` array (chunks of ``rows``
    images, NaN where nothing was written, so a missing chunk never reads as data)."""
    zarr = require_zarr()
    from zarr.codecs import BytesCodec, GzipCodec

    if compression not in ZARR_COMPRESSIONS:
        raise OutputError(f"Zarr output compression: choose from {ZARR_COMPRESSIONS}")
    group = zarr.open_group(str(root), mode="w", zarr_format=3)
    group.create_array(
        IMAGES_DATASET,
        shape=shape,
        dtype="float32",
        chunks=(min(rows, max(1, shape[0])), *shape[1:]),
        serializer=BytesCodec(endian="little"),
        compressors=GzipCodec(level=DEFAULT_GZIP_LEVEL) if compression == "gzip" else None,
        filters=None,
        fill_value=float("nan"),
        chunk_key_encoding={"name": "default", "separator": "/"},
        config={"write_empty_chunks": True},  # keep -0.0 and NaN-free chunks alike
    )


@dataclass(frozen=True)
class ZarrImages:
    """Where the ``images`` chunks of a store go; picklable, so tasks on other machines
    can write their own chunks (the store must be on a file system they share)."""

    root: Path
    shape: tuple[int, ...]
    rows: int
    raw: bool
    direct: bool = False

    @classmethod
    def of(cls, root: Path, direct: bool = False) -> ZarrImages:
        zarr = require_zarr()
        from zarr.codecs import BytesCodec

        array = zarr.open_array(str(root / IMAGES_DATASET), mode="r")
        codecs = array.metadata.codecs
        raw = (
            len(codecs) == 1
            and isinstance(codecs[0], BytesCodec)
            and str(getattr(codecs[0].endian, "value", codecs[0].endian)) == "little"
            and array.metadata.chunk_key_encoding.separator == "/"
            and array.metadata.chunk_key_encoding.name == "default"
        )
        return cls(root, tuple(array.shape), int(array.chunks[0]), raw, direct)

    def region(self, start: int, count: int) -> RegionWriter:
        """A writer of images ``start``…``start + count - 1`` (``start`` on a chunk boundary)."""
        return RegionWriter(self, start, count)

    def chunk_path(self, index: int) -> Path:
        tail = "/".join(["0"] * (len(self.shape) - 1))
        return self.root / IMAGES_DATASET / "c" / str(index) / tail


class RegionWriter(Writer):
    """Writes whole ``images`` chunks of one region, in order; a chunk that arrives in
    pieces is gathered in a buffer first, so no chunk is ever read back or written twice."""

    def __init__(self, images: ZarrImages, start: int, count: int) -> None:
        if start % images.rows:
            raise OutputError(f"region start {start} is not on a chunk boundary")
        self.images = images
        self.target = images.root
        self.shape = (count, *images.shape[1:])
        self.start, self.stop = start, start + count
        self.position = start
        self.pending = aligned_empty((images.rows, *images.shape[1:]), np.float32)
        self.filled = 0
        self.array: Any = None
        self.file_mode = 0o666 & ~current_umask()

    def write(self, chunk: Float32Array) -> None:
        rows = self.images.rows
        taken = 0
        if self.filled:
            taken = min(rows - self.filled, chunk.shape[0])
            self.pending[self.filled : self.filled + taken] = chunk[:taken]
            self.filled += taken
            self._flush_pending()
        if self.filled:
            return
        whole = (chunk.shape[0] - taken) // rows * rows
        for first in range(taken, taken + whole, rows):
            self._write_chunk(chunk[first : first + rows])
        rest = chunk[taken + whole :]
        if len(rest):
            self.pending[: len(rest)] = rest
            self.filled = len(rest)
            self._flush_pending()

    def _flush_pending(self) -> None:
        if self.filled == self.images.rows or self.position + self.filled == self.stop:
            filled, self.filled = self.filled, 0
            self._write_chunk(self.pending[:filled])

    def _write_chunk(self, values: Float32Array) -> None:
        stop = self.position + values.shape[0]
        if stop > self.stop:
            raise OutputError(f"{self.target}: more images than the region holds")
        try:
            if self.images.raw:
                self._write_raw(values)
            else:
                self._zarr_array()[self.position : stop] = values
        except OSError as exc:
            raise OutputError(f"{self.target}: write failed: {exc.strerror or exc}") from exc
        self.position = stop

    def _write_raw(self, values: Float32Array) -> None:
        """One chunk as the spec stores it: its full shape, C order, little-endian (an edge
        chunk padded with the fill value)."""
        rows = self.images.rows
        if values.shape[0] < rows:
            padded = np.full((rows, *values.shape[1:]), np.nan, np.float32)
            padded[: values.shape[0]] = values
            values = padded
        path = self.images.chunk_path(self.position // rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = DirectFile(path, self.images.direct)
        try:
            handle.write(np.ascontiguousarray(values, "<f4"))
        finally:
            handle.close()
        os.chmod(path, self.file_mode)

    def _zarr_array(self) -> Any:
        if self.array is None:
            zarr = require_zarr()
            self.array = zarr.open_array(str(self.images.root / IMAGES_DATASET), mode="r+")
        return self.array

    def finish(
        self, record: dict[str, Any], arrays: dict[str, npt.NDArray[Any]], labels: Labels | None
    ) -> dict[str, Any]:
        self.close()
        return dict(record.get("output", {}))

    def close(self) -> None:
        """Nothing is held open between chunks."""

    def complete(self) -> bool:
        return self.position == self.stop


def store_zarr_record(
    root: Path,
    record: dict[str, Any],
    arrays: dict[str, npt.NDArray[Any]],
    labels: Labels | None,
) -> None:
    """Labels, parameter arrays and the record (``record["output"]`` is completed here)."""
    zarr = require_zarr()
    group = zarr.open_group(str(root), mode="r+", zarr_format=3)
    output = record["output"]
    if labels is not None:
        values = np.ascontiguousarray(labels.values)
        group.create_array(
            LABELS_DATASET,
            data=values,
            chunks=(max(1, min(len(values), LABELS_CHUNK)),),
            compressors=None,
            write_data=True,
        )
        output["labels"] = LABELS_DATASET
        if labels.class_names:
            output["class_names"] = labels.class_names
    if arrays:
        params = group.create_group(PARAMS_GROUP)
        for name, values in sorted(arrays.items()):
            values = np.ascontiguousarray(values)
            params.create_array(name, data=values, compressors=None, chunks=values.shape or ())
        output["arrays"] = PARAMS_GROUP
    attributes: dict[str, Any] = {"strategy": record["strategy"]}
    for name in ("scale", "offset"):
        if not isinstance(record[name], dict):
            attributes[name] = np.asarray(record[name], np.float64).tolist()
    attributes[RECORD_ATTRIBUTE] = dumps(record)
    group.attrs.update(attributes)


def zarr_output_fields(target: Path, images: ZarrImages, compression: str) -> dict[str, Any]:
    return {
        "file": target.name,
        "format": "zarr",
        "zarr_format": 3,
        "dataset": IMAGES_DATASET,
        "shape": list(images.shape),
        "dtype": "float32",
        "chunks": [images.rows, *images.shape[1:]],
        "compression": compression,
    }


class ZarrWriter(Writer):
    """A Zarr v3 store written by this process, built in a temporary folder beside the
    target and renamed into place by ``finish``."""

    def __init__(
        self,
        target: Path,
        shape: tuple[int, ...],
        staged: StagedOutputs,
        compression: str = "none",
        chunk_images: int | None = None,
        direct: bool = False,
    ) -> None:
        self.target, self.shape = target, shape
        self.overwrite = staged.overwrite
        self.staged = staged
        self.compression = compression
        check_store_target(target, staged.overwrite, staged.inputs)
        rows = chunk_images or chunk_images_for(shape[1:])
        self.temp: Path | None = new_store_folder(target)
        try:
            create_store(self.temp, shape, rows, compression)
            self.images = ZarrImages.of(self.temp, direct)
            self.region = self.images.region(0, shape[0])
            self.elsewhere = False
        except BaseException:
            self.discard()
            raise

    def write(self, chunk: Float32Array) -> None:
        self.region.write(chunk)

    def parallel(self) -> ZarrImages:
        """Where other processes write the ``images`` chunks (instead of ``write``);
        ``finish`` then checks that every chunk is there."""
        self.elsewhere = True
        return self.images

    def missing_chunks(self) -> int:
        expected = -(-self.shape[0] // self.images.rows)
        return sum(not self.images.chunk_path(i).is_file() for i in range(expected))

    def finish(
        self, record: dict[str, Any], arrays: dict[str, npt.NDArray[Any]], labels: Labels | None
    ) -> dict[str, Any]:
        assert self.temp is not None
        if self.elsewhere:
            missing = self.missing_chunks()
            if missing:
                raise OutputError(f"{self.target}: {missing} chunks of images were not written")
        elif not self.region.complete():
            raise OutputError(f"{self.target}: {self.region.position} of {self.shape[0]} written")
        output = {
            **record.get("output", {}),
            **zarr_output_fields(self.target, self.images, self.compression),
        }
        full = dict(record, output=output)
        store_zarr_record(self.temp, full, arrays, labels)
        temp, self.temp = self.temp, None  # the run's commit places it, or its discard removes it
        self.staged.stage_folder(
            lambda: commit_store(temp, self.target, self.overwrite),
            lambda: shutil.rmtree(temp, ignore_errors=True),
        )
        return output

    def discard(self) -> None:
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            self.temp = None

    def close(self) -> None:
        """After ``finish`` nothing is left to do; before it, the run failed: remove the
        temporary store."""
        self.discard()


# -- reading -----------------------------------------------------------------------------------


def open_zarr_group(path: Path, error: type[PixscaleError] = InputError) -> Any:
    zarr = require_zarr(error)
    try:
        return zarr.open_group(str(path), mode="r", zarr_format=3)
    except Exception as exc:  # zarr raises many kinds on a damaged or foreign store
        raise error(f"{path}: not a readable Zarr v3 group ({exc})") from exc


def read_zarr_record(path: Path) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """The record and its external arrays from a Zarr output."""
    group = open_zarr_group(path, ParamsError)
    text = group.attrs.get(RECORD_ATTRIBUTE)
    if not isinstance(text, str):
        raise ParamsError(f"{path}: Zarr store has no {RECORD_ATTRIBUTE} attribute")
    arrays: dict[str, npt.NDArray[Any]] = {}
    if PARAMS_GROUP in group:
        for name, array in group[PARAMS_GROUP].arrays():
            arrays[name] = np.asarray(array[...])
    from pixscale.store.records import parse_record  # records reads zarr stores too

    return parse_record(text, str(path)), arrays


@dataclass
class ZarrOutput:
    """What a reader of a pixscale Zarr output needs: the images array (lazy), its shape
    and dtype, and the labels."""

    images: Any
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    labels: npt.NDArray[Any] | None


def open_zarr_output(path: Path) -> ZarrOutput:
    """Open a pixscale Zarr output's ``images`` (and read its labels)."""
    group = open_zarr_group(path)
    if IMAGES_DATASET not in group:
        raise InputError(f"{path}: no 'images' array")
    images = group[IMAGES_DATASET]
    labels = np.asarray(group[LABELS_DATASET][...]) if LABELS_DATASET in group else None
    return ZarrOutput(images, tuple(images.shape), np.dtype(images.dtype), labels)


__all__ = [
    "ZarrImages",
    "ZarrWriter",
    "check_store_target",
    "commit_store",
    "create_store",
    "is_zarr_output",
    "is_zarr_store",
    "open_zarr_output",
    "read_zarr_record",
    "require_zarr",
    "store_zarr_record",
]
