"""Open any supported uint8 image source, recognised by content rather than by name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array
from pixscale.sources.cifar import looks_like_pickle, open_cifar
from pixscale.sources.folder import open_folder
from pixscale.sources.hdf5 import HDF5_SIGNATURE, open_hdf5
from pixscale.sources.idx import looks_like_idx, open_idx, read_idx_array
from pixscale.sources.npy import NPY_MAGIC, open_npy
from pixscale.sources.npz import ZIP_MAGIC, open_npz
from pixscale.sources.rawio import GZIP_MAGIC, open_maybe_gzip

__all__ = ["Labels", "Source", "open_source", "read_labels"]

FORMAT_NAMES = "IDX, .npy, .npz, HDF5, CIFAR .bin or an image folder"


def sniff(path: Path) -> str:
    """Name the format of ``path`` from its first bytes (after gunzip)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        return "folder"
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    with path.open("rb") as raw:
        head = raw.read(8)
    if head.startswith(HDF5_SIGNATURE):
        return "hdf5"
    if head.startswith(ZIP_MAGIC):
        return "npz"
    if head.startswith(GZIP_MAGIC):
        with open_maybe_gzip(path) as handle:
            head = handle.read(8)
    if head.startswith(NPY_MAGIC):
        return "npy"
    if looks_like_idx(head):
        return "idx"
    if looks_like_pickle(head):
        raise InputError(
            f"{path}: is a Python pickle; pickles are not loaded because unpickling runs "
            "arbitrary code (for CIFAR, use the binary version: data_batch_N.bin)"
        )
    if path.suffix.lower() == ".bin":
        return "cifar"
    raise InputError(f"{path}: unknown format (expected {FORMAT_NAMES})")


def open_one(path: Path, key: str | None = None, mode: str | None = None) -> Source:
    fmt = sniff(path)
    if key is not None and fmt not in ("npz", "hdf5"):
        raise InputError(f"{path}: --key applies to .npz and HDF5 inputs, this is {fmt}")
    if mode is not None and fmt != "folder":
        raise InputError(f"{path}: --mode applies to image folders, this is {fmt}")
    if fmt == "npy":
        return open_npy(path)
    if fmt == "npz":
        return open_npz(path, key)
    if fmt == "hdf5":
        return open_hdf5(path, key)
    if fmt == "folder":
        return open_folder(path, mode)
    if fmt == "cifar":
        return open_cifar(path)
    return open_idx(path)


def read_labels(path: Path) -> np.ndarray:
    """Read a 1-D labels array from an IDX or .npy file."""
    fmt = sniff(path)
    if fmt == "idx":
        return read_idx_array(path)
    try:
        values: np.ndarray = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{path}: cannot read labels ({exc})") from exc
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise InputError(
            f"{path}: labels must be a 1-D integer array, got {values.dtype}{values.shape}"
        )
    return values


@dataclass
class ConcatSource(Source):
    """Several sources of one image shape, read one after another."""

    parts: tuple[Source, ...] = ()

    def chunks(self, max_images: int) -> Iterator[UInt8Array]:
        for part in self.parts:
            yield from part.chunks(max_images)


def concat(parts: list[Source]) -> Source:
    first = parts[0]
    for part in parts[1:]:
        if part.format != first.format:
            raise InputError(
                f"{part.files[0]}: is {part.format}, {first.files[0]} is {first.format}; "
                "several inputs must share one format"
            )
        if part.image_shape != first.image_shape or part.layout != first.layout:
            raise InputError(
                f"{part.files[0]}: images of shape {part.image_shape} do not match "
                f"{first.files[0]} ({first.image_shape})"
            )
    labelled = [p.labels for p in parts if p.labels is not None]
    labels = None
    if len(labelled) == len(parts):
        labels = Labels(
            np.concatenate([lab.values for lab in labelled]),
            ", ".join(lab.origin for lab in labelled),
            labelled[0].class_names,
        )
    return ConcatSource(
        name=" + ".join(p.name for p in parts),
        format=first.format,
        shape=(sum(p.n_images for p in parts), *first.image_shape),
        layout=first.layout,
        files=tuple(f for p in parts for f in p.files),
        labels=labels,
        parts=tuple(parts),
    )


LAYOUT_NDIM = {"nf": 2, "nhw": 3, "nhwc": 4, "nchw": 4}


def layout_for_channel_axis(axis: int, ndim: int) -> str:
    """``--channel-axis`` (an axis of the whole array) as a layout name."""
    if ndim != 4 or axis not in (1, 3, -1, -3):
        raise InputError(
            f"--channel-axis {axis}: only 4-D arrays have a channel axis (1 for NCHW, 3 for NHWC)"
        )
    return "nchw" if axis in (1, -3) else "nhwc"


def open_source(
    paths: list[Path] | Path,
    labels: Path | None = None,
    layout: str | None = None,
    channel_axis: int | None = None,
    key: str | None = None,
    mode: str | None = None,
) -> Source:
    """Open one or several inputs as one dataset.

    ``labels`` overrides labels found beside the images; ``layout`` (nhw, nhwc, nchw) or
    ``channel_axis`` (an axis of the whole array) override the layout the format implies;
    ``key`` picks the array of an .npz or HDF5 file; ``mode`` (L, RGB) converts images.
    """
    paths = [paths] if isinstance(paths, Path) else list(paths)
    if not paths:
        raise InputError("no input given")
    parts = [open_one(path, key, mode) for path in paths]
    source = parts[0] if len(parts) == 1 else concat(parts)
    if channel_axis is not None:
        layout = layout_for_channel_axis(channel_axis, len(source.shape))
    if layout is not None:
        if LAYOUT_NDIM.get(layout) != len(source.shape):
            raise InputError(
                f"{source.files[0]}: layout {layout} does not fit an array of shape {source.shape}"
            )
        source.layout = layout
    if labels is not None:
        source.labels = Labels(read_labels(labels), labels.name)
    if source.n_images == 0:
        raise InputError(f"{source.files[0]}: holds zero images")
    if source.labels is not None and len(source.labels.values) != source.n_images:
        raise InputError(
            f"{source.labels.origin}: {len(source.labels.values)} labels for "
            f"{source.n_images} images"
        )
    return source
