"""CIFAR-10/100 "python version" batches, as torchvision and Keras download them.

Those batches are pickled dicts (``data``: uint8 rows of 3072 planar RGB bytes, ``labels``
or ``fine_labels``). Unpickling can run arbitrary code, so they are read through an
unpickler that admits only what these batches contain: dicts, lists, bytes and strings,
ints, and numpy arrays as numpy pickles them; any other global is refused by name. Even the
numpy names are never handed to numpy: each stands for a narrow builder here, which makes an
array only as a C-ordered array of a plain numeric dtype over a ``bytes`` buffer of exactly
its size (no strides, no offset, no uninitialised memory), and only while the arrays of a
pickle stay within the pickle's own size.

Batches are read one at a time, from their own files or straight from
``cifar-10-python.tar.gz`` (never extracted), so memory stays near one batch (about 30 MB);
an archive's member list is read once per pass, and an archive of more than
``MAX_ARCHIVE_MEMBERS`` members is refused.
"""

from __future__ import annotations

import fnmatch
import io
import math
import pickle
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from pixscale.core.location import Location, open_bytes, size_of
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array
from pixscale.sources.cifar import (
    CIFAR10_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_FINE_CLASSES,
)
from pixscale.sources.members import TAR_ERRORS, Tar, open_tar, storage_errors, tar_entries

PIXELS = 3 * 32 * 32
#: A batch is about 30 MB (10,000 images); members larger than this are refused unread.
MAX_BATCH_BYTES = 512 << 20
#: Members of an archive read as CIFAR batches (the downloads hold 8 and 5): bounds the
#: listing, and the times a compressed archive is read again from its start to go back.
MAX_ARCHIVE_MEMBERS = 256
#: Member names of the training batches, chosen when no ``--key`` is given.
TRAINING_MEMBERS = ("data_batch_*", "train")
#: Members that hold metadata, not images.
META_MEMBERS = ("batches.meta", "meta")
#: Dtype kinds an array may have: booleans, integers and floats (never objects).
ARRAY_KINDS = "biuf"
#: Dimensions numpy allows an array, and a length no real array reaches along any.
MAX_DIMS = 64
MAX_LENGTH = 1 << 40
#: Names of the encoding by which pickle protocol 2 spells bytes.
LATIN1 = ("latin1", "latin-1", "iso-8859-1", "iso8859-1")


class Builder:
    """What the unpickler hands out for one allowed global: a callable that builds only
    what it checks. Its state cannot be set (a pickle may try), and, not being a class, it
    cannot be instantiated by the ``NEWOBJ`` opcodes."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[..., Any]) -> None:
        self.build = build

    def __call__(self, *args: Any) -> Any:
        return self.build(*args)

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("state set on a numpy name")


class PickledDtype:
    """``numpy.dtype(spec, align, copy)`` of a pickle: a plain numeric dtype. Its pickled
    state may set the byte order, nothing else (numpy's own ``__setstate__`` is never
    called: it could change a dtype shared by the whole process)."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        order = order.decode("ascii", "replace") if isinstance(order, bytes) else order
        if order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"dtype state {state!r:.60} is not numpy's")
        if order == "<":
            self.dtype = self.dtype.newbyteorder("<")
        elif order == ">":
            self.dtype = self.dtype.newbyteorder(">")


