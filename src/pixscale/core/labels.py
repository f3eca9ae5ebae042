"""Integer class labels that travel with the images: the one type every reader builds and
every writer stores, and the one place they are checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.location import Location
from pixscale.errors import InputError

#: Largest label value: labels are stored and handed to frameworks as int64.
MAX_LABEL = int(np.iinfo(np.int64).max)


@dataclass
class Labels:
    """Integer class labels that travel with the images.

    Every reader's labels pass through here, so one rule holds for all of them: a 1-D array
    of integers, none negative, none beyond int64, and each a valid index into
    ``class_names`` where those exist. Anything else is refused naming ``origin`` and the
    first offending row.

    Parameters
    ----------
    values
        One label per image.
    origin
        Where they came from (a file name, ``file:column``), as errors and records name it.
    class_names
        The class names, ``class_names[label]``, where the format carries them.
    path
        The file they were read from, when it is not one of the image files: protected
        from the run's outputs.
    """

    values: npt.NDArray[np.integer]
    origin: str
    class_names: list[str] | None = None
    path: Location | None = None

    def __post_init__(self) -> None:
        self.values = checked_labels(self.values, self.origin, self.class_names)


def checked_labels(values: Any, origin: str, class_names: list[str] | None) -> npt.NDArray[Any]:
    """``values`` as a 1-D integer array, or an ``InputError`` naming ``origin`` and the
    first row that is not a valid label."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(f"{origin}: labels must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise InputError(f"{origin}: labels must be integers, got {array.dtype}")
    if array.size == 0:
        return array
    if array.dtype.kind == "i":
        negative = np.flatnonzero(array < 0)
        if negative.size:
            row = int(negative[0])
            raise InputError(f"{origin}: label {int(array[row])} at row {row} is negative")
    elif array.dtype.itemsize == 8:
        over = np.flatnonzero(array > np.uint64(MAX_LABEL))
        if over.size:
            row = int(over[0])
            raise InputError(
                f"{origin}: label {int(array[row])} at row {row} is beyond int64 ({MAX_LABEL})"
            )
    if class_names is not None:
        beyond = np.flatnonzero(array >= len(class_names))
        if beyond.size:
            row = int(beyond[0])
            raise InputError(
                f"{origin}: label {int(array[row])} at row {row} is not one of the "
                f"{len(class_names)} classes (0…{len(class_names) - 1})"
            )
    return array
