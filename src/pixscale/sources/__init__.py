"""Open any supported uint8 image source, recognised by content rather than by name."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from pixscale.core.layouts import INPUT_LAYOUTS, LAYOUT_NDIM
from pixscale.core.location import PathOrUrl, is_remote, is_url, locate, name_of, shown
from pixscale.errors import InputError, redacted
from pixscale.sources.base import Labels, Source
from pixscale.sources.concat import ConcatSource, concat
from pixscale.sources.detect import IMAGE_FORMATS, open_one, read_labels, sniff
from pixscale.sources.parquet import NO_LABELS
from pixscale.sources.resize import Resize, recorded_resize

__all__ = [
    "ConcatSource",
    "Labels",
    "Source",
    "open_recorded_source",
    "open_source",
    "read_labels",
    "sniff",
]


PathLike = PathOrUrl


def open_source(
    paths: PathLike | Sequence[PathLike],
    *,
    labels: PathLike | None = None,
    layout: str | None = None,
    key: str | None = None,
    mode: str | None = None,
    resize: Resize | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Source:
    """Open one or several inputs as one dataset.

    Parameters
    ----------
    paths
        One input, or several of one format and image shape (shards, batches).
    labels
        A labels file (IDX or .npy) overriding the labels found beside the images; for
        Parquet inputs, a name that is no existing file picks the label column
        (``fine_label``, ``coarse_label``); ``none`` converts any input without labels.
    layout
        ``nhw``, ``nhwc`` or ``nchw``: overrides the layout the format implies.
    key
        The array of an .npz, the dataset of an HDF5 input, the image column of a Parquet
        file, the members of an archive (a folder or pattern) or the image extension of
        WebDataset samples.
    mode
        ``L`` or ``RGB``: what images (folders, archives, Parquet) are converted to.
    resize
        Bring every image (folders, archives, Parquet) to one size; recorded with the
        source. Without it, images of different sizes are refused.
    storage_options
        Credentials, endpoint and other options of the filesystem of URL inputs
        (``s3://``, ``gs://``…), as fsspec takes them; the standard places (``AWS_*``
        variables, profiles) apply without them.

    Returns
    -------
    Source
        The dataset, read in chunks along the first axis.
    """
    if isinstance(paths, str | os.PathLike) or is_remote(paths):
        paths = [paths]
    files = [locate(p, storage_options) for p in paths]
    if not files:
        raise InputError("no input given")
    column = label_column(labels)
    # a labels file replaces the labels a Parquet file holds: its columns are not read
    in_file = column if column is not None or labels is None else NO_LABELS
    parts = [open_one(path, key, mode, resize, in_file) for path in files]
    source = parts[0] if len(parts) == 1 else concat(parts)  # one format and image shape
    first = files[0]
    if is_remote(first) and "://" not in source.name:  # the URL, without its query
        if source.name.startswith(first.name):
            source.name = shown(first) + source.name[len(first.name) :]
        else:
            source.name = redacted(f"{shown(first.parent).rstrip('/')}/{source.name}")
    if labels is None:
        check_all_labelled(parts)
    if layout is not None:
        if LAYOUT_NDIM.get(layout) != len(source.shape):
            raise InputError(
                f"{source.files[0]}: layout {layout} does not fit an array of shape {source.shape}"
            )
        source.layout = layout
    if column == NO_LABELS:
        source.labels = None  # whatever the format found: --labels none converts without
    elif column is not None and source.format != "parquet":
        raise InputError(
            f"{labels}: no such labels file (a column name picks the labels of Parquet inputs only)"
        )
    if labels is not None and column is None:
        where = locate(labels, storage_options)
        source.labels = Labels(read_labels(where, source.n_images), name_of(where), path=where)
    if source.n_images == 0:
        raise InputError(f"{source.files[0]}: holds zero images")
    if source.labels is not None and len(source.labels.values) != source.n_images:
        raise InputError(
            f"{source.labels.origin}: {len(source.labels.values)} labels for "
            f"{source.n_images} images"
        )
    return source


def check_all_labelled(parts: list[Source]) -> None:
    """Refuse inputs of which only some carry labels: a dataset half labelled would lose
    them all without a word."""
    bare = [part for part in parts if part.labels is None]
    if bare and len(bare) < len(parts):
        labelled = next(part for part in parts if part.labels is not None)
        raise InputError(
            f"{bare[0].files[0]}: holds no labels while {labelled.files[0]} does; give "
            "--labels for all of them, or convert them apart"
        )


def label_column(labels: PathLike | None) -> str | None:
    """``labels`` as the label column of Parquet inputs: a name that is no existing file, or
    ``none`` (no labels; a file of that name is given as ``./none``)."""
    if labels is None:
        return None
    if is_remote(labels):  # a URL names a labels file
        return None
    if not os.fspath(labels):
        raise InputError("--labels is empty: give a labels file, a Parquet column or none")
    if os.fspath(labels) == NO_LABELS:
        return NO_LABELS
    if is_url(labels) or os.path.lexists(labels):
        return None
    return os.fspath(labels)


#: Recorded source formats whose name ends in ``:KEY``.
KEYED_FORMATS = (
    "npz",
    "hdf5",
    "zarr",
    "cifar10-python",
    "cifar100-python",
    "parquet",
    "image-zip",
    "image-tar",
    "webdataset",
)


def open_recorded_source(
    path: PathLike, record: dict[str, Any], reading: dict[str, Any] | None = None
) -> Source:
    """Open ``path`` as the source an output's ``record`` names: with the array key and
    layout recorded there, unless ``reading`` gives others."""
    found = record.get("source")
    described: dict[str, Any] = found if isinstance(found, dict) else {}
    options = dict(reading or {})
    name = str(described.get("name", ""))
    base = name.rpartition("/")[2]  # a URL's scheme holds a colon too
    if "key" not in options and described.get("format") in KEYED_FORMATS and ":" in base:
        options["key"] = base.rpartition(":")[2]
    if "layout" not in options and described.get("layout") in INPUT_LAYOUTS:
        options["layout"] = described["layout"]
    grey16 = described.get("dtype") == "uint16"  # read as they are: no mode to give
    if "mode" not in options and described.get("format") in IMAGE_FORMATS and not grey16:
        # the mode the images were read in: colour or greyscale, as the layout says
        options["mode"] = "RGB" if described.get("layout") == "nhwc" else "L"
    if "resize" not in options and isinstance(described.get("resize"), dict):
        options["resize"] = recorded_resize(described["resize"])
    if "labels" not in options and described.get("format") == "parquet":
        options["labels"] = recorded_label_column(described)
    return open_source(path, **options)


def recorded_label_column(described: dict[str, Any]) -> str:
    """The label column a recorded Parquet source was read with (its labels are named
    ``FILE:COLUMN``), or ``none``: read without labels, or with labels from a file, which
    re-deriving the images does not need."""
    recorded = described.get("labels")
    files = described.get("files")
    if isinstance(recorded, str) and isinstance(files, list):
        file, _, column = recorded.split(", ")[0].rpartition(":")
        if file in files and column:
            return column
    return NO_LABELS
