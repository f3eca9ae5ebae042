"""float32 Zarr v3 output (and reading it back): a group with ``images``, ``labels``,
parameter arrays under ``params/`` and the record in the group's attributes, as in HDF5.

The store is a folder. It is built under a temporary name beside the target and renamed
into place whole when complete, so a half-written store never carries the final name.

``images`` is chunked along the first axis only. Metadata, labels and parameter arrays go
through zarr-python. Uncompressed ``images`` chunks are written as the Zarr v3 spec stores
them (the ``bytes`` codec, little-endian, C order, a full chunk each, keys ``c.i.0.…``),
straight from pixscale's buffers (``O_DIRECT`` where asked), which is what lets many
processes write their own chunks of one store at disk speed; compressed chunks go through
zarr-python. Either way zarr-python, xarray or TensorStore read the result. The record
holds the CRC-32 of the images' values (as for HDF5: C order, little-endian, without an
edge chunk's padding), which ``pixscale verify`` checks.
"""

from __future__ import annotations

import ctypes
import errno
import math
import mmap
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.containment import contained_store
from pixscale.core.formats import RECORD_ATTRIBUTE
from pixscale.core.labels import Labels
from pixscale.core.params import dumps
from pixscale.core.zarr_shards import Shards, native_bytes_only
from pixscale.errors import InputError, OutputError, ParamsError, PixscaleError
from pixscale.store.base import (
    Float32Array,
    PartWriter,
    Writer,
    checksum_field,
    labels_checksum,
)
from pixscale.store.io.atomic import (
    StagedOutputs,
    already_exists,
    current_umask,
    folder_lock,
    folder_of,
    temporary_name,
)
from pixscale.store.io.checksum import StreamChecksum
from pixscale.store.io.direct import ALIGN, DirectFile
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


#: Target bytes of float32 values per inner chunk of an uncompressed shard: a training
#: loop's random sample costs zarr-python (or xarray, TensorStore) a read of about this
#: much, where a 4 MiB chunk cost a read and decode of 4 MiB (850 samples/s for MNIST).
SAMPLE_CHUNK_BYTES = 64 << 10


