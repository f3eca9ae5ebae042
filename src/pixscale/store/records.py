"""Find and read the parameter record of a params JSON or of any pixscale output.

Records are input like any other: whatever a file holds, reading it gives a record (a dict
whose sections are dicts, with finite numbers only) or a ``ParamsError`` naming the file.
"""

from __future__ import annotations

import json
import math
import zipfile
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from pixscale.core.formats import RECORD_ATTRIBUTE
from pixscale.core.hdf5_open import local_dataset, local_object
from pixscale.core.location import (
    Location,
    PathOrUrl,
    collection_paused,
    locate,
    readable,
    storage_exceptions,
    storage_reason,
)
from pixscale.core.params import Params
from pixscale.core.rawio import read_npy_header
from pixscale.errors import ParamsError, PixscaleError
from pixscale.store.naming import IMAGES_DATASET, PARAMS_GROUP, sidecar_path

Arrays = dict[str, npt.NDArray[Any]]

#: Sections of a record that are JSON objects when present.
SECTIONS = ("output", "source", "fitted_on", "stats", "zero_std")
#: Fields of ``output`` that name a companion file beside the data.
COMPANION_FIELDS = ("labels", "arrays")
#: Records larger than this are not records (a JSON bomb is refused before parsing).
MAX_RECORD_BYTES = 256 << 20
#: Failures of the conversions a malformed record can provoke beyond ``ParamsError``.
MALFORMED = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError)


