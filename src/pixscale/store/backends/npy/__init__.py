"""The .npy output format (see ``backend.py``)."""

from pixscale.store.backends.npy.backend import NpyBackend

__all__ = ["NpyBackend"]
