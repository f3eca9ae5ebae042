"""Read pixscale outputs back: the record, the parameters and the values in chunks.

float32 and float16 outputs are read as stored; packed uint8 outputs (``--store uint8``)
are decoded to float32 by the record's proven float32 kernel, so their values are
bit-identical to what a float32 convert writes.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import numpy.typing as npt

from pixscale.core.containment import Root
from pixscale.core.hdf5_open import local_dataset, local_object
from pixscale.core.layouts import convert_layout, restore_layout
from pixscale.core.location import (
    Location,
    collection_paused,
    is_remote,
    locate,
    open_bytes,
    readable,
)
from pixscale.core.params import Params
from pixscale.core.rawio import read_images, read_npy_header
from pixscale.core.resize import recorded_resize
from pixscale.core.storage import DTYPES, STORES
from pixscale.core.transform import Transform
from pixscale.errors import InputError, ParamsError
from pixscale.store.backends.zarr.detect import is_zarr_store
from pixscale.store.backends.zarr.reader import (
    ShardedImages,
    open_zarr_images,
    open_zarr_output,
)
from pixscale.store.io.atomic import folder_lock, folder_of
from pixscale.store.naming import IMAGES_DATASET, LABELS_DATASET, is_hdf5, sidecar_path
from pixscale.store.records import companion, first_line, params_of, read_record

if TYPE_CHECKING:
    from upath import UPath

Float32Array = npt.NDArray[np.float32]

#: Bytes of float32 values read back at a time (invert, verify, info, preview).
CHUNK_BYTES = 4 << 20


@dataclass
class ConvertedFile:
    """A pixscale output: its record and parameters, the stored shape, dtype and layout."""

    path: Location
    record: dict[str, Any]
    params: Params
    stored_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    labels: npt.NDArray[Any] | None
    #: Parameter arrays stored beside the record (``params/`` or ``<stem>.params.npz``).
    arrays: dict[str, npt.NDArray[Any]] = field(default_factory=dict)

    @property
    def layout(self) -> str:
        return str(self.output.get("layout", self.params.layout))

    @property
    def output(self) -> dict[str, Any]:
        """The record's ``output`` section (empty when absent)."""
        found = self.record.get("output")
        return found if isinstance(found, dict) else {}

    @property
    def packed(self) -> bool:
        """True for ``--store uint8`` outputs: uint8 pixels decoded on reading."""
        return self.output.get("store") == "uint8"

    @property
    def value_dtype(self) -> str:
        """The dtype of the values this file gives: float16 as stored, else float32."""
        return "float16" if self.dtype == np.float16 else "float32"

    def transform(self) -> Transform:
        """The record's transform, in the dtype of the values (the packed file's decoder)."""
        found = self.__dict__.get("_transform")
        if found is None:
            found = self.__dict__["_transform"] = Transform(self.params, self.value_dtype)
        return found

    def decode(self, stored: npt.NDArray[Any], positions: npt.NDArray[np.intp]) -> Any:
        """Stored rows (output layout) at image ``positions`` as values: packed pixels
        through the float32 kernel, anything else unchanged."""
        if not self.packed:
            return stored
        if self.params.layout == self.layout:  # no layout change: decode as stored
            return self.transform().decode(np.ascontiguousarray(stored), positions)
        pixels = restore_layout(stored, self.params.layout, self.layout)
        values = self.transform().decode(np.ascontiguousarray(pixels), positions)
        return convert_layout(values, self.params.layout, self.layout)

    @property
    def chunk_rows(self) -> int:
        """Images per chunk of about ``CHUNK_BYTES`` of float32 values."""
        return max(1, CHUNK_BYTES // (4 * max(1, math.prod(self.stored_shape[1:]))))

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape in the source's layout, which the parameters refer to."""
        return (self.stored_shape[0], *self.params.image_shape)

    def chunks(self, max_images: int) -> Iterator[Float32Array]:
        """The values in the source's layout, ``max_images`` images at a time (packed
        outputs decoded to float32)."""
        start = 0
        for chunk in self.stored_chunks(max_images):
            values = restore_layout(chunk, self.params.layout, self.layout)
            if self.packed:
                values = self.transform().decode(
                    np.ascontiguousarray(values), np.arange(start, start + len(values))
                )
            start += chunk.shape[0]
            yield values

    def stored_chunks(self, max_images: int) -> Iterator[Float32Array]:
        """The stored values as stored (output layout), ``max_images`` images at a time."""
        count_all = self.stored_shape[0]
        if is_zarr_store(self.path):
            images = open_zarr_images(self.path)
            for start in range(0, count_all, max_images):
                yield np.asarray(images[start : start + max_images])
            return
        if is_hdf5(self.path):
            with collection_paused(self.path), h5py.File(readable(self.path), "r") as handle:
                images = stored_dataset(self.path, handle, IMAGES_DATASET, virtual=True)
                if images is None:
                    raise InputError(f"{self.path}: no 'images' dataset")
                check_virtual(self.path, images)
                for start in range(0, count_all, max_images):
                    yield images[start : start + max_images]
            return
        with open_bytes(self.path) as handle:
            read_npy_header(handle, self.path)
            for start in range(0, count_all, max_images):
                count = min(max_images, count_all - start)
                yield read_images(handle, self.path, count, self.stored_shape[1:], self.dtype)


def open_converted(path: Location) -> ConvertedFile:
    """Open an HDF5 or .npy file written by ``pixscale convert``.

    The record, parameters, labels and data header are read under a shared lock on the
    folder, so they come from one run even while another commits with ``--overwrite``.

    Raises
    ------
    ParamsError
        The record is missing or malformed.
    InputError
        The data does not match its record, or cannot be read (e.g. a missing shard).
    """
    path = locate(path)
    if not (path.is_file() or is_zarr_store(path)):
        raise InputError(f"{path}: no such file")
    folders = [] if is_remote(path) else [folder_of(path)]
    with folder_lock(folders, shared=True):
        record, arrays = read_record(path)
        params = params_of(record, arrays, path)
        output = record.get("output") or {}
        if is_zarr_store(path):
            opened = open_zarr_output(path)
            shape, dtype, labels = opened.shape, opened.dtype, opened.labels
        elif is_hdf5(path):
            shape, dtype, labels = read_hdf5_data(path)
        else:
            shape, dtype, labels = read_npy_data(path, output)
    converted = ConvertedFile(path, record, params, shape, dtype, labels, arrays)
    check_consistent(converted)
    return converted


def read_npy_data(
    path: Location, output: dict[str, Any]
) -> tuple[tuple[int, ...], np.dtype[Any], npt.NDArray[Any] | None]:
    """Shape and dtype from the .npy header, and the labels file the record names."""
    with open_bytes(path) as handle:
        shape, _, dtype = read_npy_header(handle, path)
    labels = None
    labels_file = companion(path, output, "labels", str(sidecar_path(path)))
    if labels_file is not None and labels_file.is_file():
        try:
            labels = np.load(readable(labels_file), allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{labels_file}: unreadable labels: {first_line(exc)}") from exc
        if not isinstance(labels, np.ndarray):
            raise InputError(f"{labels_file}: not a .npy array of labels")
    return tuple(shape), np.dtype(dtype), labels


def read_hdf5_data(
    path: Location,
) -> tuple[tuple[int, ...], np.dtype[Any], npt.NDArray[Any] | None]:
    """Shape and dtype of ``images`` (its shards checked when virtual) and the labels."""
    try:
        with collection_paused(path), h5py.File(readable(path), "r") as handle:
            images = stored_dataset(path, handle, IMAGES_DATASET, virtual=True)
            if images is None:
                raise InputError(f"{path}: no 'images' dataset")
            check_virtual(path, images)
            labels_data = stored_dataset(path, handle, LABELS_DATASET)
            labels = None if labels_data is None else labels_data[()]
            return tuple(images.shape), images.dtype, labels
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {first_line(exc)}") from exc


def stored_dataset(
    path: Location, handle: h5py.File, name: str, virtual: bool = False
) -> h5py.Dataset | None:
    """The dataset ``name`` of this very file (None when there is none), through the one
    HDF5 opener: no link to another file, no external raw storage, not virtual unless
    ``virtual`` (a virtual ``images`` is then checked by ``check_virtual``)."""
    found = local_dataset(handle, path, name, "dataset", virtual=virtual)
    if found is None and local_object(handle, path, name, "dataset") is not None:
        raise InputError(f"{path}: '{name}' is not a dataset")
    return found


def contiguous_map(path: Path, images: h5py.Dataset) -> np.memmap[Any, Any] | None:
    """A read-only memory map of an uncompressed, contiguous ``images`` stored inside
    ``path`` (what pixscale writes without ``--compression``), or None for any other
    storage (chunked, filtered, virtual, external, not yet allocated)."""
    plist = images.id.get_create_plist()
    if (
        images.chunks is not None
        or images.is_virtual
        or plist.get_external_count()
        or plist.get_nfilters()
        or images.dtype.byteorder == ">"
        or images.dtype.kind not in "fu"
    ):
        return None
    offset = images.id.get_offset()
    if offset is None:
        return None
    nbytes = images.dtype.itemsize * math.prod(images.shape)
    if offset + nbytes > path.stat().st_size:
        raise InputError(f"{path}: images end past the end of the file (truncated?)")
    return np.memmap(path, images.dtype, mode="r", offset=offset, shape=images.shape)


def check_virtual(path: Location, images: h5py.Dataset) -> None:
    """Every shard of a virtual ``images`` (dask engine) lies in the output's folder, exists
    and holds what the mapping reads; HDF5 itself would read a missing shard as zeros."""
    if not images.is_virtual:
        return
    plist = images.id.get_create_plist()  # kept alive while its mappings are read
    for index in range(plist.get_virtual_count()):
        name = os.fsdecode(plist.get_virtual_filename(index))
        if name == ".":  # the master file itself
            continue
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise InputError(f"{path}: virtual images read {name}, outside the output's folder")
        if is_remote(path):  # shards are files beside a local output
            raise InputError(f"{path}: virtual images read {name}, a file beside a URL")
        shard = Root(path.parent).resolve(name)  # nor through a link leading out of it
        if not shard.is_file():
            raise InputError(
                f"{path}: shard {name} missing (keep the shards folder beside {path.name})"
            )
        dataset = os.fsdecode(plist.get_virtual_dsetname(index))
        points = int(plist.get_virtual_vspace(index).get_select_npoints())
        if not shard_holds(shard, dataset, points, source_bounds(plist, index)):
            raise InputError(f"{path}: shard {name} does not hold the images the record maps to it")


def source_bounds(plist: Any, index: int) -> tuple[int, ...] | None:
    """The last index a mapping reads from its source, when HDF5 can say (a selection of
    all of the source has no bounds until the source is opened)."""
    try:
        return tuple(plist.get_virtual_srcspace(index).get_select_bounds()[1])
    except (ValueError, RuntimeError):
        return None


def shard_holds(shard: Path, dataset: str, points: int, high: tuple[int, ...] | None) -> bool:
    """The shard has a dataset ``dataset`` of at least ``points`` values reaching at least
    index ``high``, stored in the shard itself (refused otherwise, as any dataset read)."""
    try:
        with h5py.File(shard, "r") as handle:
            found = local_dataset(handle, shard, dataset, "shard dataset")
            if found is None or found.size < points:
                return False
            if high is None:
                return True
            return len(high) == len(found.shape) and all(
                top < size for top, size in zip(high, found.shape, strict=True)
            )
    except OSError:
        return False


def check_consistent(converted: ConvertedFile) -> None:
    """The stored shape, labels and per-image parameters agree with the record."""
    path, params, stored = converted.path, converted.params, converted.stored_shape
    if not stored:
        raise InputError(f"{path}: the images have no image axis")
    layout = converted.output.get("layout", params.layout)
    expected = stored_image_shape(path, params.image_shape, params.layout, layout)
    if tuple(stored[1:]) != expected:
        raise InputError(
            f"{path}: images of shape {tuple(stored[1:])} do not match the record's "
            f"image_shape {list(params.image_shape)} in layout {layout}"
        )
    stored_kind = converted.dtype
    store = converted.output.get("store", "float")
    if store not in STORES:
        raise InputError(f"{path}: the record's output.store {store!r} is not one of {STORES}")
    wanted = "uint8" if converted.packed else converted.output.get("dtype", "float32")
    if wanted not in (*DTYPES, "uint8") or stored_kind != np.dtype(wanted):
        raise InputError(f"{path}: images are {stored_kind}, the record says {wanted}")
    if wanted == "uint8" and not converted.packed:
        raise InputError(f"{path}: images are uint8 but the record's output.store is {store!r}")
    source = converted.record.get("source")
    resize = source.get("resize") if isinstance(source, dict) else None
    if resize is not None:
        try:
            recorded_resize(resize)
        except ParamsError as exc:
            raise InputError(f"{path}: {exc}") from exc
    count = stored[0]
    labels = converted.labels
    if labels is not None and (labels.ndim == 0 or labels.shape[0] != count):
        raise InputError(f"{path}: {labels.size} labels for {count} images")
    if params.scope == "image":
        for name in ("source_low", "source_span"):
            values = getattr(params, name)
            if values.ndim == 0 or values.shape[0] != count:
                raise InputError(
                    f"{path}: {name} holds {values.size} per-image values for {count} images "
                    "(length mismatch)"
                )


def stored_image_shape(
    path: Location, image: tuple[int, ...], source: object, target: object
) -> tuple[int, ...]:
    """One image's shape once moved from layout ``source`` to ``target`` (by arithmetic:
    a hostile record must not make this allocate)."""
    if source == target:
        return tuple(image)
    if source == "nhw" and target in ("nhwc", "nchw") and len(image) == 2:
        return (1, *image) if target == "nchw" else (*image, 1)
    if source in ("nhwc", "nchw") and target in ("nhwc", "nchw") and len(image) == 3:
        order = (2, 0, 1) if target == "nchw" else (1, 2, 0)
        return tuple(image[i] for i in order)
    raise InputError(f"{path}: the record's layouts ({source!r} → {target!r}) do not fit its data")


#: Paths as ``os`` takes them: text, bytes, or an object giving either.
PathArgument = str | bytes | os.PathLike[str] | os.PathLike[bytes]

#: Images selected: one position, evenly spaced positions, or any positions (all checked
#: to lie among the images, and not negative).
Selection = int | range | npt.NDArray[np.intp]

#: What ``Dataset`` indexing takes, for messages.
INDEX_KINDS = "an integer, a slice, 1-D integer positions or a boolean mask"


def path_of(path: PathArgument, storage_options: dict[str, Any] | None = None) -> Location:
    """``path`` as a ``Location`` (a URL with ``storage_options``); bytes decoded as
    ``os`` does (``os.fsdecode``).

    Raises
    ------
    TypeError
        ``path`` is not a path.
    """
    if is_remote(path):
        return path
    return locate(os.fsdecode(os.fspath(path)), storage_options)


def image_selection(index: Any, count: int) -> Selection:
    """The images among ``count`` that ``index`` selects, judged the same way for every
    format (see ``Dataset.__getitem__``).

    Raises
    ------
    IndexError
        An integer, or one of the positions, out of range; a mask of the wrong length.
    TypeError
        Any other kind of index (floats, booleans alone, 2-D positions, None, …).
    ValueError
        A slice step of zero.
    """
    if isinstance(index, slice):
        try:
            return range(*index.indices(count))
        except TypeError:
            raise TypeError(f"slice {index!r}: bounds and step must be integers or None") from None
    if isinstance(index, bool | np.bool_):
        raise TypeError(
            f"cannot select images with a lone boolean ({bool(index)}): use {INDEX_KINDS}"
        )
    if isinstance(index, int | np.integer):
        return checked_position(operator.index(index), count)
    if isinstance(index, list | tuple | range | np.ndarray) or hasattr(index, "__array__"):
        return positions_of(index, count)
    raise TypeError(f"cannot select images with {type(index).__name__}: use {INDEX_KINDS}")


def checked_position(position: int, count: int) -> int:
    """``position`` among ``count`` images, counted from the end when negative."""
    if not -count <= position < count:
        raise IndexError(f"image index {position} is out of range for {count} images")
    return position % count


def positions_of(index: Any, count: int) -> Selection:
    """The positions an array-like ``index`` selects: integers or a boolean mask."""
    if isinstance(index, list | tuple) and not index:
        return np.empty(0, np.intp)
    picked = np.asarray(index)
    if picked.dtype == np.bool_:
        if picked.ndim != 1:
            raise TypeError(f"a boolean mask of images must be 1-D, not of shape {picked.shape}")
        if picked.shape[0] != count:
            raise IndexError(
                f"a boolean mask needs one value per image ({count}), not {len(picked)}"
            )
        return np.flatnonzero(picked).astype(np.intp)
    if picked.dtype == object and picked.ndim == 1 and all(is_integer(v) for v in picked.tolist()):
        # numpy keeps integers beyond 64 bits as objects: none is a position
        raise IndexError(f"an image index is out of range for {count} images")
    if picked.dtype.kind not in "iu":
        raise TypeError(f"cannot select images with {picked.dtype} values: use {INDEX_KINDS}")
    if picked.ndim == 0:
        return checked_position(int(picked), count)
    if picked.ndim != 1:
        raise TypeError(f"image positions must be 1-D, not of shape {picked.shape}")
    outside = picked >= count
    if picked.dtype.kind == "i":
        outside |= picked < -count
    if outside.any():
        first = picked[outside][0]
        raise IndexError(f"image index {first} is out of range for {count} images")
    positions = picked.astype(np.intp)
    positions[positions < 0] += count
    return positions


def is_integer(value: object) -> bool:
    """An integer that is not a boolean."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def read_rows(data: Any, selection: range | npt.NDArray[np.intp]) -> npt.NDArray[Any]:
    """Rows of ``data`` (a numpy array or memory map, an h5py dataset or a zarr array) at
    the selected positions, as an array of its own. Each format is asked only what all of
    them read alike: increasing slices, or increasing unique positions."""
    if isinstance(selection, range):
        if not selection:
            return np.array(data[0:0])
        if selection.step < 0:  # read increasing, hand back reversed
            ascending = range(selection[-1], selection[0] + 1, -selection.step)
            return read_rows(data, ascending)[::-1]
        found = data[selection.start : selection.stop : selection.step]
        return np.array(found) if isinstance(data, np.memmap) else np.asarray(found)
    if isinstance(data, np.ndarray | ShardedImages):  # any order and repeats, in one copy
        return np.asarray(data[selection])  # numpy's fancy indexing copies
    if not len(selection):
        return np.asarray(data[0:0])
    unique, back = np.unique(selection, return_inverse=True)
    return np.asarray(data[unique])[back.reshape(-1)]


class Dataset:
    """A pixscale output opened for reading, as a training loop wants it.

    ``len(d)``, ``d[i]``, ``d[a:b:k]``, ``d[[i, j, …]]`` (any order, repeats allowed) and
    ``d[mask]`` give the values in the output's layout, indexed alike whatever the format:
    float32, float16 as stored, and packed outputs decoded to float32 bit-identical to a
    float32 convert's. ``labels``, ``record`` and ``params`` come from the record. The data
    file is opened on first use in each process, so a ``Dataset`` made in a parent survives
    ``fork``, pickling (spawn) and ``DataLoader`` workers; .npy data is memory-mapped.
    """

    def __init__(self, path: PathArgument, storage_options: dict[str, Any] | None = None) -> None:
        self.path = path_of(path, storage_options)
        self._converted = open_converted(self.path)
        self._images: Any = None
        self._handle: Any = None
        self._pid = -1
        self._lookup = self._packed_lookup()

    def _packed_lookup(self) -> tuple[npt.NDArray[Any], npt.NDArray[np.intp] | None] | None:
        """For a packed file stored in its parameters' layout with a table of the 256
        values per scope element: that table and each pixel's offset into it, so that a
        read is one ``take``. None otherwise (the transform's own decode is used)."""
        converted = self._converted
        if not converted.packed or converted.params.layout != converted.layout:
            return None
        table = converted.transform().lookup_table()
        if table is None:
            return None
        values, offsets = table
        return values, (None if offsets is None else offsets.reshape(self.shape[1:]))

    @property
    def record(self) -> dict[str, Any]:
        """The parameter record (``pixscale.params/1``)."""
        return self._converted.record

    @property
    def params(self) -> Params:
        """The parameters the data was scaled with."""
        return self._converted.params

    @property
    def labels(self) -> npt.NDArray[Any] | None:
        """The labels stored with the images, or None."""
        return self._converted.labels

    @property
    def shape(self) -> tuple[int, ...]:
        """The stored shape (output layout)."""
        return self._converted.stored_shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of the values given (float32, or float16 as stored)."""
        return np.dtype(self._converted.value_dtype)

    @property
    def packed(self) -> bool:
        """True when the file holds uint8 pixels decoded on reading (``--store uint8``)."""
        return self._converted.packed

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> Any:
        """The values of the images ``index`` selects, the same for every format.

        ``index`` is an integer (numpy integers too), a slice (any step), 1-D integer
        positions (any order, repeats allowed, none for an empty selection) or a boolean
        mask of one value per image; in a tuple, the rest indexes within the images as
        numpy does. An integer out of range is an ``IndexError``, any other kind of index
        a ``TypeError``.
        """
        rest: tuple[Any, ...] = ()
        if index is Ellipsis:
            index = slice(None)
        elif isinstance(index, tuple):
            if index and index[0] is Ellipsis:  # numpy's meaning, over every image
                index, rest = slice(None), index
            else:
                index, rest = (index[0] if index else slice(None)), index[1:]
        selection = image_selection(index, len(self))
        values = self._read(selection)
        if not rest:
            return values
        return values[rest] if isinstance(selection, int) else values[(slice(None), *rest)]

    def _read(self, selection: Selection) -> Any:
        """The values of the selected images (one image for an integer)."""
        with collection_paused(self.path):  # h5py reading a URL (see collection_paused)
            return self._read_paused(selection)

    def _read_paused(self, selection: Selection) -> Any:
        data = self._data()
        if isinstance(selection, int):
            if not self.packed:
                found = data[selection]
                # a memory map gives views of the file: hand out arrays of their own
                return np.array(found) if isinstance(data, np.memmap) else found
            if self._lookup is not None:
                values, offsets = self._lookup
                pixels = np.asarray(data[selection])
                return values.take(pixels if offsets is None else offsets + pixels)
            return self._read(range(selection, selection + 1))[0]
        stored = read_rows(data, selection)
        if not self.packed:
            return stored
        if not len(selection):  # nothing to decode
            return np.empty((0, *self.shape[1:]), self.dtype)
        if isinstance(selection, range):
            selection = np.arange(selection.start, selection.stop, selection.step, dtype=np.intp)
        return self._converted.decode(stored, selection)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (spawned workers): the path and record travel, never an open file.
        state = dict(self.__dict__)
        state.update(_images=None, _handle=None, _pid=-1)
        return state

    def _data(self) -> Any:
        if self._images is None or self._pid != os.getpid():
            self._handle = None
            if is_zarr_store(self.path):
                self._images = open_zarr_images(self.path)  # shards mapped, or zarr.Array
            elif is_hdf5(self.path):
                self._handle = h5py.File(readable(self.path), "r")
                self._images = self._handle[IMAGES_DATASET]
                mapped = None if is_remote(self.path) else contiguous_map(self.path, self._images)
                if mapped is not None:  # read as a .npy is: no HDF5 call per sample
                    self._handle.close()
                    self._handle, self._images = None, mapped
            elif is_remote(self.path):
                self._images = RemoteNpy(self.path, self.shape, self._converted.dtype)
            else:
                self._images = np.load(self.path, mmap_mode="r", allow_pickle=False)
            self._pid = os.getpid()
        return self._images

    def close(self) -> None:
        """Close the data file (it reopens on the next access)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = self._images = None

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(  # noqa: A001 (the package face's verb)
    path: PathArgument, storage_options: dict[str, Any] | None = None
) -> Dataset:
    """Open a pixscale output (.h5, .zarr, or .npy with its sidecar) for reading.

    Parameters
    ----------
    path
        The output: a ``str``, ``bytes`` or ``os.PathLike`` path, or a URL
        (``s3://bucket/train.zarr``).
    storage_options
        Credentials, endpoint and other options of a URL's filesystem (fsspec's).

    Returns
    -------
    Dataset
        Lazy, fork-safe access to the values, labels and record.
    """
    return Dataset(path, storage_options)


class RemoteNpy:
    """The images of a .npy object on an object store, read by byte range (a memory map's
    indexing, without the map): ``d[i]``, ``d[a:b]``, ``d[positions]``."""

    def __init__(self, path: UPath, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        with open_bytes(path) as handle:
            read_npy_header(handle, path)
            self.offset = handle.tell()
        self.path, self.shape, self.dtype = path, shape, dtype
        self.image_bytes = dtype.itemsize * math.prod(shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, positions: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
        starts = [self.offset + int(p) * self.image_bytes for p in positions]
        ends = [start + self.image_bytes for start in starts]
        fs, key = self.path.fs, self.path.path
        found = fs.cat_ranges([key] * len(starts), starts, ends) if starts else []
        data = np.frombuffer(b"".join(found), self.dtype)
        return data.reshape((len(starts), *self.shape[1:]))

    def __getitem__(self, index: Any) -> npt.NDArray[Any]:
        if isinstance(index, int | np.integer):
            row: npt.NDArray[Any] = self.rows(np.array([index], np.intp))[0]
            return row
        if isinstance(index, slice):
            return self.rows(np.arange(len(self), dtype=np.intp)[index])
        return self.rows(np.asarray(index, np.intp))
