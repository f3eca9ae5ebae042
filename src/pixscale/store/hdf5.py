"""HDF5 output: ``images`` (float32, float16 or packed uint8), ``labels``, parameter arrays
and the record as attributes; packed outputs carry CF attributes for netCDF/xarray readers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pixscale.core.formats import RECORD_ATTRIBUTE
from pixscale.core.labels import Labels
from pixscale.core.params import dumps
from pixscale.store.base import (
    Float32Array,
    Writer,
    checksum_field,
    labels_checksum,
    write_failed,
)
from pixscale.store.io.atomic import StagedOutputs
from pixscale.store.io.checksum import StreamChecksum
from pixscale.store.io.direct import ALIGN, DirectFile
from pixscale.store.naming import PARAMS_GROUP

if TYPE_CHECKING:
    import h5py

#: Target bytes per HDF5 chunk of a compressed output (at least one image). A training loop
#: reading one random sample decompresses its whole chunk: measured on MNIST, 64 KiB chunks
#: read a random sample 14× faster than 1 MiB chunks (130 µs against 1.9 ms, gzip or lzf),
#: for files 2–11 % larger and the same write time.
DEFAULT_CHUNK_BYTES = 64 << 10
#: gzip level when ``--compression gzip``: 4 is h5py's own default, most of level 9's
#: ratio at a fraction of its time.
DEFAULT_GZIP_LEVEL = 4
COMPRESSIONS = ("none", "gzip", "lzf")


def chunk_images_for(
    image_shape: tuple[int, ...], chunk_bytes: int = DEFAULT_CHUNK_BYTES, item_bytes: int = 4
) -> int:
    per_image = item_bytes * int(np.prod(image_shape))
    return max(1, chunk_bytes // per_image)


def is_contiguous(compression: str, chunk_images: int | None) -> bool:
    """Uncompressed outputs are stored contiguously unless a chunk length is asked for.

    A contiguous dataset is one run of bytes at a fixed offset: pixscale writes it like a
    .npy (direct writes included), and a training loop reads one random sample as exactly
    its own bytes (measured 9× faster from the page cache and 3× from the disk than
    1 MiB chunks, each of which HDF5 reads whole).
    """
    return compression == "none" and chunk_images is None


class Hdf5Writer(Writer):
    """Writes into a pre-sized dataset; times are not tracked (reproducible bytes).

    Contiguous datasets are allocated up front, on a page boundary and never filled by
    HDF5, and their bytes are written straight to the file (``DirectFile``, with
    ``O_DIRECT`` when ``direct``); chunked ones go through h5py.
    """

    def __init__(
        self,
        target: Path,
        shape: tuple[int, ...],
        staged: StagedOutputs,
        compression: str = "none",
        chunk_images: int | None = None,
        direct: bool = False,
        dtype: str = "<f4",
    ) -> None:
        self.target, self.shape = target, shape
        self.dtype = np.dtype(dtype)
        self.temp = staged.stage_data(target, shape[0])
        self.compression = compression
        self.position = 0
        self.failed = False
        self.checksum = StreamChecksum()
        self.raw: DirectFile | None = None
        self.file: h5py.File | None = None
        try:
            if is_contiguous(compression, chunk_images):
                self._create_contiguous(direct)
            else:
                items = self.dtype.itemsize
                self._create_chunked(chunk_images or chunk_images_for(shape[1:], item_bytes=items))
        except (OSError, RuntimeError) as exc:
            self.failed = True
            self.close()
            raise write_failed(target, exc) from exc

    def _create_contiguous(self, direct: bool) -> None:
        import h5py  # imported on use: it adds ~30 ms to every start-up

        aligned = {"alignment_threshold": ALIGN, "alignment_interval": ALIGN}
        self.file = file = h5py.File(self.temp, "w", track_order=False, **aligned)
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        plist.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        self.images = file.create_dataset(
            "images", shape=self.shape, dtype=self.dtype, dcpl=plist, track_times=False
        )
        offset = self.images.id.get_offset()
        self.raw = DirectFile(self.temp, direct, offset=offset, create=False)

    def _create_chunked(self, rows: int) -> None:
        import h5py

        self.file = file = h5py.File(self.temp, "w", track_order=False)
        options: dict[str, Any] = {}
        if self.compression == "gzip":
            options = {"compression": "gzip", "compression_opts": DEFAULT_GZIP_LEVEL}
        elif self.compression == "lzf":
            options = {"compression": "lzf"}
        self.images = file.create_dataset(
            "images",
            shape=self.shape,
            dtype=self.dtype,
            chunks=(min(self.shape[0], rows), *self.shape[1:]),
            track_times=False,
            **options,
        )

    def write(self, chunk: Float32Array) -> None:
        stop = self.position + chunk.shape[0]
        data = np.ascontiguousarray(chunk, self.dtype)
        try:
            with self.checksum.during(data):
                if self.raw is not None:
                    self.raw.write(data)
                else:
                    self.images.write_direct(data, dest_sel=np.s_[self.position : stop])
        except (OSError, RuntimeError) as exc:
            self.failed = True
            raise write_failed(self.target, exc) from exc
        self.position = stop

    def finish(
        self, record: dict[str, Any], arrays: dict[str, npt.NDArray[Any]], labels: Labels | None
    ) -> dict[str, Any]:
        output: dict[str, Any] = {
            **record.get("output", {}),
            "file": self.target.name,
            "format": "hdf5",
            "dataset": "images",
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "chunks": list(self.images.chunks) if self.images.chunks else None,
            "compression": self.compression,
            **checksum_field(self.checksum, self.position, self.shape),
        }
        self.close_data()
        assert self.file is not None  # open until close()
        try:
            if "packing" in output:
                output["packing"]["cf_variables"] = add_cf_attributes(
                    self.file, self.images, output, record
                )
            store_record(self.file, dict(record, output=output), arrays, labels)
        except (OSError, RuntimeError) as exc:
            self.failed = True
            raise write_failed(self.target, exc) from exc
        self.close()
        return output

    def close_data(self) -> None:
        """Write the last bytes of a contiguous dataset (a partial block) and close them."""
        self.checksum.close()
        if self.raw is not None and not self.raw.closed:
            try:
                self.raw.close()
            except OSError as exc:
                self.failed = True
                raise write_failed(self.target, exc) from exc

    def close(self) -> None:
        """Close everything; after a failed write without letting HDF5 write again."""
        try:
            self.close_data()
        finally:
            try:
                if self.file is not None:
                    close_safely(self.file, abandon=self.failed)
            except (OSError, RuntimeError) as exc:
                raise write_failed(self.target, exc) from exc


def close_safely(file: h5py.File, abandon: bool = False) -> None:
    """Close an HDF5 file so that HDF5 never fails inside its close.

    A failed ``H5Fclose`` (disk full, file-size limit) leaves HDF5 holding a half-closed
    file that it flushes again when the interpreter exits, and crashes there (SIGSEGV,
    measured with HDF5 2.0.0 and h5py 3.16). So the file is flushed first, where a failure
    is an ordinary exception; after a failed flush or write (``abandon``) the file's
    descriptor is pointed at /dev/null before closing, so the writes HDF5 repeats while
    closing succeed into nothing. The caller discards such a file anyway.

    Raises
    ------
    OSError
        The flush failed (the file is closed nonetheless).
    """
    if not file.id.valid:
        return
    error: BaseException | None = None
    if not abandon:
        try:
            file.flush()
        except (OSError, RuntimeError) as exc:
            error = exc
    if abandon or error is not None:
        point_at_devnull(file)
    file.close()
    if error is not None:
        raise error


def point_at_devnull(file: h5py.File) -> None:
    """Make the HDF5 file's descriptor write to /dev/null (and read nothing)."""
    try:
        handle = file.id.get_vfd_handle()
    except (OSError, RuntimeError, ValueError):
        return
    if not isinstance(handle, int) or handle < 0:
        return
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.dup2(null, handle, inheritable=False)
    finally:
        os.close(null)


