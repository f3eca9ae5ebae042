"""The Zarr backend: a Zarr v3 store (a folder) with the float32 ``images`` array, ``labels``,
parameter arrays under ``params/`` and the record in the group's attributes; written by
this process or region by region by Dask workers, placed by one rename."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pixscale.core.location import Location, is_remote
from pixscale.errors import OutputError
from pixscale.store.backends.base import Backend, Record, StoredData

# none of these imports zarr: writing and reading do, when used
from pixscale.store.backends.zarr.detect import is_zarr_store
from pixscale.store.backends.zarr.layout import ZARR_COMPRESSIONS
from pixscale.store.backends.zarr.reader import open_zarr_output
from pixscale.store.backends.zarr.record import read_zarr_record
from pixscale.store.backends.zarr.remote import check_remote_store
from pixscale.store.backends.zarr.target import check_store_target
from pixscale.store.backends.zarr.writer import ZarrWriter

if TYPE_CHECKING:
    from pixscale.store.base import Writer
    from pixscale.store.io.atomic import StagedOutputs
    from pixscale.store.output import Output


class ZarrBackend(Backend):
    name: ClassVar[str] = "zarr"
    title: ClassVar[str] = "Zarr"
    suffixes: ClassVar[tuple[str, ...]] = (".zarr",)
    folder: ClassVar[bool] = True
    compressions: ClassVar[tuple[str, ...]] = ZARR_COMPRESSIONS  # lzf has no Zarr codec here
    damage_raises_any: ClassVar[bool] = True

    def holds(self, path: Location) -> bool:
        return is_zarr_store(path)

    def check_options(self, output: Output) -> None:
        if output.compression not in self.compressions:
            raise OutputError(
                f"{output.path}: {output.compression} is HDF5's own filter; "
                "Zarr outputs take --compression none or gzip"
            )
        if (output.dtype, output.store) not in self.variants:
            raise OutputError(
                f"{output.path}: --dtype float16 and --store uint8 write .h5 or .npy outputs; "
                "a .zarr output holds float32"
            )

    def raw(self, output: Output) -> bool:
        return output.compression == "none"

    def check_target(self, output: Output, staged: StagedOutputs) -> None:
        staged.refuse_input(output.path)  # by device and inode, as for files
        if is_remote(output.path):
            check_remote_store(output.path, staged.overwrite)
            return
        check_store_target(output.path, staged.overwrite, staged.inputs)

    def open_writer(
        self, output: Output, shape: tuple[int, ...], staged: StagedOutputs, direct: bool
    ) -> Writer:
        return ZarrWriter(
            output.path if is_remote(output.path) else output.path.absolute(),
            shape,
            staged,
            output.compression,
            output.chunk_images,
            direct,
            output.layout,
        )

    def open_parallel(
        self, output: Output, shape: tuple[int, ...], staged: StagedOutputs, direct: bool
    ) -> tuple[Writer, Any, int]:
        writer = self.open_writer(output, shape, staged, direct)
        assert isinstance(writer, ZarrWriter)
        images = writer.parallel()
        return writer, images, images.file_rows

    def read_record(self, path: Location) -> Record:
        return read_zarr_record(path)

    def read_data(self, path: Location, output: dict[str, Any]) -> StoredData:
        opened = open_zarr_output(path)
        return opened.shape, opened.dtype, opened.labels
