"""The Zarr v3 output format (see ``backend.py``).

Modules: ``detect`` (telling a store apart, no zarr import), ``storage`` (where a store's
bytes go), ``layout`` (the ``images`` array: chunks, shards, creation), ``target`` (checking
and placing the store folder), ``region`` and ``writer`` (writing), ``record`` (record,
labels, parameter arrays), ``reader`` (reading back). Nothing here imports zarr-python
until a store is written or read.
"""

from pixscale.store.backends.zarr.backend import ZarrBackend

__all__ = ["ZarrBackend"]
