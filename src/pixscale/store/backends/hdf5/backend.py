"""The HDF5 backend: one self-contained ``.h5`` with the ``images`` dataset (contiguous
unless compressed or chunked), ``labels``, parameter arrays under ``params/`` and the
record as the attribute ``pixscale_params``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import h5py
import numpy as np

from pixscale.core.hdf5_open import local_object
from pixscale.core.location import Location, collection_paused, readable
from pixscale.errors import OutputError
from pixscale.store.backends.base import Backend, Record, StoredData, same_numbers
from pixscale.store.backends.hdf5.pixels import Hdf5PixelWriter
from pixscale.store.backends.hdf5.writer import COMPRESSIONS, Hdf5Writer, is_contiguous
from pixscale.store.io.region import RawRegion, rows_per_block
from pixscale.store.naming import is_hdf5

if TYPE_CHECKING:
    from pixscale.store.base import Writer
    from pixscale.store.io.atomic import StagedOutputs
    from pixscale.store.output import Output
    from pixscale.store.pixels import PixelWriter


class Hdf5Backend(Backend):
    name: ClassVar[str] = "h5"
    title: ClassVar[str] = "HDF5"
    suffixes: ClassVar[tuple[str, ...]] = (".h5", ".hdf5")
    compressions: ClassVar[tuple[str, ...]] = COMPRESSIONS
    variants: ClassVar[tuple[tuple[str, str], ...]] = (
        ("float32", "float"),
        ("float16", "float"),
        ("float32", "uint8"),
    )

    def holds(self, path: Location) -> bool:
        return is_hdf5(path)

    def raw(self, output: Output) -> bool:
        return is_contiguous(output.compression, output.chunk_images)

    def open_writer(
        self, output: Output, shape: tuple[int, ...], staged: StagedOutputs, direct: bool
    ) -> Writer:
        return Hdf5Writer(
            output.path,
            shape,
            staged,
            output.compression,
            output.chunk_images,
            direct,
            output.stored_dtype,
        )

    def open_parallel(
        self, output: Output, shape: tuple[int, ...], staged: StagedOutputs, direct: bool
    ) -> tuple[Writer, Any, int]:
        if not self.raw(output):
            raise OutputError(
                f"{output.path}: the dask engine writes uncompressed, contiguous HDF5 (tasks "
                "write their own byte ranges); for compressed or chunked output use a .zarr store"
            )
        writer = self.open_writer(output, shape, staged, direct)
        assert isinstance(writer, Hdf5Writer)
        offset = int(writer.images.id.get_offset())
        return (
            writer,
            RawRegion(writer.temp.absolute(), offset, shape, direct),
            rows_per_block(shape),
        )

    def attribute_checks(self, converted: Any) -> list[tuple[str, bool, str]]:
        wrong = hdf5_attributes_differing(converted)
        detail = f"{', '.join(wrong)} differ" if wrong else "strategy, scale, offset"
        return [("HDF5 attributes agree with the record", not wrong, detail)]

    def packing_differing(self, converted: Any, packing: Any) -> list[str]:
        """The CF attributes on the per-channel views (or on ``images``) the record names."""
        wrong = []
        with collection_paused(converted.path), h5py.File(readable(converted.path), "r") as handle:
            for channel, variable in enumerate(
                converted.output["packing"].get("cf_variables") or []
            ):
                view = local_object(handle, converted.path, variable, "variable")
                attrs = view.attrs if view is not None else {}
                pick = 0 if packing.is_scalar else channel
                for name in ("scale_factor", "add_offset"):
                    value = np.asarray(np.ravel(getattr(packing, name))[pick])
                    if not same_numbers(attrs.get(name), value):
                        wrong.append(f"{variable}.{name}")
        return wrong

    def open_pixel_writer(
        self, target: Location, shape: tuple[int, ...], staged: StagedOutputs, dtype: str
    ) -> PixelWriter:
        return Hdf5PixelWriter(target, shape, staged, dtype)

    def read_record(self, path: Location) -> Record:
        from pixscale.store.records import read_hdf5

        return read_hdf5(path)

    def read_data(self, path: Location, output: dict[str, Any]) -> StoredData:
        from pixscale.store.reader import read_hdf5_data

        return read_hdf5_data(path)


def hdf5_attributes_differing(converted: Any) -> list[str]:
    """Which of the ``strategy``, ``scale`` and ``offset`` attributes disagree."""
    params, record = converted.params, converted.record
    wrong = []
    with collection_paused(converted.path), h5py.File(readable(converted.path), "r") as handle:
        attrs = handle.attrs
        strategy = attrs.get("strategy")
        if isinstance(strategy, bytes):
            strategy = strategy.decode("utf-8", "replace")
        if strategy != record.get("strategy"):
            wrong.append("strategy")
        for name in ("scale", "offset"):
            stored_apart = isinstance(record.get(name), dict)
            if name not in attrs and stored_apart:
                continue
            if not same_numbers(attrs.get(name), getattr(params, name)):
                wrong.append(name)
    return wrong