class PendingArray:
    """``_reconstruct(ndarray, ...)`` of a pickle: an array that the next ``BUILD`` gives
    its shape, dtype and bytes, through ``ArrayRules.array``."""

    __slots__ = ("array", "rules")

    def __init__(self, rules: ArrayRules) -> None:
        self.rules = rules
        self.array: npt.NDArray[Any] | None = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise pickle.UnpicklingError("array state set twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("array state is not numpy's")
        shape, dtype, fortran, raw = state[-4:]
        self.array = self.rules.array(shape, dtype, bool(fortran), raw)


class ArrayRules:
    """The builders behind the numpy names of one pickle, and the bytes its arrays may
    still take: together no more than the pickle's own size, since every array's bytes
    are in the pickle."""

    def __init__(self, origin: str, budget: int) -> None:
        self.origin = origin
        self.budget = budget
        self.ndarray = Builder(self.new_array)
        self.builders: dict[tuple[str, str], Builder] = {
            ("numpy.core.multiarray", "_reconstruct"): Builder(self.reconstruct),
            ("numpy._core.multiarray", "_reconstruct"): Builder(self.reconstruct),
            ("numpy", "ndarray"): self.ndarray,
            ("numpy", "dtype"): Builder(self.dtype),
            ("_codecs", "encode"): Builder(self.encode),
            ("__builtin__", "bytes"): Builder(self.empty_bytes),
            ("builtins", "bytes"): Builder(self.empty_bytes),
        }

    def refuse(self, reason: str) -> InputError:
        return InputError(f"{self.origin}: {reason}; only plain arrays are unpickled")

    def encode(self, text: Any, encoding: Any = "utf-8") -> bytes:
        """``_codecs.encode(text, "latin1")``: how protocol 2 spells bytes (no other
        codec: some would multiply the size at every call)."""
        if not isinstance(text, str) or encoding not in LATIN1:
            raise self.refuse(f"the pickle encodes {type(text).__name__} with {encoding!r:.40}")
        return text.encode("latin1")

    def empty_bytes(self, *args: Any) -> bytes:
        """``bytes()``: how protocol 2 spells empty bytes (``bytes(n)`` would allocate)."""
        if args:
            raise self.refuse(f"the pickle calls bytes() with {len(args)} arguments")
        return b""

    def dtype(self, spec: Any, align: Any = False, copy: Any = True) -> PickledDtype:
        """A plain numeric dtype from its name (``u1``); never objects, records or
        sub-arrays."""
        name = spec.decode("ascii", "replace") if isinstance(spec, bytes) else spec
        if not isinstance(name, str) or len(name) > 8:
            raise self.refuse(f"the pickle asks for dtype {spec!r:.40}")
        try:
            dtype = np.dtype(name)
        except (TypeError, ValueError) as exc:
            raise self.refuse(f"the pickle asks for dtype {name!r}") from exc
        if dtype.kind not in ARRAY_KINDS or dtype.hasobject or dtype.shape:
            raise self.refuse(f"the pickle asks for dtype {name!r}")
        return PickledDtype(dtype)

    def reconstruct(self, kind: Any, shape: Any = None, typecode: Any = None) -> PendingArray:
        """``_reconstruct(ndarray, (0,), b"b")``: an array to be filled by its state."""
        if kind is not self.ndarray:
            raise self.refuse("the pickle reconstructs something other than numpy.ndarray")
        return PendingArray(self)

    def new_array(
        self,
        shape: Any,
        dtype: Any = None,
        buffer: Any = None,
        offset: Any = 0,
        strides: Any = None,
        order: Any = None,
    ) -> npt.NDArray[Any]:
        """``numpy.ndarray(shape, dtype, buffer, offset, strides, order)``, held to what
        ``array`` allows: no offset, and strides only as C order has them."""
        dims = (shape,) if isinstance(shape, int) else shape
        if offset not in (0, None):
            raise self.refuse(f"the pickle makes an array at offset {offset!r:.40}")
        if order not in (None, "C", b"C"):
            raise self.refuse(f"the pickle makes an array in order {order!r:.40}")
        array = self.array(dims, dtype, False, buffer)
        if strides is not None and tuple_of_ints(strides) != array.strides:
            raise self.refuse(f"the pickle makes an array with strides {strides!r:.60}")
        return array

    def array(self, shape: Any, dtype: Any, fortran: bool, raw: Any) -> npt.NDArray[Any]:
        """The one way an array is made: C order, a dtype from ``dtype``, over ``raw``
        bytes of exactly shape × itemsize, within the pickle's size. Nothing is allocated
        (the array is a read-only view of ``raw``)."""
        dims = tuple_of_ints(shape)
        if dims is None or len(dims) > MAX_DIMS or any(not 0 <= n <= MAX_LENGTH for n in dims):
            raise self.refuse(f"the pickle makes an array of shape {shape!r:.60}")
        if not isinstance(dtype, PickledDtype):
            raise self.refuse(f"the pickle makes an array of {type(dtype).__name__}")
        if fortran:
            raise self.refuse("the pickle makes an array in Fortran order")
        if type(raw) is not bytes:
            what = "no buffer" if raw is None else f"a {type(raw).__name__} buffer"
            raise self.refuse(f"the pickle makes an array from {what}, not bytes")
        size = math.prod(dims) * dtype.dtype.itemsize
        if size != len(raw):
            raise self.refuse(
                f"the pickle makes an array of shape {dims} ({size:,} bytes) "
                f"from {len(raw):,} bytes"
            )
        if size > self.budget:
            raise self.refuse(
                f"the pickle's arrays hold more bytes than the pickle ({size:,} more, "
                f"{self.budget:,} left)"
            )
        self.budget -= size
        return np.frombuffer(raw, dtype.dtype).reshape(dims)


def tuple_of_ints(value: Any) -> tuple[int, ...] | None:
    """``value`` as a tuple of ints, or None when it is not one (bools are not ints)."""
    if not isinstance(value, (tuple, list)):
        return None
    if not all(type(n) is int for n in value):
        return None
    return tuple(value)


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that gives each allowed global a checked builder (``ArrayRules``);
    any other is refused by name."""

    def __init__(self, stream: io.BufferedIOBase, origin: str, budget: int) -> None:
        super().__init__(stream, encoding="bytes")
        self.origin = origin
        self.rules = ArrayRules(origin, budget)

    def find_class(self, module: str, name: str) -> Any:
        builder = self.rules.builders.get((module, name))
        if builder is None:
            raise InputError(
                f"{self.origin}: the pickle refers to {module}.{name}; only the contents of "
                "CIFAR batches (dicts, lists, bytes, ints, numpy arrays) are unpickled"
            )
        return builder


def unpickle_batch(data: bytes, origin: str) -> dict[bytes, Any]:
    """The dict of one pickled batch, through ``BatchUnpickler``; its arrays are numpy
    arrays, checked as ``ArrayRules.array`` says."""
    try:
        loaded = BatchUnpickler(io.BytesIO(data), origin, len(data)).load()
    except InputError:
        raise
    except Exception as exc:  # a damaged pickle raises many kinds
        raise InputError(f"{origin}: damaged pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(loaded, dict):
        raise InputError(f"{origin}: pickle holds a {type(loaded).__name__}, not a CIFAR batch")
    return {k.encode() if isinstance(k, str) else k: finished(v, origin) for k, v in loaded.items()}


def finished(value: Any, origin: str) -> Any:
    """A value of the batch dict, with a reconstructed array in place of its placeholder."""
    if not isinstance(value, PendingArray):
        return value
    if value.array is None:
        raise InputError(f"{origin}: the pickle makes an array it never gives data")
    return value.array


def batch_labels(batch: dict[bytes, Any], key: bytes, count: int, origin: str) -> npt.NDArray[Any]:
    """The labels under ``key``, as they are: ``count`` integers (a list, or a 1-D integer
    array). Their values are checked by ``Labels``, which names the label and its row."""
    labels = batch.get(key)
    name = key.decode("ascii", "replace")
    if isinstance(labels, np.ndarray) and labels.ndim == 1:
        if labels.dtype.kind not in "iu":
            raise InputError(f"{origin}: '{name}' are {labels.dtype}, not integers")
        values: npt.NDArray[Any] = labels
    elif isinstance(labels, list):
        values = list_labels(labels, name, origin)
    else:
        raise InputError(f"{origin}: no '{name}' list of integers in this batch")
    if len(values) != count:
        raise InputError(f"{origin}: {len(values):,} {name} do not match the {count:,} images")
    return values


def list_labels(labels: list[Any], name: str, origin: str) -> npt.NDArray[Any]:
    """A pickled list of labels as an array; an entry that is no integer (bools are not)
    or that no int64 holds is refused, naming it and its row."""
    for row, value in enumerate(labels):
        if type(value) is not int:
            raise InputError(
                f"{origin}: '{name}' entry {value!r:.40} at row {row} is a "
                f"{type(value).__name__}, not an integer"
            )
    try:
        return np.asarray(labels, np.int64)
    except OverflowError:
        row = next(r for r, v in enumerate(labels) if not -(1 << 63) <= v < 1 << 63)
        raise InputError(
            f"{origin}: '{name}' entry {labels[row]} at row {row} is beyond int64"
        ) from None


def batch_arrays(batch: dict[bytes, Any], origin: str) -> tuple[UInt8Array, npt.NDArray[Any]]:
    """Images (N, 32, 32, 3) and labels of one batch dict, checked."""
    data = batch.get(b"data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise InputError(f"{origin}: no uint8 'data' rows in this batch")
    if data.shape[1] != PIXELS:
        raise InputError(f"{origin}: rows of {data.shape[1]} bytes, CIFAR rows have {PIXELS}")
    key = b"fine_labels" if b"fine_labels" in batch else b"labels"
    values = batch_labels(batch, key, data.shape[0], origin)
    planar = data.reshape(-1, 3, 32, 32)
    return np.ascontiguousarray(planar.transpose(0, 2, 3, 1)), values


@dataclass
class Batch:
    """Where one pickled batch is: a file of its own, or a member of a tar archive."""

    path: Location
    member: str | None = None
    #: The member's header, as the archive's one listing found it.
    info: tarfile.TarInfo | None = field(default=None, repr=False, compare=False)

    @property
    def origin(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


@dataclass
class CifarPythonSource(Source):
    """Pickled CIFAR batches read one batch at a time, in the order given."""

    random_access: ClassVar[bool] = False
    batches: tuple[Batch, ...] = field(default=())

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        for batch, data in read_batches(self.files[0], self.batches):
            images, _ = batch_arrays(unpickle_batch(data, batch.origin), batch.origin)
            for start in range(0, images.shape[0], max_images):
                yield images[start : start + max_images]


def read_file_batch(path: Location) -> bytes:
    """The bytes of a batch that is a file of its own."""
    with storage_errors(path):
        if size_of(path) > MAX_BATCH_BYTES:
            raise InputError(f"{path}: larger than any CIFAR batch; refusing to load it")
        with open_bytes(path) as handle:
            return handle.read()


def read_member(archive: tarfile.TarFile, batch: Batch) -> bytes:
    """The bytes of one member of an open archive, from the header the listing found."""
    info = batch.info
    if info is None or not info.isfile() or info.size > MAX_BATCH_BYTES:
        raise InputError(f"{batch.origin}: not a CIFAR batch of plausible size")
    handle = archive.extractfile(info)
    assert handle is not None
    data = handle.read()
    if len(data) != info.size:
        raise InputError(f"{batch.origin}: truncated: {len(data):,} of {info.size:,} bytes")
    return data


def read_batches(path: Location, batches: tuple[Batch, ...]) -> Iterator[tuple[Batch, bytes]]:
    """Each batch's bytes in turn; members through one opening of the archive, each read
    at the offset the listing found (never by searching the archive again)."""
    if all(batch.member is None for batch in batches):
        for batch in batches:
            yield batch, read_file_batch(batch.path)
        return
    with open_tar(path) as archive:
        for batch in batches:
            try:
                data = read_member(archive, batch)
            except TAR_ERRORS as exc:
                raise InputError(f"{batch.origin}: damaged archive ({exc})") from exc
            yield batch, data


def list_members(archive: Tar, path: Location) -> dict[str, tarfile.TarInfo]:
    """The regular members of an archive by name, in archive order, read once (through
    ``tar_entries``, which refuses links and an archive that does not end properly); a
    name that appears twice, and more than ``MAX_ARCHIVE_MEMBERS`` members, are refused."""
    found: dict[str, tarfile.TarInfo] = {}
    for position, member in tar_entries(archive, path):
        if position >= MAX_ARCHIVE_MEMBERS:
            raise InputError(
                f"{path}: holds more than {MAX_ARCHIVE_MEMBERS:,} members; a CIFAR archive "
                "holds a few batches"
            )
        if member.name in found:
            raise InputError(f"{path}:{member.name}: member appears twice in the archive")
        if member.isfile():
            found[member.name] = member
    return found


def select_members(names: list[str], key: str | None, origin: Location) -> list[str]:
    """Members chosen by ``key`` (a name or pattern, matched on the base name), or the
    training batches; in archive order."""
    base = {name: name.rsplit("/", 1)[-1] for name in names}
    patterns = (key,) if key else TRAINING_MEMBERS
    chosen = [n for n in names if any(fnmatch.fnmatchcase(base[n], p) for p in patterns)]
    chosen = [n for n in chosen if base[n] not in META_MEMBERS]
    if not chosen:
        listing = ", ".join(sorted(v for v in base.values() if v not in META_MEMBERS))
        raise InputError(
            f"{origin}: no batch matches {key or 'the training batches'}; it holds {listing}"
        )
    return sorted(chosen, key=lambda n: (len(base[n]), base[n]))


@dataclass
class ClassNames:
    """The classes labels index: the meta member's names where there is one, else the
    dataset's own (10 for CIFAR-10; 100 fine and 20 coarse for CIFAR-100)."""

    meta: dict[bytes, Any] = field(default_factory=dict)

    def names(self, key: bytes, standard: list[str]) -> list[str]:
        found = self.meta.get(key)
        if not isinstance(found, list) or not found:
            return standard
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in found]

    def of(self, fine: bool) -> list[str]:
        if fine:
            return self.names(b"fine_label_names", CIFAR100_FINE_CLASSES)
        return self.names(b"label_names", CIFAR10_CLASSES)

    @property
    def coarse(self) -> list[str]:
        return self.names(b"coarse_label_names", CIFAR100_COARSE_CLASSES)


