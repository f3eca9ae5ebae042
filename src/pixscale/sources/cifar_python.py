"""CIFAR-10/100 "python version" batches, as torchvision and Keras download them.

Those batches are pickled dicts (``data``: uint8 rows of 3072 planar RGB bytes, ``labels``
or ``fine_labels``). Unpickling can run arbitrary code, so they are read through an
unpickler that admits only what these batches contain: dicts, lists, bytes and strings,
ints, and numpy's array reconstruction; any other global is refused by name. Batches are
read one at a time, from their own files or straight from ``cifar-10-python.tar.gz``
(never extracted), so memory stays near one batch (about 30 MB).
"""

from __future__ import annotations

import fnmatch
import io
import pickle
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array

PIXELS = 3 * 32 * 32
#: The globals a CIFAR batch pickle refers to (Python 2 and 3, numpy 1 and 2); nothing else
#: is ever looked up. ``_codecs.encode`` is how protocol 2 spells bytes.
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)
#: A batch is about 30 MB (10,000 images); members larger than this are refused unread.
MAX_BATCH_BYTES = 512 << 20
#: Member names of the training batches, chosen when no ``--key`` is given.
TRAINING_MEMBERS = ("data_batch_*", "train")
#: Members that hold metadata, not images.
META_MEMBERS = ("batches.meta", "meta")


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that looks up only ``ALLOWED_GLOBALS``."""

    def __init__(self, stream: io.BufferedIOBase, origin: str) -> None:
        super().__init__(stream, encoding="bytes")
        self.origin = origin

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise InputError(
                f"{self.origin}: the pickle refers to {module}.{name}; only the contents of "
                "CIFAR batches (dicts, lists, bytes, ints, numpy arrays) are unpickled"
            )
        return super().find_class(module, name)


def unpickle_batch(data: bytes, origin: str) -> dict[bytes, Any]:
    """The dict of one pickled batch, through ``BatchUnpickler``."""
    try:
        loaded = BatchUnpickler(io.BytesIO(data), origin).load()
    except InputError:
        raise
    except Exception as exc:  # a damaged pickle raises many kinds
        raise InputError(f"{origin}: damaged pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(loaded, dict):
        raise InputError(f"{origin}: pickle holds a {type(loaded).__name__}, not a CIFAR batch")
    return {k.encode() if isinstance(k, str) else k: v for k, v in loaded.items()}


def batch_arrays(batch: dict[bytes, Any], origin: str) -> tuple[UInt8Array, npt.NDArray[Any]]:
    """Images (N, 32, 32, 3) and labels of one batch dict, checked."""
    data = batch.get(b"data")
    labels = batch.get(b"fine_labels", batch.get(b"labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise InputError(f"{origin}: no uint8 'data' rows in this batch")
    if data.shape[1] != PIXELS:
        raise InputError(f"{origin}: rows of {data.shape[1]} bytes, CIFAR rows have {PIXELS}")
    values = np.asarray(labels if labels is not None else [], dtype=object)
    if values.shape != (data.shape[0],) or not all(
        isinstance(v, int) and 0 <= v < 256 for v in values.tolist()
    ):
        raise InputError(f"{origin}: labels do not match the {data.shape[0]} images")
    planar = data.reshape(-1, 3, 32, 32)
    return np.ascontiguousarray(planar.transpose(0, 2, 3, 1)), values.astype(np.int64)


@dataclass
class Batch:
    """Where one pickled batch is: a file of its own, or a member of a tar archive."""

    path: Path
    member: str | None = None

    @property
    def origin(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    def read(self) -> bytes:
        if self.member is None:
            if self.path.stat().st_size > MAX_BATCH_BYTES:
                raise InputError(f"{self.path}: larger than any CIFAR batch; refusing to load it")
            return self.path.read_bytes()
        try:
            with tarfile.open(self.path, "r:*") as archive:
                info = archive.getmember(self.member)
                if not info.isfile() or info.size > MAX_BATCH_BYTES:
                    raise InputError(f"{self.origin}: not a CIFAR batch of plausible size")
                handle = archive.extractfile(info)
                assert handle is not None
                return handle.read()
        except (tarfile.TarError, OSError, EOFError, KeyError, zlib.error) as exc:
            raise InputError(f"{self.origin}: damaged archive ({exc})") from exc


@dataclass
class CifarPythonSource(Source):
    """Pickled CIFAR batches read one batch at a time, in the order given."""

    random_access: ClassVar[bool] = False
    batches: tuple[Batch, ...] = field(default=())

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        for batch in self.batches:
            images, _ = batch_arrays(unpickle_batch(batch.read(), batch.origin), batch.origin)
            for start in range(0, images.shape[0], max_images):
                yield images[start : start + max_images]


def select_members(names: list[str], key: str | None, origin: Path) -> list[str]:
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


def class_names(path: Path, names: list[str], fine: bool) -> list[str] | None:
    """Label names from the archive's meta member, where present."""
    meta = [n for n in names if n.rsplit("/", 1)[-1] in META_MEMBERS]
    if not meta:
        return None
    batch = unpickle_batch(Batch(path, meta[0]).read(), f"{path}:{meta[0]}")
    found = batch.get(b"fine_label_names" if fine else b"label_names")
    if not isinstance(found, list):
        return None
    return [v.decode() if isinstance(v, bytes) else str(v) for v in found]


def open_cifar_archive(path: Path, key: str | None) -> CifarPythonSource:
    """CIFAR-10/100 python batches inside a tar (``cifar-10-python.tar.gz``)."""
    try:
        with tarfile.open(path, "r:*") as archive:
            names = [m.name for m in archive.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{path}: damaged tar archive ({exc})") from exc
    batches = [Batch(path, name) for name in select_members(names, key, path)]
    return batches_source(path, batches, names)


def open_cifar_batch(path: Path) -> CifarPythonSource:
    """One pickled CIFAR batch file (``data_batch_1``, ``test_batch``, ``train``)."""
    return batches_source(path, [Batch(path)], [])


def batch_name(batch: Batch) -> str:
    """``cifar-10-python.tar.gz:test_batch``: the archive and the member's base name."""
    return f"{batch.path.name}:{(batch.member or '').rsplit('/', 1)[-1]}"


def batches_source(path: Path, batches: list[Batch], names: list[str]) -> CifarPythonSource:
    counts, labels, fine = [], [], False
    for batch in batches:  # one batch in memory at a time
        loaded = unpickle_batch(batch.read(), batch.origin)
        fine = fine or b"fine_labels" in loaded
        images, values = batch_arrays(loaded, batch.origin)
        counts.append(images.shape[0])
        labels.append(values)
    which = "fine label" if fine else "label"
    return CifarPythonSource(
        name=path.name if len(batches) > 1 or batches[0].member is None else batch_name(batches[0]),
        format="cifar100-python" if fine else "cifar10-python",
        shape=(sum(counts), 32, 32, 3),
        layout="nhwc",
        files=(path,),
        labels=Labels(
            np.concatenate(labels), f"{path.name} ({which}s)", class_names(path, names, fine)
        ),
        batches=tuple(batches),
    )
