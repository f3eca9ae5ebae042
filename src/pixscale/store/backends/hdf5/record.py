"""What an HDF5 output stores beside ``images``: labels, parameter arrays, the record as
attributes, and CF attributes (per-channel views) for netCDF/xarray readers of packed outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pixscale.core.formats import RECORD_ATTRIBUTE
from pixscale.core.labels import Labels
from pixscale.core.params import dumps
from pixscale.store.base import (
    labels_checksum,
)
from pixscale.store.naming import PARAMS_GROUP

if TYPE_CHECKING:
    import h5py


def add_cf_attributes(
    file: h5py.File, images: h5py.Dataset, output: dict[str, Any], record: dict[str, Any]
) -> list[str]:
    """CF ``scale_factor``/``add_offset`` (float64 scalars) where CF readers can use them;
    returns the variables that carry them.

    CF readers apply one scalar pair per variable (xarray fails to open a variable whose
    attributes are arrays). So one pair for the whole dataset goes on ``images``; one pair
    per channel goes on per-channel views ``images_c<k>``: HDF5 virtual datasets selecting
    channel k of ``images`` in this same file (no second copy of the pixels). Per-pixel
    and per-image pairs have no CF form: pixscale's reader decodes those, from ``params/``.
    """
    import h5py

    packing = output["packing"]
    scale, offset = packing["scale_factor"], packing["add_offset"]
    if not isinstance(scale, dict) and np.size(scale) == 1:  # global, or one channel
        images.attrs["scale_factor"] = np.float64(np.ravel(scale)[0])
        images.attrs["add_offset"] = np.float64(np.ravel(offset)[0])
        return [images.name.lstrip("/")]
    if record["scope"] != "channel" or isinstance(scale, dict):
        return []
    shape = tuple(images.shape)
    axis = {"nhwc": 3, "nchw": 1}.get(str(output.get("layout")))
    if axis is None or shape[axis] != len(scale):
        return []
    names = []
    for channel in range(shape[axis]):
        view_shape = shape[:axis] + shape[axis + 1 :]
        layout = h5py.VirtualLayout(shape=view_shape, dtype=images.dtype)
        source = h5py.VirtualSource(".", images.name, shape=shape, dtype=images.dtype)
        layout[...] = source[tuple(channel if i == axis else slice(None) for i in range(4))]
        name = f"{images.name.lstrip('/')}_c{channel}"
        view = untimed_virtual_dataset(file, name, layout)
        view.attrs["scale_factor"] = np.float64(scale[channel])
        view.attrs["add_offset"] = np.float64(offset[channel])
        names.append(name)
    return names


def untimed_virtual_dataset(file: h5py.File, name: str, layout: Any) -> h5py.Dataset:
    """``file.create_virtual_dataset(name, layout)`` without a modification time, so that
    two runs write the same bytes (h5py's own call offers no ``track_times``; its layout
    builds the mapping, the creation is done here with the time switched off)."""
    import h5py

    dcpl = layout._get_dcpl(file.filename)
    dcpl.set_obj_track_times(False)
    space = h5py.h5s.create_simple(tuple(layout.shape))
    kind = h5py.h5t.py_create(np.dtype(layout.dtype), logical=1)
    created = h5py.h5d.create(file.id, name=name.encode(), tid=kind, space=space, dcpl=dcpl)
    return h5py.Dataset(created)


def store_record(
    file: h5py.File,
    record: dict[str, Any],
    arrays: dict[str, npt.NDArray[Any]],
    labels: Labels | None,
) -> None:
    """Labels, parameter arrays and the record (``record["output"]`` is completed here)."""
    output = record["output"]
    if labels is not None:
        file.create_dataset("labels", data=labels.values, track_times=False)
        output["labels"] = "labels"
        output["labels_checksum"] = labels_checksum(labels.values)
        if labels.class_names:
            output["class_names"] = labels.class_names
    if arrays:
        group = file.create_group(PARAMS_GROUP)
        for name, values in sorted(arrays.items()):
            group.create_dataset(name, data=values, track_times=False)
        output["arrays"] = PARAMS_GROUP
    file.attrs["strategy"] = record["strategy"]
    for name in ("scale", "offset"):
        if not isinstance(record[name], dict):
            file.attrs[name] = np.asarray(record[name], np.float64)
    file.attrs[RECORD_ATTRIBUTE] = dumps(record)