def read_meta(
    archive: tarfile.TarFile, path: Location, members: dict[str, tarfile.TarInfo]
) -> ClassNames:
    """The class names of the archive's meta member, where it has one."""
    meta = [n for n in members if n.rsplit("/", 1)[-1] in META_MEMBERS]
    if not meta:
        return ClassNames()
    batch = Batch(path, meta[0], members[meta[0]])
    return ClassNames(unpickle_batch(read_member(archive, batch), batch.origin))


def open_cifar_archive(path: Location, key: str | None) -> CifarPythonSource:
    """CIFAR-10/100 python batches inside a tar (``cifar-10-python.tar.gz``): its member
    list is read once, then the chosen batches at their offsets, in archive order (a
    compressed archive is read front to back: going back means starting over)."""
    with open_tar(path) as archive:
        members = list_members(archive, path)
        chosen = select_members(list(members), key, path)
        batches = [Batch(path, name, members[name]) for name in chosen]
        classes = read_meta(archive, path, members)
        in_archive_order = sorted(batches, key=lambda batch: members[batch.member or ""].offset)
        return batches_source(path, batches, read_batches_of(archive, in_archive_order), classes)


def read_batches_of(
    archive: tarfile.TarFile, batches: list[Batch]
) -> Iterator[tuple[Batch, bytes]]:
    """Each batch's bytes, in the order given, from an archive already open."""
    for batch in batches:
        yield batch, read_member(archive, batch)