def parse_record(text: str, origin: str) -> dict[str, Any]:
    """The record in ``text``: a JSON object with finite numbers and object sections.

    Raises
    ------
    ParamsError
        Not JSON, nested too deeply, not an object, a non-finite number (``NaN``,
        ``Infinity``, ``1e309``), or a section that is not an object.
    """
    try:
        record = json.loads(text)
    except RecursionError:
        raise ParamsError(f"{origin}: invalid record: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ParamsError(f"{origin}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except ValueError as exc:
        raise ParamsError(f"{origin}: not valid JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise ParamsError(f"{origin}: not a parameter record (a JSON object)")
    where = first_non_finite(record)
    if where is not None:
        raise ParamsError(f"{origin}: invalid record: {where} is not a finite number")
    for name in SECTIONS:
        section = record.get(name)
        if section is not None and not isinstance(section, dict):
            raise ParamsError(
                f"{origin}: invalid record: {name} must be an object, not {type_name(section)}"
            )
    return record


def first_non_finite(value: Any) -> str | None:
    """Where the first NaN or infinity sits in a parsed JSON value (``source_low[2]``),
    walking without recursion."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where or "the record"
        if isinstance(item, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))
    return None


def type_name(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def read_text(path: Location) -> str:
    """A record file's text, refused when too large or not UTF-8."""
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise ParamsError(f"{path}: too large for a parameter record")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not a params JSON or pixscale output") from exc
    except storage_exceptions() as exc:
        raise ParamsError(f"{path}: cannot read: {storage_reason(exc)}") from exc


def companion(data: Location, output: dict[str, Any], field: str, origin: str) -> Location | None:
    """The file ``output[field]`` names beside ``data``, refusing names that lead elsewhere."""
    name = output.get(field)
    if name is None:
        return None
    if not is_plain_name(name):
        raise ParamsError(
            f"{origin}: invalid record: output.{field} must name a file beside "
            f"{data.name}, not {name!r} (a path outside the output's folder)"
        )
    return data.with_name(name)


def is_plain_name(name: object) -> bool:
    """A file name without any folder part: no separator, not ``.`` or ``..``."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
    )


def read_hdf5(path: Location) -> tuple[dict[str, Any], Arrays]:
    """The record attribute and the ``params/`` arrays of an HDF5 output."""
    try:
        with collection_paused(path), h5py.File(readable(path), "r") as handle:
            text = handle.attrs.get(RECORD_ATTRIBUTE)
            if text is None:
                raise ParamsError(f"{path}: HDF5 file has no {RECORD_ATTRIBUTE} attribute")
            if isinstance(text, bytes | np.bytes_):
                text = text.decode("utf-8", "replace")
            if not isinstance(text, str):
                raise ParamsError(f"{path}: {RECORD_ATTRIBUTE} is not a JSON string")
            record = parse_record(text, str(path))
            arrays = read_hdf5_arrays(path, handle)
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read its record: {first_line(exc)}") from exc
    return record, arrays


def read_hdf5_arrays(path: Location, handle: h5py.File) -> Arrays:
    """Numeric datasets of the ``params/`` group, no larger than the images, each stored in
    this very file (``local_dataset`` refuses links, external storage and virtual ones)."""
    group = local_object(handle, path, PARAMS_GROUP, "parameter group", ParamsError)
    if group is None:
        return {}
    if not isinstance(group, h5py.Group):
        raise ParamsError(f"{path}: {PARAMS_GROUP} is not a group")
    images = local_dataset(handle, path, IMAGES_DATASET, "dataset", ParamsError, virtual=True)
    limit = 0 if images is None else images.size
    arrays: Arrays = {}
    for name in group:  # names only: nothing is looked up through a link here
        key = f"{PARAMS_GROUP}/{name}"
        item = local_dataset(handle, path, key, "parameter array", ParamsError)
        if item is None or item.dtype.kind not in "biuf":
            raise ParamsError(f"{path}: {key} is not a numeric array")
        if item.size > max(limit, 1):
            raise ParamsError(f"{path}: {key} is larger than the images")
        arrays[name] = item[()]
    return arrays


def read_npz(path: Location, limit: int, origin: str) -> Arrays:
    """Numeric arrays of a ``.params.npz`` beside a .npy output, each of at most ``limit``
    values (``origin``: the record naming it)."""
    try:
        loaded = np.load(readable(path), allow_pickle=False)
        members = loaded.zip if isinstance(loaded, np.lib.npyio.NpzFile) else None
        if members is None:
            raise ParamsError(f"{path}: not a .npz archive of parameter arrays")
        with loaded as archive:
            for info in members.infolist():
                if info.file_size > 8 * max(limit, 1) + 4096:
                    raise ParamsError(f"{path}: {info.filename} is larger than the images")
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError as exc:
        raise ParamsError(f"{origin}: parameter arrays {path.name} missing") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ParamsError(f"{path}: unreadable parameter arrays: {first_line(exc)}") from exc
    for name, values in arrays.items():
        if values.dtype.kind not in "biuf":
            raise ParamsError(f"{path}: {name} is not a numeric array")
    return arrays


def npy_values(path: Location) -> int:
    """Values in the .npy at ``path`` according to its header (0 when unreadable)."""
    try:
        with path.open("rb") as handle:
            shape, _, _ = read_npy_header(handle, path)
    except (OSError, PixscaleError):
        return 0
    return math.prod(shape)


def read_npy_output(path: Location) -> tuple[dict[str, Any], Arrays]:
    """The sidecar record of a .npy output and its ``.params.npz`` arrays."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise ParamsError(f"{path}: no parameter record beside it ({sidecar.name} missing)")
    record = parse_record(read_text(sidecar), str(sidecar))
    stored = companion(path, record.get("output") or {}, "arrays", str(sidecar))
    arrays = read_npz(stored, npy_values(path), str(sidecar)) if stored is not None else {}
    return record, arrays


def read_record(path: PathOrUrl) -> tuple[dict[str, Any], Arrays]:
    """The record and its external arrays, from a params JSON or any output.

    Raises
    ------
    ParamsError
        For any file that does not hold a well-formed record (see ``parse_record``).
    """
    from pixscale.store.backends import backend_of  # its backends read records from here

    path = locate(path, error=ParamsError)
    backend = backend_of(path)
    if backend is not None:
        return backend.read_record(path)
    if not path.is_file():
        what = "not a regular file" if path.exists() and not path.is_dir() else None
        what = what or ("is a folder, not a record" if path.is_dir() else "no such file")
        raise ParamsError(f"{path}: {what}")
    return parse_record(read_text(path), str(path)), {}


def params_of(record: dict[str, Any], arrays: Arrays, origin: PathOrUrl) -> Params:
    """``Params.from_record``, with every failure a ``ParamsError`` naming ``origin``."""
    try:
        return Params.from_record(record, arrays)
    except ParamsError as exc:
        message = str(exc)
        if str(origin) in message:
            raise
        raise ParamsError(f"{origin}: {message}") from exc
    except (*MALFORMED, RecursionError) as exc:
        raise ParamsError(f"{origin}: parameter record is malformed: {first_line(exc)}") from exc


def load_params(path: PathOrUrl) -> tuple[Params, dict[str, Any]]:
    """Parameters stored in ``path`` and the record they came from."""
    record, arrays = read_record(path)
    return params_of(record, arrays, path), record


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (HDF5 reports span several)."""
    return next(iter(str(exc).splitlines()), "") or type(exc).__name__
