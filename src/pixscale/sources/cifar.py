"""CIFAR-10/100 binary batches: label byte(s) then 3072 planar RGB bytes per record."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array
from pixscale.sources.rawio import read_images

PIXELS = 3 * 32 * 32
PICKLE_PROTOCOL_BYTE = 0x80
#: Records read at a time while collecting labels (about 12 MiB).
LABEL_BLOCK = 4096


def looks_like_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == PICKLE_PROTOCOL_BYTE and 2 <= head[1] <= 5


def label_bytes(path: Path) -> int:
    """1 for CIFAR-10 records (3073 bytes), 2 for CIFAR-100 (coarse, fine: 3074 bytes)."""
    size = path.stat().st_size
    fits = [n for n in (1, 2) if size % (n + PIXELS) == 0]
    if len(fits) == 2:
        return 2 if "100" in path.name or path.name in ("train.bin", "test.bin") else 1
    if not fits:
        raise InputError(
            f"{path}: unknown format (not IDX, .npy, .npz or HDF5, and {size} bytes is not "
            "a whole number of CIFAR records of 3073 or 3074 bytes)"
        )
    return fits[0]


@dataclass
class CifarSource(Source):
    random_access: ClassVar[bool] = True
    header: int = 1

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.window(0, self.n_images, max_images)

    def read_window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        path = self.files[0]
        with path.open("rb") as handle:
            handle.seek(start * (self.header + PIXELS))
            for first in range(start, stop, max_images):
                count = min(max_images, stop - first)
                records = read_images(handle, path, count, (self.header + PIXELS,))
                planar = records[:, self.header :].reshape(count, 3, 32, 32)
                yield np.ascontiguousarray(planar.transpose(0, 2, 3, 1))


def open_cifar(path: Path) -> CifarSource:
    header = label_bytes(path)
    count = path.stat().st_size // (header + PIXELS)
    # CIFAR-100 stores (coarse, fine); the fine label is the class.
    values = np.empty(count, np.uint8)
    with path.open("rb") as handle:
        for start in range(0, count, LABEL_BLOCK):
            block = min(LABEL_BLOCK, count - start)
            records = read_images(handle, path, block, (header + PIXELS,))
            values[start : start + block] = records[:, header - 1]
    labels = Labels(values, f"{path.name} (record byte {header - 1})")
    return CifarSource(
        name=path.name,
        format="cifar100" if header == 2 else "cifar10",
        shape=(count, 32, 32, 3),
        layout="nhwc",
        files=(path,),
        labels=labels,
        header=header,
    )