def add_cf_attributes(
    file: h5py.File, images: h5py.Dataset, output: dict[str, Any], record: dict[str, Any]
) -> list[str]:
    """CF ``scale_factor``/``add_offset`` (float64 scalars) where CF readers can use them;
    returns the variables that carry them.

    CF readers apply one scalar pair per variable (xarray fails to open a variable whose
    attributes are arrays). So one pair for the whole dataset goes on ``images``; one pair
    per channel goes on per-channel views ``images_c<k>``: HDF5 virtual datasets selecting
    channel k of ``images`` in this same file (no second copy of the pixels). Per-pixel
    and per-image pairs have no CF form: pixscale's reader decodes those, from ``params/``.
    """
    import h5py

    packing = output["packing"]
    scale, offset = packing["scale_factor"], packing["add_offset"]
    if not isinstance(scale, dict) and np.size(scale) == 1:  # global, or one channel
        images.attrs["scale_factor"] = np.float64(np.ravel(scale)[0])
        images.attrs["add_offset"] = np.float64(np.ravel(offset)[0])
        return [images.name.lstrip("/")]
    if record["scope"] != "channel" or isinstance(scale, dict):
        return []
    shape = tuple(images.shape)
    axis = {"nhwc": 3, "nchw": 1}.get(str(output.get("layout")))
    if axis is None or shape[axis] != len(scale):
        return []
    names = []
    for channel in range(shape[axis]):
        view_shape = shape[:axis] + shape[axis + 1 :]
        layout = h5py.VirtualLayout(shape=view_shape, dtype=images.dtype)
        source = h5py.VirtualSource(".", images.name, shape=shape, dtype=images.dtype)
        layout[...] = source[tuple(channel if i == axis else slice(None) for i in range(4))]
        name = f"{images.name.lstrip('/')}_c{channel}"
        view = untimed_virtual_dataset(file, name, layout)
        view.attrs["scale_factor"] = np.float64(scale[channel])
        view.attrs["add_offset"] = np.float64(offset[channel])
        names.append(name)
    return names


