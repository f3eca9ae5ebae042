"""File signatures and the record's attribute name, shared by the readers of inputs and of
outputs (an input that is a pixscale output is refused by them)."""

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
#: HDF5 (and Zarr) attribute holding the whole record as JSON.
RECORD_ATTRIBUTE = "pixscale_params"
