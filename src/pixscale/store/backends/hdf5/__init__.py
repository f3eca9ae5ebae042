"""The HDF5 output format (see ``backend.py``)."""

from pixscale.store.backends.hdf5.backend import Hdf5Backend

__all__ = ["Hdf5Backend"]
