"""The .npy backend: the images as one .npy (memory-mappable by any numpy), the record in
``<output>.json`` beside it (numpy refuses extra header keys), labels in
``<stem>.labels.npy`` and parameter arrays too large for the record in ``<stem>.params.npz``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pixscale.core.formats import NPY_MAGIC
from pixscale.core.location import Location
from pixscale.store.backends.base import Backend, Record, StoredData
from pixscale.store.backends.npy.header import padded_npy_header
from pixscale.store.backends.npy.pixels import NpyPixelWriter
from pixscale.store.backends.npy.writer import NpyWriter
from pixscale.store.io.direct import ALIGN
from pixscale.store.io.region import RawRegion, rows_per_block
from pixscale.store.naming import companions, starts_with

if TYPE_CHECKING:
    from pixscale.store.base import Writer
    from pixscale.store.io.atomic import StagedOutputs
    from pixscale.store.output import Output
    from pixscale.store.pixels import PixelWriter


class NpyBackend(Backend):
    name: ClassVar[str] = "npy"
    title: ClassVar[str] = ".npy"
    suffixes: ClassVar[tuple[str, ...]] = (".npy",)
    variants: ClassVar[tuple[tuple[str, str], ...]] = (
        ("float32", "float"),
        ("float16", "float"),
        ("float32", "uint8"),
    )

    def companions(self, target: Location) -> list[Location]:
        return companions(target, self.name)

    def holds(self, path: Location) -> bool:
        return starts_with(path, NPY_MAGIC)  # its record is looked for beside it

    def raw(self, output: Output) -> bool:
        return True

    def open_writer(
        self, output: Output, shape: tuple[int, ...], staged: StagedOutputs, direct: bool
    ) -> Writer:
        return NpyWriter(output.path, shape, staged, direct, output.stored_dtype)

    def open_parallel(
        self, output: Output, shape: tuple[int, ...], staged: StagedOutputs, direct: bool
    ) -> tuple[Writer, Any, int]:
        writer = NpyWriter(output.path, shape, staged, direct, output.stored_dtype)
        offset = len(padded_npy_header(shape, ALIGN))
        return (
            writer,
            RawRegion(writer.temp.absolute(), offset, shape, direct),
            rows_per_block(shape),
        )

    def open_pixel_writer(
        self, target: Location, shape: tuple[int, ...], staged: StagedOutputs, dtype: str
    ) -> PixelWriter:
        return NpyPixelWriter(target, shape, staged, dtype)

    def read_record(self, path: Location) -> Record:
        from pixscale.store.records import read_npy_output

        return read_npy_output(path)

    def read_data(self, path: Location, output: dict[str, Any]) -> StoredData:
        from pixscale.store.reader import read_npy_data

        return read_npy_data(path, output)
