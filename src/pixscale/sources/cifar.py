"""CIFAR-10/100 binary batches: label byte(s) then 3072 planar RGB bytes per record."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pixscale.core.location import Location, open_bytes, size_of
from pixscale.core.rawio import read_images
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array

PIXELS = 3 * 32 * 32
PICKLE_PROTOCOL_BYTE = 0x80
#: Records read at a time while collecting labels (about 12 MiB).
LABEL_BLOCK = 4096
#: The classes of CIFAR-10 and CIFAR-100 (fine and coarse), in label order, as the
#: datasets' own ``batches.meta`` and ``meta`` files name them.
CIFAR10_CLASSES = ("airplane automobile bird cat deer dog frog horse ship truck").split()
CIFAR100_FINE_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach "
    "couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster "
    "house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree "
    "motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear "
    "pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
    "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel "
    "streetcar sunflower sweet_pepper table tank telephone television tiger tractor train "
    "trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables "
    "household_electrical_devices household_furniture insects large_carnivores "
    "large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles "
    "small_mammals trees vehicles_1 vehicles_2"
).split()


def looks_like_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == PICKLE_PROTOCOL_BYTE and 2 <= head[1] <= 5


def label_bytes(path: Location) -> int:
    """1 for CIFAR-10 records (3073 bytes), 2 for CIFAR-100 (coarse, fine: 3074 bytes)."""
    size = size_of(path)
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
        return self.read_window(0, self.n_images, max_images)

    def read_window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        path = self.files[0]
        with open_bytes(path) as handle:
            handle.seek(start * (self.header + PIXELS))
            for first in range(start, stop, max_images):
                count = min(max_images, stop - first)
                records = read_images(handle, path, count, (self.header + PIXELS,))
                planar = records[:, self.header :].reshape(count, 3, 32, 32)
                yield np.ascontiguousarray(planar.transpose(0, 2, 3, 1))


def open_cifar(path: Location) -> CifarSource:
    """A CIFAR-10 or CIFAR-100 binary batch; its labels are checked against the dataset's
    classes (10; CIFAR-100: 100 fine and 20 coarse) before anything is converted."""
    header = label_bytes(path)
    count = size_of(path) // (header + PIXELS)
    values = np.empty((count, header), np.uint8)
    with open_bytes(path) as handle:
        for start in range(0, count, LABEL_BLOCK):
            block = min(LABEL_BLOCK, count - start)
            records = read_images(handle, path, block, (header + PIXELS,))
            values[start : start + block] = records[:, :header]
    if header == 2:
        # CIFAR-100 stores (coarse, fine); the fine label is the class.
        Labels(values[:, 0], f"{path.name} (record byte 0, coarse)", CIFAR100_COARSE_CLASSES)
        labels = Labels(values[:, 1], f"{path.name} (record byte 1)", CIFAR100_FINE_CLASSES)
    else:
        labels = Labels(values[:, 0], f"{path.name} (record byte 0)", CIFAR10_CLASSES)
    return CifarSource(
        name=path.name,
        format="cifar100" if header == 2 else "cifar10",
        shape=(count, 32, 32, 3),
        layout="nhwc",
        files=(path,),
        labels=labels,
        header=header,
    )
