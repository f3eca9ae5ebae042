"""The writer of a whole Zarr output on this machine."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy.typing as npt

from pixscale.core.labels import Labels
from pixscale.core.location import Location, is_remote
from pixscale.errors import OutputError
from pixscale.store.backends.zarr.layout import (
    CHUNKS_PER_OBJECT,
    ZarrImages,
    chunk_images_for,
    create_store,
    sample_chunk_images,
)
from pixscale.store.backends.zarr.record import store_zarr_record, zarr_output_fields
from pixscale.store.backends.zarr.remote import (
    check_remote_store,
    clear_store,
    missing_objects,
    publish_store,
    remove_store,
    upload_array_metadata,
)
from pixscale.store.backends.zarr.target import check_store_target, commit_store, make_store_folder
from pixscale.store.base import (
    Float32Array,
    Writer,
    checksum_field,
)
from pixscale.store.io.atomic import (
    StagedOutputs,
    temporary_name,
)
from pixscale.store.naming import IMAGES_DATASET


class ZarrWriter(Writer):
    """A Zarr v3 store written by this process, built in a temporary folder beside the
    target and renamed into place by the run's commit; on an object store, written in
    place and committed by its group's metadata (see ``remote``)."""

    def __init__(
        self,
        target: Location,
        shape: tuple[int, ...],
        staged: StagedOutputs,
        compression: str = "none",
        chunk_images: int | None = None,
        direct: bool = False,
        layout: str | None = None,
    ) -> None:
        self.target, self.shape = target, shape
        self.overwrite = staged.overwrite
        self.staged = staged
        self.compression = compression
        self.remote = is_remote(target)
        if self.remote:
            check_remote_store(target, staged.overwrite)  # type: ignore[arg-type]
        else:
            check_store_target(target, staged.overwrite, staged.inputs)  # type: ignore[arg-type]
        staged.expect_images(shape[0])
        rows = chunk_images or chunk_images_for(shape[1:])
        # without a chunk length asked for, inner chunks sized for a training loop's reads
        inner = chunk_images or sample_chunk_images(shape[1:], min(rows, max(1, shape[0])))
        # the name is kept before the folder exists: an interrupt leaves nothing unrecorded
        self.temp: Path | None = (
            Path(tempfile.mkdtemp(prefix="pixscale-zarr-"))
            if self.remote
            else temporary_name(target)  # type: ignore[arg-type]
        )
        self.written_remote = False
        try:
            if not self.remote:
                make_store_folder(self.temp)
            per_shard = CHUNKS_PER_OBJECT if self.remote else None
            create_store(self.temp, shape, rows, compression, layout, inner, per_shard)
            self.images = ZarrImages.of(self.temp, direct)
            if self.remote:  # the metadata built here, the chunks written there
                clear_store(target)  # type: ignore[arg-type]  # --overwrite: checked above
                self.written_remote = True
                upload_array_metadata(self.temp, target, IMAGES_DATASET)  # type: ignore[arg-type]
                self.images = replace(self.images, root=target, direct=False)
            self.region = self.images.region(0, shape[0])
            self.elsewhere = False
        except BaseException:
            self.discard()
            raise

    def write(self, chunk: Float32Array) -> None:
        self.region.write(chunk)

    def parallel(self) -> ZarrImages:
        """Where other processes write the ``images`` chunks (instead of ``write``);
        ``finish`` then checks that every chunk is there."""
        self.elsewhere = True
        return self.images

    def missing_files(self) -> int:
        """``images`` files not there (or, uncompressed, not of their full size)."""
        images = self.images
        if self.remote:
            prefix = f"{IMAGES_DATASET}/"
            keys = {
                prefix + images.file_path(i).name: images.file_bytes(i) if images.raw else None
                for i in range(images.files)
            }
            return missing_objects(self.target, keys)  # type: ignore[arg-type]
        return sum(
            not path.is_file() or images.raw and path.stat().st_size != images.file_bytes(i)
            for i, path in ((i, images.file_path(i)) for i in range(images.files))
        )

    def finish(
        self, record: dict[str, Any], arrays: dict[str, npt.NDArray[Any]], labels: Labels | None
    ) -> dict[str, Any]:
        assert self.temp is not None
        if self.elsewhere:
            missing = self.missing_files()
            if missing:
                raise OutputError(f"{self.target}: {missing} files of images were not written")
        elif not self.region.complete():
            raise OutputError(f"{self.target}: {self.region.position} of {self.shape[0]} written")
        self.region.close()
        output = {
            **record.get("output", {}),  # the tasks' combined checksum, when they wrote
            **zarr_output_fields(self.target, self.images, self.compression),
            **checksum_field(self.region.checksum, self.region.written, self.shape),
        }
        full = dict(record, output=output)
        store_zarr_record(self.temp, full, arrays, labels)
        temp, self.temp = self.temp, None  # the run's commit places it, or its discard removes it
        target = self.target
        if is_remote(target):
            self.staged.stage_folder(
                target,
                temp,
                lambda: publish_store(temp, target),
                lambda: self.discard_remote(temp),
            )
            return output
        self.staged.stage_folder(
            target,
            temp,
            lambda: commit_store(temp, target, self.overwrite),
            lambda: shutil.rmtree(temp, ignore_errors=True),
        )
        return output

    def discard_remote(self, temp: Path) -> None:
        """Remove what a failed run wrote on the object store, and its local metadata."""
        shutil.rmtree(temp, ignore_errors=True)
        if self.written_remote:
            self.written_remote = False
            remove_store(self.target)  # type: ignore[arg-type]

    def discard(self) -> None:
        if self.temp is None:
            return
        if self.remote:
            self.discard_remote(self.temp)
        else:
            shutil.rmtree(self.temp, ignore_errors=True)
        self.temp = None

    def close(self) -> None:
        """After ``finish`` nothing is left to do; before it, the run failed: remove the
        temporary store (an upload failing too is not the failure to report)."""
        with contextlib.suppress(OutputError):
            self.region.close()
        self.discard()
