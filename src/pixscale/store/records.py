"""Find and read the parameter record of a params JSON or of any pixscale output."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from pixscale.core.params import Params, loads
from pixscale.errors import ParamsError
from pixscale.store.naming import PARAMS_GROUP, RECORD_ATTRIBUTE, is_hdf5, sidecar_path

Arrays = dict[str, npt.NDArray[Any]]


def read_record(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Arrays]:
    """The record and its external arrays, from JSON, HDF5 output or .npy output."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such file")
    if is_hdf5(path):
        with h5py.File(path, "r") as handle:
            text = handle.attrs.get(RECORD_ATTRIBUTE)
            if text is None:
                raise ParamsError(f"{path}: HDF5 file has no pixscale_params attribute")
            arrays: Arrays = {}
            if PARAMS_GROUP in handle:
                arrays = {name: ds[()] for name, ds in handle[PARAMS_GROUP].items()}
        return loads(str(text), str(path)), arrays
    if path.suffix == ".npy":
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise ParamsError(f"{path}: no parameter record beside it ({sidecar.name} missing)")
        record = loads(sidecar.read_text(), str(sidecar))
        arrays = {}
        stored = record.get("output", {}).get("arrays")
        if stored:
            with np.load(path.with_name(stored), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        return record, arrays
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not a params JSON or pixscale output") from exc
    return loads(text, str(path)), {}


def load_params(path: str | os.PathLike[str]) -> tuple[Params, dict[str, Any]]:
    """Parameters stored in ``path`` and the record they came from."""
    path = Path(path)
    record, arrays = read_record(path)
    try:
        return Params.from_record(record, arrays), record
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from exc