def open_cifar_batch(path: Location) -> CifarPythonSource:
    """One pickled CIFAR batch file (``data_batch_1``, ``test_batch``, ``train``)."""
    batches = [Batch(path)]
    return batches_source(path, batches, read_batches(path, tuple(batches)), ClassNames())


def batch_name(batch: Batch) -> str:
    """``cifar-10-python.tar.gz:test_batch``: the archive and the member's base name."""
    return f"{batch.path.name}:{(batch.member or '').rsplit('/', 1)[-1]}"


def batch_labels_checked(
    batch: Batch, loaded: dict[bytes, Any], values: npt.NDArray[Any], classes: ClassNames
) -> bool:
    """Check one batch's labels against its classes (naming the batch and the row); True
    for CIFAR-100 (fine labels)."""
    fine = b"fine_labels" in loaded
    where = batch_name(batch) if batch.member else batch.path.name
    Labels(values, f"{where} ({'fine labels' if fine else 'labels'})", classes.of(fine))
    if fine and b"coarse_labels" in loaded:
        coarse = batch_labels(loaded, b"coarse_labels", len(values), batch.origin)
        Labels(coarse, f"{where} (coarse labels)", classes.coarse)
    return fine


def batches_source(
    path: Location,
    batches: list[Batch],
    contents: Iterator[tuple[Batch, bytes]],
    classes: ClassNames,
) -> CifarPythonSource:
    """The source of ``batches`` (in this order), whose ``contents`` are read once here to
    count the images and check the labels, one batch in memory at a time."""
    found: dict[str, tuple[int, npt.NDArray[Any]]] = {}
    kinds = set()
    for batch, data in contents:  # one batch in memory at a time
        loaded = unpickle_batch(data, batch.origin)
        images, values = batch_arrays(loaded, batch.origin)
        kinds.add(batch_labels_checked(batch, loaded, values, classes))
        if len(kinds) > 1:
            raise InputError(f"{batch.origin}: mixes CIFAR-10 and CIFAR-100 batches")
        # checked: within int64, whatever integer dtype the batch pickled them as
        found[batch.origin] = (images.shape[0], values.astype(np.int64, copy=False))
    counts = [found[batch.origin][0] for batch in batches]
    labels = [found[batch.origin][1] for batch in batches]
    fine = kinds == {True}
    which = "fine label" if fine else "label"
    return CifarPythonSource(
        name=path.name if len(batches) > 1 or batches[0].member is None else batch_name(batches[0]),
        format="cifar100-python" if fine else "cifar10-python",
        shape=(sum(counts), 32, 32, 3),
        layout="nhwc",
        files=(path,),
        labels=Labels(np.concatenate(labels), f"{path.name} ({which}s)", classes.of(fine)),
        batches=tuple(batches),
    )
