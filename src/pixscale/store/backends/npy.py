"""The .npy backend: the images as one .npy (memory-mappable by any numpy), the record in
``<output>.json`` beside it (numpy refuses extra header keys), labels in
``<stem>.labels.npy`` and parameter arrays too large for the record in ``<stem>.params.npz``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pixscale.core.formats import NPY_MAGIC
from pixscale.store.backends.base import Backend, Record, StoredData
from pixscale.store.io.direct import ALIGN
from pixscale.store.io.region import RawRegion, rows_per_block
from pixscale.store.naming import companions, starts_with
from pixscale.store.npy import NpyWriter, padded_npy_header

if TYPE_CHECKING:
    from pixscale.store.base import Writer
    from pixscale.store.io.atomic import StagedOutputs
    from pixscale.store.output import Output


class NpyBackend(Backend):
    name: ClassVar[str] = "npy"
    title: ClassVar[str] = ".npy"
    suffixes: ClassVar[tuple[str, ...]] = (".npy",)
    variants: ClassVar[tuple[tuple[str, str], ...]] = (
        ("float32", "float"),
        ("float16", "float"),
        ("float32", "uint8"),
    )

    def companions(self, target: Path) -> list[Path]:
        return companions(target, self.name)

    def holds(self, path: Path) -> bool:
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

    def read_record(self, path: Path) -> Record:
        from pixscale.store.records import read_npy_output

        return read_npy_output(path)

    def read_data(self, path: Path, output: dict[str, Any]) -> StoredData:
        from pixscale.store.reader import read_npy_data

        return read_npy_data(path, output)
