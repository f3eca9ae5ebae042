"""The names of pixscale's output files and of what is inside them, and telling outputs
apart from inputs. Every other module asks here."""

from __future__ import annotations

from urllib.parse import urlsplit

from pixscale.core.formats import HDF5_SIGNATURE, NPY_MAGIC, RECORD_ATTRIBUTE
from pixscale.core.location import Location, collection_paused, is_remote, open_bytes, readable
from pixscale.errors import OutputError

#: Names inside an HDF5 output.
IMAGES_DATASET = "images"
LABELS_DATASET = "labels"
#: Group holding parameter arrays too large for attributes (64 KiB limit).
PARAMS_GROUP = "params"
#: Standing for standard input or output on the command line.
STREAM = "-"


def sidecar_path(target: Location) -> Location:
    """``train.npy`` → ``train.npy.json``: the record beside a .npy output."""
    return target.with_name(target.name + ".json")


def labels_path(target: Location) -> Location:
    """``train.npy`` → ``train.labels.npy``."""
    return target.with_name(f"{target.stem}.labels.npy")


def arrays_path(target: Location) -> Location:
    """``train.npy`` → ``train.params.npz``: parameter arrays too large for the JSON."""
    return target.with_name(f"{target.stem}.params.npz")


def companions(target: Location, fmt: str) -> list[Location]:
    """Files a float32 output of format ``fmt`` may write beside ``target``."""
    if fmt != "npy":
        return []
    return [sidecar_path(target), labels_path(target), arrays_path(target)]


def uint8_format(path: Location) -> str:
    """Format of an ``invert`` target: ``h5``, ``npy`` or ``idx`` (raw or .gz)."""
    name = path.name.lower()
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    if name.endswith(".npy"):
        return "npy"
    if "idx" in name or name.endswith((".idx", ".ubyte", ".ubyte.gz")):
        return "idx"
    raise OutputError(
        f"{path}: cannot tell the format; use .npy, .h5 or an IDX name (*-idx3-ubyte)"
    )


def starts_with(path: Location, signature: bytes) -> bool:
    """True when the regular file ``path`` begins with ``signature``."""
    if not path.is_file():
        return False
    with open_bytes(path) as handle:
        return handle.read(len(signature)) == signature


def is_hdf5(path: Location) -> bool:
    """True when ``path`` starts with the HDF5 signature."""
    return starts_with(path, HDF5_SIGNATURE)


def is_pixscale_output(path: Location) -> bool:
    """True for an HDF5 file or Zarr store with a record, or a .npy with its sidecar record."""
    from pixscale.store.backends.zarr.detect import is_zarr_output  # imports no zarr

    if is_zarr_output(path):
        return True
    if is_hdf5(path):
        import h5py

        try:
            with collection_paused(path), h5py.File(readable(path), "r") as handle:
                return RECORD_ATTRIBUTE in handle.attrs
        except OSError:
            return False
    if is_remote(path) and urlsplit(str(path)).query:
        return False  # a presigned URL: no sidecar's URL can be derived from it
    return starts_with(path, NPY_MAGIC) and sidecar_path(path).is_file()
