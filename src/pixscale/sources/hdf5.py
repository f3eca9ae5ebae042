"""uint8 datasets inside HDF5 files written by other tools."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pixscale.core.layouts import default_layout
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array
from pixscale.store.naming import RECORD_ATTRIBUTE

LABEL_NAMES = ("labels", "label", "y", "targets")

if TYPE_CHECKING:
    import h5py


def find_labels(handle: h5py.File, key: str, count: int) -> tuple[str, Labels] | None:
    """A labels dataset of the right length beside the images (``x_…`` ↔ ``y_…`` too)."""
    group, _, name = key.rpartition("/")
    candidates = [f"{group}/{n}" if group else n for n in LABEL_NAMES]
    if name.startswith("x"):
        candidates.insert(0, f"{group}/y{name[1:]}" if group else f"y{name[1:]}")
    import h5py  # imported on use: it adds ~30 ms to every start-up

    for candidate in candidates:
        item = handle.get(candidate)
        if isinstance(item, h5py.Dataset) and item.shape == (count,) and item.dtype.kind in "iu":
            return candidate, Labels(item[()], candidate)
    return None


def uint8_datasets(handle: h5py.File) -> list[str]:
    import h5py

    found: list[str] = []

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset) and item.dtype == "u1" and item.ndim >= 2:
            found.append(name)

    handle.visititems(visit)
    return found


@dataclass
class Hdf5Source(Source):
    random_access: ClassVar[bool] = True
    key: str = ""

    def chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.window(0, self.n_images, max_images)

    def window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        import h5py

        with h5py.File(self.files[0], "r") as handle:
            dataset = handle[self.key]
            for first in range(start, stop, max_images):
                yield dataset[first : min(first + max_images, stop)]


def open_hdf5(path: Path, key: str | None) -> Hdf5Source:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: damaged HDF5 file ({exc})") from exc
    with handle:
        if RECORD_ATTRIBUTE in handle.attrs:
            raise InputError(
                f"{path}: is a pixscale output (float32); use 'pixscale invert' to get uint8 back"
            )
        if key is None:
            found = uint8_datasets(handle)
            if len(found) != 1:
                listing = ", ".join(found) or "none"
                raise InputError(f"{path}: uint8 image datasets: {listing}; choose one with --key")
            key = found[0]
        item = handle.get(key)
        if not isinstance(item, h5py.Dataset):
            raise InputError(f"{path}: no dataset {key!r}")
        if item.dtype != "u1":
            raise InputError(f"{path}: dataset {key!r} dtype is {item.dtype}, expected uint8")
        if item.ndim < 2:
            raise InputError(f"{path}: dataset {key!r} has shape {item.shape}; expected images")
        shape = tuple(item.shape)
        found_labels = find_labels(handle, key, shape[0])
    return Hdf5Source(
        name=f"{path.name}:{key}",
        format="hdf5",
        shape=shape,
        layout=default_layout(len(shape)),
        files=(path,),
        labels=found_labels[1] if found_labels else None,
        key=key,
    )