def sample_chunk_images(image_shape: tuple[int, ...], rows: int) -> int:
    """Images per inner chunk of an uncompressed shard: the most that fit in
    ``SAMPLE_CHUNK_BYTES`` (at least one) and divide ``rows``, so that a shard of whole
    ``rows``-image runs holds whole inner chunks."""
    wanted = max(1, min(rows, SAMPLE_CHUNK_BYTES // (4 * max(1, math.prod(image_shape)))))
    return next(n for n in range(wanted, 0, -1) if rows % n == 0)


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
    """``--overwrite`` replaces pixscale's own Zarr store or a regular file, never another
    folder, nor a store that holds anything pixscale did not write."""
    if target.is_symlink():
        raise OutputError(f"{target}: is a symbolic link; refusing to replace it")
    if target.is_dir():
        if not is_zarr_store(target):
            raise OutputError(f"{target}: is a folder but not a Zarr store; refusing to replace it")
        if not is_zarr_output(target):
            raise OutputError(
                f"{target}: is a Zarr store pixscale did not write; refusing to replace it"
            )
        foreign = foreign_entry(target)
        if foreign is not None:
            raise OutputError(
                f"{foreign}: is not part of pixscale's output; refusing to replace {target}"
            )
    elif not target.is_file():
        raise OutputError(f"{target}: not a regular file; refusing to replace it")


def foreign_entry(store: Path) -> Path | None:
    """The first entry of ``store`` that a pixscale output does not hold, or None: its
    entries are ``zarr.json`` files, array folders (holding a ``zarr.json``) and chunk keys
    (``c…`` files, or ``c`` folders of numbered ones), and no links."""
    for folder, subfolders, files in os.walk(store):
        here = Path(folder)
        chunks = here.name == "c" or here.name.isdigit()
        for name in [*subfolders, *files]:
            path = here / name
            if path.is_symlink():
                return path
        for name in subfolders:
            if not (
                name == "c" or (chunks and name.isdigit()) or (here / name / ZARR_JSON).is_file()
            ):
                return here / name
        for name in files:
            if not (name == ZARR_JSON or (chunks and name.isdigit()) or name.startswith("c.")):
                return here / name
    return None


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


def make_store_folder(temp: Path) -> None:
    """The temporary folder ``temp`` (a name already recorded for removal)."""
    os.mkdir(temp, 0o700)


# -- writing -----------------------------------------------------------------------------------


#: Zarr v3 ``dimension_names`` of ``images`` by layout: xarray (``open_zarr``) needs them,
#: and they tell any reader which axis holds the channels.
DIMENSION_NAMES = {
    "nhw": ("image", "y", "x"),
    "nhwc": ("image", "y", "x", "channel"),
    "nchw": ("image", "channel", "y", "x"),
}


def dimension_names(shape: tuple[int, ...], layout: str | None) -> tuple[str, ...]:
    """The names of ``images``' axes: by ``layout``, else ``image`` and ``dim_1``…"""
    named = DIMENSION_NAMES.get(layout or "")
    if named is not None and len(named) == len(shape):
        return named
    return ("image", *(f"dim_{axis}" for axis in range(1, len(shape))))


def create_store(
    root: Path,
    shape: tuple[int, ...],
    rows: int,
    compression: str = "none",
    layout: str | None = None,
    inner: int | None = None,
) -> None:
    """The float32 ``images`` array in the folder ``root`` (chunks of ``rows`` images,
    NaN where nothing was written, so a missing chunk never reads as data);
    ``store_zarr_record`` makes ``root`` its group.

    Uncompressed, a file (a shard: Zarr v3's ``sharding_indexed`` codec, its index after
    the chunks, without a checksum of its own) holds ``CHUNKS_PER_SHARD`` × ``rows``
    images as inner chunks of ``inner`` images (default ``rows``; a divisor of it): the
    writer streams each file front to back in large writes, as for one contiguous HDF5
    dataset, and a reader fetches one inner chunk at a time. A file per 4 MiB chunk
    measured up to 2× slower to write on ext4, and a 1 TB output would be 250,000 files.
    Compressed chunks are one file each. File keys are ``c.<i>.0.0…``, every file in the
    array's folder (the separator ``/`` would give each file folders of its own).
    """
    zarr = require_zarr()
    from zarr.codecs import BytesCodec, GzipCodec, ShardingCodec

    if compression not in ZARR_COMPRESSIONS:
        raise OutputError(f"Zarr output compression: choose from {ZARR_COMPRESSIONS}")
    rows = min(rows, max(1, shape[0]))
    little = BytesCodec(endian="little")
    options: dict[str, Any] = {"chunks": (rows, *shape[1:]), "serializer": little}
    if compression == "gzip":
        options["compressors"] = GzipCodec(level=DEFAULT_GZIP_LEVEL)
    else:
        per_file = max(1, min(CHUNKS_PER_SHARD, -(-max(1, shape[0]) // rows)))
        inner = rows if inner is None or rows % min(inner, rows) else min(inner, rows)
        options["chunks"] = (rows * per_file, *shape[1:])
        options["serializer"] = ShardingCodec(
            chunk_shape=(inner, *shape[1:]),
            codecs=[little],
            index_codecs=[little],
            index_location="end",
        )
        options["compressors"] = None
    zarr.create_array(  # the group around it is written last, with the record
        str(root / IMAGES_DATASET),
        zarr_format=3,
        shape=shape,
        dtype="float32",
        filters=None,
        fill_value=float("nan"),
        dimension_names=dimension_names(shape, layout),
        chunk_key_encoding={"name": "default", "separator": CHUNK_KEY_SEPARATOR},
        config={"write_empty_chunks": True},  # keep -0.0 and NaN-free chunks alike
        **options,
    )


#: Separator of the ``images`` file keys pixscale writes.
CHUNK_KEY_SEPARATOR = "."
#: Uncompressed ``images`` chunks per file (shard): 64 MiB files with 4 MiB chunks.
CHUNKS_PER_SHARD = 16
#: The index entry of a chunk not stored (beyond the array's end).
NO_CHUNK = 2**64 - 1


@dataclass(frozen=True)
class ZarrImages:
    """Where the ``images`` files of a store go; picklable, so tasks on other machines
    can write their own files (the store must be on a file system they share).

    ``rows`` images make a chunk and ``file_rows`` a file: a shard of chunks, each
    ``rows`` images (``raw``: uncompressed, written by pixscale itself), or one
    compressed chunk (written through zarr-python).
    """

    root: Path
    shape: tuple[int, ...]
    rows: int
    file_rows: int
    raw: bool
    direct: bool = False
    separator: str = CHUNK_KEY_SEPARATOR

    @classmethod
    def of(cls, root: Path, direct: bool = False) -> ZarrImages:
        zarr = require_zarr()
        from zarr.codecs import ShardingCodec

        array = zarr.open_array(str(root / IMAGES_DATASET), mode="r")
        codecs = array.metadata.codecs
        keys = array.metadata.chunk_key_encoding
        file_rows = int(array.metadata.chunk_grid.chunk_shape[0])
        sharding = codecs[0] if len(codecs) == 1 and isinstance(codecs[0], ShardingCodec) else None
        raw = (
            sharding is not None
            and little_bytes_only(sharding.codecs)
            and little_bytes_only(sharding.index_codecs)
            and str(getattr(sharding.index_location, "value", "")) == "end"
            and tuple(sharding.chunk_shape[1:]) == tuple(array.shape[1:])
            and keys.name == "default"
            and keys.separator in ("/", ".")
        )
        rows = int(sharding.chunk_shape[0]) if sharding is not None else file_rows
        return cls(root, tuple(array.shape), rows, file_rows, raw, direct, keys.separator)

    def region(self, start: int, count: int) -> RegionWriter:
        """A writer of images ``start``…``start + count - 1`` (``start`` on a file boundary)."""
        return RegionWriter(self, start, count)

    def file_path(self, index: int) -> Path:
        key = self.separator.join(["c", str(index), *["0"] * (len(self.shape) - 1)])
        return self.root / IMAGES_DATASET / key

    @property
    def files(self) -> int:
        return -(-self.shape[0] // self.file_rows)

    def file_bytes(self, index: int) -> int:
        """The size of file ``index`` when complete (uncompressed stores)."""
        rows = min(self.file_rows, self.shape[0] - index * self.file_rows)
        stored = -(-rows // self.rows)
        row_bytes = 4 * math.prod(self.shape[1:])
        return stored * self.rows * row_bytes + 16 * (self.file_rows // self.rows)


def little_bytes_only(codecs: Any) -> bool:
    """True for a codec chain that is just the little-endian ``bytes`` codec."""
    from zarr.codecs import BytesCodec

    return (
        len(codecs) == 1
        and isinstance(codecs[0], BytesCodec)
        and str(getattr(codecs[0].endian, "value", codecs[0].endian)) == "little"
    )


class RegionWriter(PartWriter):
    """Writes the ``images`` files of one region, in order, each once.

    Uncompressed: each file (a shard) is streamed front to back straight from the
    caller's buffers (``O_DIRECT`` where asked), its last chunk padded with the fill value
    at the array's end, then its index: chunk ``k`` at byte ``k × chunk bytes``, and chunks
    beyond the array's end not stored. Compressed: each chunk is gathered whole in a
    buffer and written through zarr-python. Nothing is read back or written twice.

    ``checksum`` is the CRC-32 of the region's values as the array holds them (without
    padding), summed beside the writes: the regions' CRCs combine in order into that of
    the whole array, which is the local HDF5's.
    """

    def __init__(self, images: ZarrImages, start: int, count: int) -> None:
        step, total = images.file_rows, images.shape[0]
        if start % step or (start + count) % step and start + count != total:
            raise OutputError(f"region {start}…{start + count} does not cover whole files")
        self.images = images
        self.target = images.root
        self.shape = (count, *images.shape[1:])
        self.start, self.stop = start, start + count
        self.position = start
        self.checksum = StreamChecksum()
        self.file_mode = 0o666 & ~current_umask()
        self.handle: DirectFile | None = None  # the file being streamed (uncompressed)
        self.gathered: Float32Array | None = None  # the chunk being gathered (compressed)
        self.array: Any = None

    def write(self, chunk: Float32Array) -> None:
        values = np.ascontiguousarray(chunk, "<f4")
        if self.position + values.shape[0] > self.stop:
            raise OutputError(f"{self.target}: more images than the region holds")
        try:
            with self.checksum.during(values):
                if self.images.raw:
                    self._write_raw(values)
                else:
                    self._write_compressed(values)
        except OSError as exc:
            raise OutputError(f"{self.target}: write failed: {exc.strerror or exc}") from exc

    def _write_raw(self, values: Float32Array) -> None:
        step = self.images.file_rows
        done = 0
        while done < values.shape[0]:
            if self.handle is None:
                path = self.images.file_path(self.position // step)
                self.handle = DirectFile(path, self.images.direct)
                os.fchmod(self.handle.fd, self.file_mode)
            take = min(step - self.position % step, values.shape[0] - done)
            self.handle.write(values[done : done + take])
            done += take
            self.position += take
            if self.position % step == 0 or self.position == self.stop:
                self._end_file()

    def _end_file(self) -> None:
        """Pad the last chunk of the array, append the index and close the file."""
        assert self.handle is not None
        handle, self.handle = self.handle, None
        rows = self.images.rows
        try:
            missing = -self.position % rows
            if missing:
                handle.write(np.full((missing, *self.shape[1:]), np.nan, "<f4"))
            first = (self.position - 1) // self.images.file_rows * self.images.file_rows
            stored = -(-(self.position - first) // rows)
            chunk_bytes = rows * 4 * math.prod(self.shape[1:])
            index = np.full((self.images.file_rows // rows, 2), NO_CHUNK, "<u8")
            index[:stored, 0] = np.arange(stored, dtype=np.uint64) * np.uint64(chunk_bytes)
            index[:stored, 1] = chunk_bytes
            handle.write(index)
        finally:
            handle.close()

    def _write_compressed(self, values: Float32Array) -> None:
        rows = self.images.rows
        done = 0
        while done < values.shape[0]:
            filled = self.position % rows
            take = min(rows - filled, values.shape[0] - done)
            whole = filled == 0 and take == rows
            if self.gathered is None:
                self.gathered = np.empty((rows, *self.shape[1:]), np.float32)
            if not whole:
                self.gathered[filled : filled + take] = values[done : done + take]
            self.position += take
            if self.position % rows == 0 or self.position == self.stop:
                first = self.position - filled - take
                data = values[done : done + take] if whole else self.gathered[: filled + take]
                self._zarr_array()[first : self.position] = data
            done += take

    def _zarr_array(self) -> Any:
        if self.array is None:
            zarr = require_zarr()
            self.array = zarr.open_array(str(self.images.root / IMAGES_DATASET), mode="r+")
        return self.array

    def close(self) -> None:
        """Stop the checksum's helper thread; close a file left open by a failure."""
        self.checksum.close()
        if self.handle is not None:
            handle, self.handle = self.handle, None
            handle.close()

    def complete(self) -> bool:
        return self.position == self.stop

    @property
    def written(self) -> int:
        """Images written so far."""
        return self.position - self.start


def store_zarr_record(
    root: Path,
    record: dict[str, Any],
    arrays: dict[str, npt.NDArray[Any]],
    labels: Labels | None,
) -> None:
    """The group with the record in its attributes, then labels and parameter arrays
    (``record["output"]`` is completed here).

    The group's ``zarr.json`` is written once, new, with every attribute: rewriting it
    (zarr-python replaces the file by a rename for each attribute set) measured 0.2–2.9 s
    a rename on ext4 right after the data's writes, which forces the replaced file's data
    to disk first.
    """
    zarr = require_zarr()
    output = record["output"]
    label_values = None if labels is None else np.ascontiguousarray(labels.values)
    if labels is not None and label_values is not None:
        output["labels"] = LABELS_DATASET
        output["labels_checksum"] = labels_checksum(label_values)
        if labels.class_names:
            output["class_names"] = labels.class_names
    if arrays:
        output["arrays"] = PARAMS_GROUP
    attributes: dict[str, Any] = {"strategy": record["strategy"]}
    for name in ("scale", "offset"):
        if not isinstance(record[name], dict):
            attributes[name] = np.asarray(record[name], np.float64).tolist()
    attributes[RECORD_ATTRIBUTE] = dumps(record)
    group = zarr.create_group(str(root), attributes=attributes, zarr_format=3)
    if label_values is not None:
        group.create_array(
            LABELS_DATASET,
            data=label_values,
            chunks=(max(1, min(len(label_values), LABELS_CHUNK)),),
            compressors=None,
            dimension_names=("image",),
            write_data=True,
        )
    if arrays:
        params = group.create_group(PARAMS_GROUP)
        for name, values in sorted(arrays.items()):
            values = np.ascontiguousarray(values)
            params.create_array(
                name,
                data=values,
                compressors=None,
                chunks=values.shape or (),
                dimension_names=tuple(f"{name}_{axis}" for axis in range(values.ndim)),
            )
    # Every array's metadata in the group's zarr.json, as xarray and zarr-python look for
    # it first (one read to open the store; without it xarray warns). zarr-python warns
    # that Zarr v3 has no such field yet: readers that do not know it ignore it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        zarr.consolidate_metadata(str(root))


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
        **({"shards": [images.file_rows, *images.shape[1:]]} if images.raw else {}),
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
        layout: str | None = None,
    ) -> None:
        self.target, self.shape = target, shape
        self.overwrite = staged.overwrite
        self.staged = staged
        self.compression = compression
        check_store_target(target, staged.overwrite, staged.inputs)
        staged.expect_images(shape[0])
        rows = chunk_images or chunk_images_for(shape[1:])
        # without a chunk length asked for, inner chunks sized for a training loop's reads
        inner = chunk_images or sample_chunk_images(shape[1:], min(rows, max(1, shape[0])))
        # the name is kept before the folder exists: an interrupt leaves nothing unrecorded
        self.temp: Path | None = temporary_name(target)
        try:
            make_store_folder(self.temp)
            create_store(self.temp, shape, rows, compression, layout, inner)
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

    def missing_files(self) -> int:
        """``images`` files not there (or, uncompressed, not of their full size)."""
        images = self.images
        return sum(
            not path.is_file() or images.raw and path.stat().st_size != images.file_bytes(i)
            for i, path in ((i, images.file_path(i)) for i in range(images.files))
        )

    def finish(
        self, record: dict[str, Any], arrays: dict[str, npt.NDArray[Any]], labels: Labels | None
    ) -> dict[str, Any]:
        assert self.temp is not None
        if self.elsewhere:
            missing = self.missing_files()
            if missing:
                raise OutputError(f"{self.target}: {missing} files of images were not written")
        elif not self.region.complete():
            raise OutputError(f"{self.target}: {self.region.position} of {self.shape[0]} written")
        self.region.close()
        output = {
            **record.get("output", {}),  # the tasks' combined checksum, when they wrote
            **zarr_output_fields(self.target, self.images, self.compression),
            **checksum_field(self.region.checksum, self.region.written, self.shape),
        }
        full = dict(record, output=output)
        store_zarr_record(self.temp, full, arrays, labels)
        temp, self.temp = self.temp, None  # the run's commit places it, or its discard removes it
        self.staged.stage_folder(
            self.target,
            temp,
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
        self.region.close()
        self.discard()


# -- reading -----------------------------------------------------------------------------------


def open_zarr_group(path: Path, error: type[PixscaleError] = InputError) -> Any:
    zarr = require_zarr(error)
    try:
        # every key read must resolve inside the output (no chunk linked from elsewhere)
        return zarr.open_group(contained_store(path), mode="r", zarr_format=3)
    except PixscaleError:
        raise
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


def open_zarr_images(path: Path) -> Any:
    """The ``images`` of a pixscale Zarr output for reading samples: ``ShardedImages``
    where the files are uncompressed shards as pixscale writes them, else the zarr array."""
    images = open_zarr_output(path).images
    return ShardedImages.of(path, images) or images


class ShardedImages:
    """The images of uncompressed shards, each file's run of inner chunks read as one
    memory map (``d[i]``, ``d[a:b]``, ``d[positions]`` as numpy gives them, each result an
    array of its own): a sample costs about a read of its own bytes, and no call into
    zarr-python.

    A shard is mapped on first use, after its index (read through the containment rule)
    shows every inner chunk of its images stored, of full size, one after the other from
    its first; a shard laid out otherwise is read through zarr-python.
    """

    def __init__(self, path: Path, array: Any, shards: Any) -> None:
        from pixscale.core.containment import Root

        self.path = path
        self.array = array
        self.layout = shards
        self.root = Root(path)
        self.shape: tuple[int, ...] = tuple(int(n) for n in array.shape)
        self.dtype: np.dtype[Any] = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.file_rows = shards.shard[0]
        self.maps: list[npt.NDArray[Any] | None] = [None] * shards.grid[0]
        self.encode = array.metadata.encode_chunk_key

    @classmethod
    def of(cls, path: Path, array: Any) -> ShardedImages | None:
        """The reader of ``array`` (the ``images`` of the store ``path``), or None when its
        files are not uncompressed shards of whole images in this machine's byte order."""
        from zarr.codecs import ShardingCodec

        codecs = list(array.metadata.codecs)
        if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
            return None
        codec = codecs[0]
        shape = tuple(int(n) for n in array.shape)
        itemsize = np.dtype(array.dtype).itemsize
        if (
            not native_bytes_only(list(codec.codecs), itemsize)
            or tuple(codec.chunk_shape[1:]) != shape[1:]
            or tuple(array.shards[1:]) != shape[1:]
            or not shape[0]
        ):
            return None
        try:
            shards = Shards(array, codec, path)
        except InputError:
            return None
        return cls(path, array, shards)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> npt.NDArray[Any]:
        if isinstance(index, int | np.integer) and not isinstance(index, bool | np.bool_):
            return self.one(int(index))
        if isinstance(index, slice):
            start, stop, step = index.indices(self.shape[0])
            if step == 1:
                return self.span(start, max(start, stop))
            index = np.arange(start, stop, step)
        positions = np.asarray(index)
        if positions.dtype.kind not in "iu" or positions.ndim != 1:
            return np.asarray(self.array[index])
        return self.take(positions.astype(np.intp, copy=False))

    def one(self, position: int) -> npt.NDArray[Any]:
        """Image ``position`` (counted from the end when negative)."""
        if position < 0:
            position += self.shape[0]
        if not 0 <= position < self.shape[0]:
            raise IndexError(f"image index {position} is out of range for {self.shape[0]}")
        shard, row = divmod(position, self.file_rows)
        mapped = self.maps[shard]
        if mapped is None:
            mapped = self.mapped(shard)
        if mapped.size:
            copied: npt.NDArray[Any] = mapped[row].copy()
            return copied
        return np.asarray(self.array[position])

    def span(self, start: int, stop: int) -> npt.NDArray[Any]:
        """Images ``start``…``stop - 1``, shard by shard."""
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        row = start
        while row < stop:
            shard = row // self.file_rows
            end = min(stop, (shard + 1) * self.file_rows)
            mapped = self.maps[shard]
            if mapped is None:
                mapped = self.mapped(shard)
            first = shard * self.file_rows
            if mapped.size:
                out[row - start : end - start] = mapped[row - first : end - first]
            else:
                out[row - start : end - start] = self.array[row:end]
            row = end
        return out

    def take(self, positions: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
        """Images at ``positions`` (in range, any order), gathered shard by shard."""
        count = self.shape[0]
        if not len(positions):
            return np.empty((0, *self.shape[1:]), self.dtype)
        low, high = int(positions.min()), int(positions.max())
        if low < -count or high >= count:
            raise IndexError(f"an image index is out of range for {count} images")
        if low < 0:
            positions = np.where(positions < 0, positions + count, positions)
            low = int(positions.min())
        shard = low // self.file_rows
        if high // self.file_rows == shard:  # one shard: one gather
            return self.gather(shard, positions - shard * self.file_rows, positions)
        out = np.empty((len(positions), *self.shape[1:]), self.dtype)
        ordered, order = positions, None
        if (positions[1:] < positions[:-1]).any():
            order = np.argsort(positions, kind="stable")
            ordered = positions[order]
        shards = ordered // self.file_rows
        cuts = [0, *(np.flatnonzero(shards[1:] != shards[:-1]) + 1).tolist(), len(ordered)]
        for first, last in zip(cuts, cuts[1:], strict=False):
            shard = int(shards[first])
            picked = ordered[first:last]
            rows = picked - shard * self.file_rows
            if order is None:  # gathered in place
                self.gather(shard, rows, picked, out[first:last])
            else:
                out[order[first:last]] = self.gather(shard, rows, picked)
        return out

    def gather(
        self,
        shard: int,
        rows: npt.NDArray[np.intp],
        positions: npt.NDArray[np.intp],
        out: npt.NDArray[Any] | None = None,
    ) -> npt.NDArray[Any]:
        """Rows ``rows`` of shard ``shard`` (the images at ``positions``), into ``out``
        when given."""
        mapped = self.maps[shard]
        if mapped is None:
            mapped = self.mapped(shard)
        if mapped.size:
            # rows are checked in range: "clip" lets numpy gather straight into ``out``
            return np.take(mapped, rows, axis=0, out=out, mode="clip")
        found = np.asarray(self.array.get_orthogonal_selection(positions))
        if out is not None:
            out[...] = found
        return found

    def mapped(self, shard: int) -> npt.NDArray[Any]:
        """Shard ``shard``'s images as one memory map, its index checked first (an empty
        map: the shard is laid out otherwise and read through zarr-python)."""
        layout = self.layout
        zeros = (0,) * (self.ndim - 1)
        name = f"{IMAGES_DATASET}/{self.encode((shard, *zeros))}"
        file = self.root.resolve(name)
        if not file.is_file():
            raise InputError(f"{self.path}: {name} is missing (every file of images is needed)")
        offsets, lengths = layout.table(file, name)
        rows = min(self.file_rows, self.shape[0] - shard * self.file_rows)
        inner = layout.inner[0]
        needed = -(-rows // inner)
        chunk_bytes = inner * self.dtype.itemsize * math.prod(self.shape[1:])
        offsets = offsets.reshape(-1)[:needed]
        lengths = lengths.reshape(-1)[:needed]
        absent = (offsets == NO_CHUNK) & (lengths == NO_CHUNK)
        if absent.any():
            at = int(np.flatnonzero(absent)[0])
            raise InputError(f"{self.path}: shard {name}: inner chunk {at} is not stored")
        expected = offsets[0] + np.arange(needed, dtype=np.uint64) * np.uint64(chunk_bytes)
        found: npt.NDArray[Any] = np.empty(0, self.dtype)
        if (lengths == chunk_bytes).all() and (offsets == expected).all():
            # a plain array over the map: indexing it costs less than a np.memmap's
            with file.open("rb") as handle:
                whole = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            values = rows * math.prod(self.shape[1:])
            found = np.frombuffer(whole, self.dtype, values, int(offsets[0]))
            found = found.reshape(rows, *self.shape[1:])
        self.maps[shard] = found
        return found


__all__ = [
    "ZarrImages",
    "ZarrWriter",
    "check_store_target",
    "commit_store",
    "create_store",
    "is_zarr_output",
    "is_zarr_store",
    "open_zarr_images",
    "open_zarr_output",
    "read_zarr_record",
    "require_zarr",
    "store_zarr_record",
]
