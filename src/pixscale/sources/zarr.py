"""uint8 and uint16 arrays in a Zarr v3 store (a folder with ``zarr.json``), read one window
at a time.

A store holding one array is that array; a group is searched for uint8/uint16 arrays of two or
more dimensions (``--key`` chooses among several), and a 1-D array of numbers named
``labels`` (or ``y…`` beside ``x…``) of the same length comes along as the labels (refused
unless they are integers).

Every object zarr-python reads goes through a store that applies the containment rule
(``containment``): a chunk, shard, array folder or ``zarr.json`` that is a link leading out
of the store is refused, naming the link. Every chunk must be stored, counted file by file,
and inside a shard entry by entry from the shard's index. Before zarr-python decodes a
chunk, its stored bytes are checked to decode to no more than the chunk's own size
(``ChunkBound``); codecs whose decoded size cannot be bounded that way are refused.

A store at a URL (a prefix holding ``zarr.json``) is read through its filesystem: the
chunks of each window are fetched together (no further than the most a chunk may take
stored; a shard's inner chunks once its index agrees with the object's size), measured the
same way, and only then handed to zarr-python, whose store serves nothing unchecked. Object
stores have no links: a key is contained when it stays under the store's prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from pixscale.core.containment import Root, contained_store, remote_store, store_key
from pixscale.core.layouts import default_layout
from pixscale.core.location import (
    Location,
    is_remote,
    shown,
    storage_exceptions,
    storage_reason,
)
from pixscale.core.pixels import require_source_dtype, source_dtype
from pixscale.core.zarr_codecs import (
    ChunkBound,
    file_reader,
    unsupported,
)
from pixscale.core.zarr_shards import ABSENT, MAX_CHUNKS, Shards, native_bytes_only
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array, check_labels_size
from pixscale.sources.zarr_chunks import bounded, chunk_coords, sharding_of, stored_rows
from pixscale.sources.zarr_remote import fetch_rows, remote_missing

INSTALL_HINT = "pip install 'pixscale[zarr]'"
ZARR_JSON = "zarr.json"
#: Metadata files of a Zarr v2 store (a folder without ``zarr.json``).
V2_METADATA = (".zarray", ".zgroup")
#: Names tried for the labels beside the images (after ``y…`` for ``x…``).
LABEL_NAMES = ("labels", "label", "y", "targets")
#: Kinds of number a labels array may hold to be taken (``Labels`` refuses non-integers).
NUMBERS = "biufc"
#: The record attribute of a pixscale output (a float32 store, not an input).
RECORD_ATTRIBUTE = "pixscale_params"


def require_zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise InputError(f"Zarr input needs zarr-python 3: {INSTALL_HINT}") from None
    return zarr


def looks_like_zarr(path: Location) -> bool:
    """A folder with a Zarr v3 ``zarr.json`` (at a URL: a prefix holding one)."""
    return is_folder(path) and is_file(path / ZARR_JSON)


def looks_like_zarr_v2(path: Location) -> bool:
    """A folder (a prefix) with the ``.zarray`` or ``.zgroup`` of a Zarr v2 store (and no v3
    ``zarr.json``)."""
    return is_folder(path) and any(is_file(path / name) for name in V2_METADATA)


def is_folder(path: Location) -> bool:
    """A local folder; at a URL, any prefix (object stores have no folders to ask about)."""
    return is_remote(path) or path.is_dir()


def is_file(path: Location) -> bool:
    """Whether ``path`` is a file or object; False where the storage cannot say."""
    try:
        return path.is_file()
    except storage_exceptions():
        return False


def refuse_zarr_v2(path: Location) -> InputError:
    """The error for a Zarr v2 store, which zarr-python reads and can save as v3."""
    return InputError(
        f"{shown(path)}: is a Zarr v2 store; pixscale reads Zarr v3 (convert it with zarr-python: "
        "zarr.save('v3.zarr', zarr.open('v2.zarr')[...], zarr_format=3), or zarr.save_group "
        "with each array for a group)"
    )


@contextlib.contextmanager
def quiet_numcodecs() -> Iterator[None]:
    """zarr-python warns on opening an array with a ``numcodecs.*`` codec; such codecs are
    refused with an error of their own (``check_codecs``), so the warning would only add a
    second line."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr")
        yield


