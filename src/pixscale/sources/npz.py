"""Arrays inside ``.npz`` archives (e.g. Keras' mnist.npz), streamed from the zip member."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixscale.core.layouts import default_layout
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array
from pixscale.sources.npy import read_npy_header, require_uint8
from pixscale.sources.rawio import read_images

ZIP_MAGIC = b"PK\x03\x04"


def label_key(key: str) -> str | None:
    """Keras naming: ``x_train`` ↔ ``y_train``, ``x_test`` ↔ ``y_test``, ``x`` ↔ ``y``."""
    if key == "x" or key.startswith("x_"):
        return "y" + key[1:]
    return None


@dataclass
class NpzSource(Source):
    """One uint8 array of an .npz archive, read in windows (compressed members too)."""

    member: str = ""

    def chunks(self, max_images: int) -> Iterator[UInt8Array]:
        path = self.files[0]
        with zipfile.ZipFile(path) as archive, archive.open(self.member) as handle:
            read_npy_header(handle, path)  # type: ignore[arg-type]
            for start in range(0, self.n_images, max_images):
                count = min(max_images, self.n_images - start)
                yield read_images(handle, path, count, self.image_shape)  # type: ignore[arg-type]


def open_npz(path: Path, key: str | None) -> NpzSource:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise InputError(f"{path}: damaged .npz archive ({exc})") from exc
    with archive:
        names = [n.removesuffix(".npy") for n in archive.namelist()]
        if key is None:
            if len(names) != 1:
                raise InputError(f"{path}: holds {', '.join(names)}; choose one with --key")
            key = names[0]
        if key not in names:
            raise InputError(f"{path}: no array {key!r}; it holds {', '.join(names)}")
        try:
            with archive.open(key + ".npy") as handle:
                shape, fortran, dtype = read_npy_header(handle, path)  # type: ignore[arg-type]
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(f"{path}: damaged .npz archive ({exc})") from exc
        labels = None
        partner = label_key(key)
        if partner in names:
            with archive.open(partner + ".npy") as handle:
                values = np.load(handle, allow_pickle=False)
            labels = Labels(values, f"{path.name}:{partner}")
    require_uint8(path, dtype)
    if fortran or len(shape) < 2:
        raise InputError(f"{path}: array {key!r} has shape {shape}; expected C-ordered images")
    return NpzSource(
        name=f"{path.name}:{key}",
        format="npz",
        shape=tuple(shape),
        layout=default_layout(len(shape)),
        files=(path,),
        labels=labels,
        member=key + ".npy",
    )
