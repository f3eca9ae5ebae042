"""What a Zarr output stores beside ``images``: the group with the record in its
attributes, labels and parameter arrays; and reading the record back."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.formats import RECORD_ATTRIBUTE
from pixscale.core.labels import Labels
from pixscale.core.location import Location
from pixscale.core.params import dumps
from pixscale.errors import ParamsError
from pixscale.store.backends.zarr.layout import ZarrImages
from pixscale.store.backends.zarr.reader import open_zarr_group
from pixscale.store.backends.zarr.storage import require_zarr, zarr_location
from pixscale.store.base import (
    labels_checksum,
)
from pixscale.store.naming import (
    IMAGES_DATASET,
    LABELS_DATASET,
    PARAMS_GROUP,
)

#: Labels per chunk of the ``labels`` array.
LABELS_CHUNK = 1 << 20


def store_zarr_record(
    root: Path,
    record: dict[str, Any],
    arrays: dict[str, npt.NDArray[Any]],
    labels: Labels | None,
) -> None:
    """The group with the record in its attributes, then labels and parameter arrays
    (``record["output"]`` is completed here).

    The group's ``zarr.json`` is written once, new, with every attribute: rewriting it
    (zarr-python replaces the file by a rename for each attribute set) measured 0.2–2.9 s
    a rename on ext4 right after the data's writes, which forces the replaced file's data
    to disk first.
    """
    zarr = require_zarr()
    output = record["output"]
    label_values = None if labels is None else np.ascontiguousarray(labels.values)
    if labels is not None and label_values is not None:
        output["labels"] = LABELS_DATASET
        output["labels_checksum"] = labels_checksum(label_values)
        if labels.class_names:
            output["class_names"] = labels.class_names
    if arrays:
        output["arrays"] = PARAMS_GROUP
    attributes: dict[str, Any] = {"strategy": record["strategy"]}
    for name in ("scale", "offset"):
        if not isinstance(record[name], dict):
            attributes[name] = np.asarray(record[name], np.float64).tolist()
    attributes[RECORD_ATTRIBUTE] = dumps(record)
    group = zarr.create_group(zarr_location(root), attributes=attributes, zarr_format=3)
    if label_values is not None:
        group.create_array(
            LABELS_DATASET,
            data=label_values,
            chunks=(max(1, min(len(label_values), LABELS_CHUNK)),),
            compressors=None,
            dimension_names=("image",),
            write_data=True,
        )
    if arrays:
        params = group.create_group(PARAMS_GROUP)
        for name, values in sorted(arrays.items()):
            values = np.ascontiguousarray(values)
            params.create_array(
                name,
                data=values,
                compressors=None,
                chunks=values.shape or (),
                dimension_names=tuple(f"{name}_{axis}" for axis in range(values.ndim)),
            )
    # Every array's metadata in the group's zarr.json, as xarray and zarr-python look for
    # it first (one read to open the store; without it xarray warns). zarr-python warns
    # that Zarr v3 has no such field yet: readers that do not know it ignore it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        zarr.consolidate_metadata(zarr_location(root))


def zarr_output_fields(target: Location, images: ZarrImages, compression: str) -> dict[str, Any]:
    return {
        "file": target.name,
        "format": "zarr",
        "zarr_format": 3,
        "dataset": IMAGES_DATASET,
        "shape": list(images.shape),
        "dtype": "float32",
        "chunks": [images.rows, *images.shape[1:]],
        "compression": compression,
        **({"shards": [images.file_rows, *images.shape[1:]]} if images.raw else {}),
    }


def read_zarr_record(path: Location) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """The record and its external arrays from a Zarr output."""
    group = open_zarr_group(path, ParamsError)
    text = group.attrs.get(RECORD_ATTRIBUTE)
    if not isinstance(text, str):
        raise ParamsError(f"{path}: Zarr store has no {RECORD_ATTRIBUTE} attribute")
    arrays: dict[str, npt.NDArray[Any]] = {}
    if PARAMS_GROUP in group:
        for name, array in group[PARAMS_GROUP].arrays():
            arrays[name] = np.asarray(array[...])
    from pixscale.store.records import parse_record  # records reads zarr stores too

    return parse_record(text, str(path)), arrays