def reason(exc: BaseException) -> str:
    """A one-line, never empty reason for a zarr-python failure."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


@dataclass
class ZarrSource(Source):
    """A uint8/uint16 array of a Zarr v3 store (``key`` inside it; ``""`` for a bare array)."""

    random_access: ClassVar[bool] = True
    key: str = ""

    def _array(self) -> Any:
        zarr = require_zarr()
        path = self.files[0]
        try:
            with quiet_numcodecs():
                store = input_store(path)
                return zarr.open_array(store, path=self.key, mode="r", zarr_format=3)
        except InputError:
            raise
        except Exception as exc:  # zarr raises many kinds on a damaged store
            raise InputError(
                f"{shown(path)}: cannot open Zarr array {self.key!r} ({reason(exc)})"
            ) from exc

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.window(0, self.n_images, max_images)

    def read_window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        """Images ``start``…``stop - 1``, each stored chunk read once.

        Uncompressed chunks of whole images (the ``bytes`` codec alone, sharded or not)
        are read by byte range straight into each chunk handed out (``RawChunks``), so a
        chunk is never read whole for a slice of it; any other store is read through
        zarr-python in pieces that never straddle a stored chunk, a chunk larger than a
        piece decoded once and handed out in slices.
        """
        array = self._array()
        path = self.files[0]
        raw = RawChunks.of(array, path, self.key)
        if raw is not None:
            yield from raw.window(start, stop, max_images, np.dtype(self.dtype))
            return
        unit = stored_rows(array)
        for first, last in decoded_spans(start, stop, max_images, unit):
            values = self._decode(array, first, last)
            for at in range(0, last - first, max_images):
                yield values[at : at + max_images]

    def _decode(self, array: Any, first: int, last: int) -> UInt8Array:
        """Images ``first``…``last - 1`` decoded by zarr-python into a new array."""
        from zarr.core.buffer import default_buffer_prototype

        values = np.empty((last - first, *self.image_shape), np.dtype(self.dtype))
        out = default_buffer_prototype().nd_buffer.from_numpy_array(values)
        try:
            with checked_rows(array, self.files[0], self.key, first, last):
                array.get_basic_selection(slice(first, last), out=out)
        except InputError:
            raise
        except Exception as exc:  # a missing or corrupt chunk object
            raise InputError(
                f"{shown(self.files[0])}: cannot read images {first}…{last - 1} ({reason(exc)})"
            ) from exc
        return values

    @property
    def preferred_rows(self) -> int | None:
        """Images per stored chunk along the first axis when chunks are decoded whole
        (compressed, or not of whole images): chunks of the engine that are a multiple or
        a fraction of it decode each stored chunk once. None when any length reads alike."""
        array = self._array()
        if RawChunks.of(array, self.files[0], self.key) is not None:
            return None
        return stored_rows(array)

    def sha256(self) -> str:
        """Digest of the values in C order (little-endian; a store is many objects, compressed or
        not, so its files are not a stable thing to hash; its values are)."""
        digest = hashlib.sha256()
        rows = max(1, (16 << 20) // max(1, self.image_bytes))
        for chunk in self.chunks(rows):
            digest.update(chunk.data)
        return digest.hexdigest()


def decoded_spans(start: int, stop: int, most: int, unit: int) -> Iterator[tuple[int, int]]:
    """Spans of ``start``…``stop`` to decode whole, stored chunks being ``unit`` images:
    whole chunks, at most ``most`` images of them, when they are no larger; else the rest
    of one chunk (handed out ``most`` at a time). A chunk is never decoded twice, but at
    the window's edges."""
    first = start
    while first < stop:
        boundary = (first // unit + 1) * unit
        end = boundary if boundary - first > most else (first + most) // unit * unit
        end = min(end, stop)
        yield first, end
        first = end


@dataclass
class RawChunks:
    """Uncompressed chunks of whole images in a store's files (one chunk per file, or inner
    chunks of shards found through each shard's index), read by byte range: each image's
    bytes are read once, straight into the array handed out.

    Every file is found by the containment rule (``Root.resolve``), its size (or its shard
    index's entry) checked before any byte of it is read.
    """

    path: Path
    key: str
    root: Root
    shape: tuple[int, ...]
    unit: int
    image_bytes: int
    encode: Any
    shards: Shards | None

    @classmethod
    def of(cls, array: Any, path: Location, key: str) -> RawChunks | None:
        """The raw reader of ``array``, or None when its chunks must be decoded (compressed,
        other codecs, big-endian on this machine, chunks that split an image)."""
        shape = tuple(int(n) for n in array.shape)
        if not isinstance(path, Path) or tuple(int(n) for n in array.chunks[1:]) != shape[1:]:
            return None
        sharding = sharding_of(array, path, key)
        codecs = list(array.metadata.codecs if sharding is None else sharding.codecs)
        if not native_bytes_only(codecs, np.dtype(array.dtype).itemsize):
            return None
        shards = None if sharding is None else Shards(array, sharding, path)
        if shards is not None and shards.shard[1:] != shape[1:]:
            return None
        image_bytes = math.prod(shape[1:]) * np.dtype(array.dtype).itemsize
        encode = array.metadata.encode_chunk_key
        return cls(path, key, Root(path), shape, stored_rows(array), image_bytes, encode, shards)

    def window(
        self, start: int, stop: int, most: int, dtype: np.dtype[Any]
    ) -> Iterator[UInt8Array]:
        """Images ``start``…``stop - 1``, ``most`` at a time, each a new array."""
        opened = OpenFile()
        try:
            for first in range(start, stop, most):
                values = np.empty((min(most, stop - first), *self.shape[1:]), dtype)
                self.fill(values, first, opened)
                yield values
        finally:
            opened.close()

    def fill(self, values: UInt8Array, first: int, opened: OpenFile) -> None:
        """Read images ``first``… into ``values``, file by file."""
        row_bytes = self.image_bytes
        target = values.reshape(-1).view(np.uint8).data
        row, last = first, first + values.shape[0]
        while row < last:
            chunk, within = divmod(row, self.unit)
            take = min(self.unit - within, last - row)
            name, offset = self.locate(chunk, opened)
            at = (row - first) * row_bytes
            read_exactly(
                opened,
                name,
                target[at : at + take * row_bytes],
                offset + within * row_bytes,
                self.path,
            )
            row += take

    def locate(self, chunk: int, opened: OpenFile) -> tuple[str, int]:
        """The file holding stored chunk ``chunk`` (opened in ``opened``) and where the
        chunk starts in it."""
        chunk_bytes = self.unit * self.image_bytes
        zeros = (0,) * (len(self.shape) - 1)
        if self.shards is None:
            name = os.path.join(self.key, self.encode((chunk, *zeros)))
            size = opened.open(self.root, name)
            if size != chunk_bytes:
                raise InputError(
                    f"{shown(self.path)}: chunk {name} holds {size:,} bytes, not the "
                    f"{chunk_bytes:,} of its uncompressed images"
                )
            return name, 0
        shard, inner = divmod(chunk, self.shards.per_shard[0])
        name = os.path.join(self.key, self.encode((shard, *zeros)))
        if opened.name != name:
            opened.open(self.root, name)
            opened.table = self.shards.table(opened.real, name)
        offsets, lengths = opened.table
        entry = (inner, *zeros)
        if int(lengths[entry]) != chunk_bytes:
            stored = "not stored" if offsets[entry] == ABSENT else f"{int(lengths[entry]):,} bytes"
            raise InputError(
                f"{shown(self.path)}: shard {name}: inner chunk {entry} is {stored}, not the "
                f"{chunk_bytes:,} bytes of its uncompressed images"
            )
        return name, int(offsets[entry])


class OpenFile:
    """The one file a raw read has open (files are read in order, each once)."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.fd = -1
        self.real = Path()
        self.table: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]] = (
            np.empty(0, np.uint64),
            np.empty(0, np.uint64),
        )

    def open(self, root: Root, name: str) -> int:
        """Open ``name`` under ``root`` (containment-checked); its size."""
        if self.name == name:
            return os.fstat(self.fd).st_size
        self.close()
        self.real = root.resolve(name)
        try:
            self.fd = os.open(self.real, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise InputError(f"{root.path}: cannot read {name} ({exc.strerror})") from exc
        self.name = name
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.name = -1, None


def read_exactly(opened: OpenFile, name: str, target: memoryview, offset: int, path: Path) -> None:
    """Fill ``target`` from ``offset`` of the open file, or refuse a file that ends early."""
    done = 0
    while done < len(target):
        got = os.preadv(opened.fd, [target[done:]], offset + done)
        if got <= 0:
            raise InputError(f"{shown(path)}: {name} ends at byte {offset + done:,} (truncated?)")
        done += got


def find_images(group: Any, path: Location) -> str:
    """The only uint8/uint16 array of two or more dimensions in ``group`` (recursively)."""
    found = list_uint8(group)
    if len(found) == 1:
        return found[0]
    listing = ", ".join(sorted(found)) or "none"
    raise InputError(f"{shown(path)}: uint8/uint16 image arrays: {listing}; choose one with --key")


def list_uint8(group: Any) -> list[str]:
    found = [
        name
        for name, array in group.arrays()
        if source_dtype(array.dtype) is not None and array.ndim >= 2
    ]
    for name, sub in group.groups():
        found += [f"{name}/{inner}" for inner in list_uint8(sub)]
    return found


def find_labels(group: Any, path: Location, key: str, count: int) -> Labels | None:
    """A 1-D integer array of ``count`` entries beside the images."""
    parent, _, name = key.rpartition("/")
    candidates = [f"{parent}/{n}" if parent else n for n in LABEL_NAMES]
    if name.startswith("x"):
        candidates.insert(0, f"{parent}/y{name[1:]}" if parent else f"y{name[1:]}")
    for candidate in candidates:
        try:
            item = group[candidate]
        except KeyError:
            continue
        if not hasattr(item, "dtype") or tuple(item.shape) != (count,):
            continue
        if np.dtype(item.dtype).kind not in NUMBERS:
            continue
        return read_labels(item, path, candidate, count)
    return None


def read_labels(array: Any, path: Location, key: str, count: int) -> Labels:
    """The labels array ``key``, checked as the images are (every chunk stored, none
    decoding past its size) before it is read; values that are no labels (floats) refused
    by ``Labels``."""
    check_labels_size(path, count, np.dtype(array.dtype).itemsize)
    check_codecs(array, path, key)
    check_stored(array, path, key)
    try:
        with checked_rows(array, path, key, 0, count):
            values = np.asarray(array[...])
    except InputError:
        raise
    except Exception as exc:  # a corrupt chunk object
        raise InputError(
            f"{shown(path)}: cannot read labels array {key!r} ({reason(exc)})"
        ) from exc
    try:
        return Labels(values, key)
    except InputError as exc:
        raise InputError(f"{shown(path)}: array {exc}") from None


def check_codecs(array: Any, path: Location, key: str) -> None:
    """Refuse codecs whose decoded size cannot be bounded before decoding (``unsupported``),
    and codecs applied to whole shards."""
    sharding = sharding_of(array, path, key)
    codecs = list(array.metadata.codecs)
    if sharding is not None:
        if len(codecs) > 1:
            raise InputError(
                f"{shown(path)}: {described(key)}: codecs after sharding_indexed (on whole shards) "
                "are not supported"
            )
        codecs = list(sharding.codecs)
    why = unsupported(codecs)
    if why is not None:
        raise InputError(f"{shown(path)}: {described(key)}: {why}")


def described(key: str) -> str:
    """How errors name the array ``key`` of a store (``""``: the store is the array)."""
    return f"array {key!r}" if key else "the array"


def check_decoded(array: Any, path: Path, key: str, first: int, last: int) -> None:
    """Before zarr-python decodes them: every stored chunk holding rows ``first``…``last - 1``
    of ``array`` must decode to no more than its own size (``ChunkBound``), else refused
    naming the chunk."""
    sharding = sharding_of(array, path, key)
    codecs = list(array.metadata.codecs if sharding is None else sharding.codecs)
    size = math.prod(int(n) for n in array.chunks) * np.dtype(array.dtype).itemsize
    bound = ChunkBound.of(codecs, size)
    root = Root(path)
    if sharding is None:
        unit = stored_rows(array)
        for coords in chunk_coords(first, last, unit, tuple(array.cdata_shape)):
            name = os.path.join(key, array.metadata.encode_chunk_key(coords))
            with stored_file(root, name) as (fd, length):
                bounded(bound, file_reader(fd, 0, length), length, path, f"chunk {name}")
        return
    shards = Shards(array, sharding, path)
    rows = shards.shard[0]
    for coords in chunk_coords(first, last, rows, shards.grid):
        name = os.path.join(key, array.metadata.encode_chunk_key(coords))
        offsets, lengths = shards.table(root.resolve(name), name)
        start = coords[0] * rows
        inner = chunk_coords(
            max(first, start) - start,
            min(last, start + rows) - start,
            shards.inner[0],
            shards.per_shard,
        )
        with stored_file(root, name) as (fd, _):
            for entry in inner:
                if offsets[entry] == ABSENT:
                    continue
                at, length = int(offsets[entry]), int(lengths[entry])
                where = f"shard {name}: inner chunk {entry}"
                bounded(bound, file_reader(fd, at, length), length, path, where)


@contextlib.contextmanager
def stored_file(root: Root, name: str) -> Iterator[tuple[int, int]]:
    """The open file ``name`` under ``root`` (containment-checked) and its size."""
    real = root.resolve(name)
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"{root.path}: cannot read {name} ({exc.strerror})") from exc
    try:
        yield fd, os.fstat(fd).st_size
    finally:
        os.close(fd)


def check_stored(array: Any, path: Location, key: str) -> None:
    """Every chunk must be stored (inside a shard: every inner chunk its index lists): a
    missing one would read as fill values, and a header alone could declare any number of
    images."""
    expected = int(array.nchunks)
    if expected > MAX_CHUNKS:
        raise InputError(
            f"{shown(path)}: declares {expected:,} chunks; at most {MAX_CHUNKS:,} are read"
        )
    if isinstance(path, Path):
        missing, first = local_missing(array, path, key)
    else:
        missing, first = remote_missing(array, path, key)
    if missing:
        label = f" {key!r}" if key else ""
        where = f"first in shard {first}; " if first else ""
        raise InputError(
            f"{shown(path)}: array{label} has {missing:,} of {expected:,} chunks not stored "
            f"({where}they would read as fill values)"
        )


def local_missing(array: Any, path: Path, key: str) -> tuple[int, str | None]:
    """How many chunks of the array ``key`` of the local store ``path`` are not stored, and
    the first shard missing some."""
    root = Root(path)
    stored, linked_folders = stored_files(root, key)
    sharding = sharding_of(array, path, key)
    first: str | None = None
    missing = 0
    if sharding is None:
        for coords in np.ndindex(*array.cdata_shape):
            name = array.metadata.encode_chunk_key(coords)
            if not is_stored(root, key, name, stored, linked_folders):
                missing += 1
        return missing, None
    shards = Shards(array, sharding, path)
    for coords in np.ndindex(*shards.grid):
        name = array.metadata.encode_chunk_key(coords)
        named = os.path.join(key, name)
        needed = shards.needed(coords)
        if is_stored(root, key, name, stored, linked_folders):
            needed &= shards.absent(root.resolve(named), named)
        lost = int(np.count_nonzero(needed))
        if lost and first is None:
            first = named
        missing += lost
    return missing, first


def stored_files(root: Root, key: str) -> tuple[set[str], bool]:
    """Names of the regular files under the array folder ``key`` (relative to it), found in
    one walk that follows no link, each link met checked by the containment rule; and
    whether a link to a folder was met (files under it are then looked up one by one)."""
    files: set[str] = set()
    linked_folders = False
    pending = [(str(root.resolve(key)), "")]
    while pending:
        folder, inside = pending.pop()
        with os.scandir(folder) as listing:
            entries = list(listing)
        for entry in entries:
            relative = f"{inside}{entry.name}"
            if entry.is_symlink():
                target = root.resolve(os.path.join(key, relative))
                linked_folders |= target.is_dir()
                if target.is_file():
                    files.add(relative)
            elif entry.is_dir(follow_symlinks=False):
                pending.append((entry.path, f"{relative}/"))
            elif entry.is_file(follow_symlinks=False):
                files.add(relative)
    return files, linked_folders


def is_stored(root: Root, key: str, name: str, stored: set[str], linked_folders: bool) -> bool:
    """Whether the chunk or shard ``name`` of the array folder ``key`` is a stored file."""
    if name in stored:
        return True
    return linked_folders and root.resolve(os.path.join(key, name)).is_file()


def node_type(path: Location) -> str:
    try:
        meta = json.loads(read_metadata(path))
    except (OSError, ValueError) as exc:
        raise InputError(f"{shown(path)}: damaged Zarr store ({ZARR_JSON}: {exc})") from exc
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3:
        raise InputError(f"{shown(path)}: not a Zarr v3 store")
    if RECORD_ATTRIBUTE in (meta.get("attributes") or {}):
        raise InputError(
            f"{shown(path)}: is a pixscale output (float32); use 'pixscale invert' to get "
            "uint8 back"
        )
    return str(meta.get("node_type", ""))


def open_zarr(path: Location, key: str | None = None) -> ZarrSource:
    """Open the uint8/uint16 images of the Zarr v3 store ``path`` (``key`` names them in a
    group)."""
    kind = node_type(path)
    try:
        with quiet_numcodecs():
            array, key, labels = open_node(path, kind, key)
    except InputError:
        raise
    except Exception as exc:  # zarr raises many kinds on a damaged store
        raise InputError(f"{shown(path)}: damaged Zarr store ({reason(exc)})") from exc
    pixels = require_source_dtype(path, array.dtype, f"array {key!r}")
    check_codecs(array, path, key)
    check_stored(array, path, key)
    shape = tuple(int(n) for n in array.shape)
    if len(shape) < 2:
        raise InputError(f"{shown(path)}: array {key!r} has shape {shape}; expected images")
    return ZarrSource(
        name=f"{path.name}:{key}" if key else path.name,
        format="zarr",
        shape=shape,
        layout=default_layout(len(shape)),
        files=(path,),
        labels=labels,
        key=key,
        dtype=pixels,
    )


def open_node(path: Location, kind: str, key: str | None) -> tuple[Any, str, Labels | None]:
    """The images array of the store ``path`` (a node of type ``kind``), its key and the
    labels beside it."""
    zarr = require_zarr()
    if kind == "array":
        if key:
            raise InputError(f"{shown(path)}: is a single Zarr array; --key does not apply")
        return zarr.open_array(input_store(path), mode="r", zarr_format=3), "", None
    group = zarr.open_group(input_store(path), mode="r", zarr_format=3)
    key = find_images(group, path) if key is None else key
    if not isinstance(path, Path):
        store_key(path, key)  # a key climbing out of the store's prefix is refused
    try:
        array = group[key]
    except KeyError:
        raise InputError(f"{shown(path)}: no array {key!r}") from None
    if not hasattr(array, "dtype"):
        raise InputError(f"{shown(path)}: {key!r} is a group, not an array")
    return array, key, find_labels(group, path, key, int(array.shape[0]))


def input_store(path: Location) -> Any:
    """The read-only zarr-python store of ``path``: containment-checked on disk, serving
    only checked chunk bytes at a URL (``remote_store``)."""
    return contained_store(path) if isinstance(path, Path) else remote_store(path)


def read_metadata(path: Location) -> bytes:
    """The root ``zarr.json`` of the store ``path``."""
    if isinstance(path, Path):
        return Root(path).resolve(ZARR_JSON).read_bytes()
    try:
        return bytes(path.fs.cat_file(store_key(path, ZARR_JSON)))
    except FileNotFoundError:
        raise InputError(f"{shown(path)}: no {ZARR_JSON} (not a Zarr v3 store)") from None
    except storage_exceptions() as exc:
        raise InputError(f"{shown(path)}: {storage_reason(exc)}") from exc


@contextlib.contextmanager
def checked_rows(array: Any, path: Location, key: str, first: int, last: int) -> Iterator[None]:
    """Rows ``first``…``last - 1`` of ``array`` made safe to decode while inside: on disk their
    chunks are measured (``check_decoded``); at a URL they are fetched, measured and held by
    the store, which serves nothing else, and let go on leaving."""
    if isinstance(path, Path):
        check_decoded(array, path, key, first, last)
        yield
        return
    store = array.store
    try:
        store.held.update(fetch_rows(array, store, path, key, first, last))
        yield
    finally:
        store.held.clear()