def untimed_virtual_dataset(file: h5py.File, name: str, layout: Any) -> h5py.Dataset:
    """``file.create_virtual_dataset(name, layout)`` without a modification time, so that
    two runs write the same bytes (h5py's own call offers no ``track_times``; its layout
    builds the mapping, the creation is done here with the time switched off)."""
    import h5py

    dcpl = layout._get_dcpl(file.filename)
    dcpl.set_obj_track_times(False)
    space = h5py.h5s.create_simple(tuple(layout.shape))
    kind = h5py.h5t.py_create(np.dtype(layout.dtype), logical=1)
    created = h5py.h5d.create(file.id, name=name.encode(), tid=kind, space=space, dcpl=dcpl)
    return h5py.Dataset(created)


def store_record(
    file: h5py.File,
    record: dict[str, Any],
    arrays: dict[str, npt.NDArray[Any]],
    labels: Labels | None,
) -> None:
    """Labels, parameter arrays and the record (``record["output"]`` is completed here)."""
    output = record["output"]
    if labels is not None:
        file.create_dataset("labels", data=labels.values, track_times=False)
        output["labels"] = "labels"
        output["labels_checksum"] = labels_checksum(labels.values)
        if labels.class_names:
            output["class_names"] = labels.class_names
    if arrays:
        group = file.create_group(PARAMS_GROUP)
        for name, values in sorted(arrays.items()):
            group.create_dataset(name, data=values, track_times=False)
        output["arrays"] = PARAMS_GROUP
    file.attrs["strategy"] = record["strategy"]
    for name in ("scale", "offset"):
        if not isinstance(record[name], dict):
            file.attrs[name] = np.asarray(record[name], np.float64)
    file.attrs[RECORD_ATTRIBUTE] = dumps(record)
