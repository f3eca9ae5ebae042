"""The ``images`` array of a Zarr output: chunk and shard sizes, its creation, and where
its files are (``ZarrImages``, which the region writers use)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixscale.core.location import Location
from pixscale.errors import OutputError
from pixscale.store.backends.zarr.storage import require_zarr, zarr_location

if TYPE_CHECKING:
    from pixscale.store.backends.zarr.region import RegionWriter
from pixscale.store.io.direct import ALIGN
from pixscale.store.naming import (
    IMAGES_DATASET,
)

#: Target bytes of float32 values per ``images`` chunk (at least one image): large enough
#: for disk-speed writes and few objects, small enough for a data loader's random reads.
DEFAULT_CHUNK_BYTES = 4 << 20
#: gzip level for ``compression="gzip"`` (as for HDF5).
DEFAULT_GZIP_LEVEL = 4
ZARR_COMPRESSIONS = ("none", "gzip")


#: Target bytes of float32 values per inner chunk of an uncompressed shard: a training
#: loop's random sample costs zarr-python (or xarray, TensorStore) a read of about this
#: much, where a 4 MiB chunk cost a read and decode of 4 MiB (850 samples/s for MNIST).
SAMPLE_CHUNK_BYTES = 64 << 10


def sample_chunk_images(image_shape: tuple[int, ...], rows: int) -> int:
    """Images per inner chunk of an uncompressed shard: the most that fit in
    ``SAMPLE_CHUNK_BYTES`` (at least one) and divide ``rows``, so that a shard of whole
    ``rows``-image runs holds whole inner chunks."""
    wanted = max(1, min(rows, SAMPLE_CHUNK_BYTES // (4 * max(1, math.prod(image_shape)))))
    return next(n for n in range(wanted, 0, -1) if rows % n == 0)


def chunk_images_for(image_shape: tuple[int, ...], chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Images per ``images`` chunk: about ``chunk_bytes`` of float32, rounded down to a
    whole number of ``ALIGN`` blocks so that every chunk can be written directly."""
    per_image = 4 * math.prod(image_shape)
    step = ALIGN // math.gcd(per_image, ALIGN)
    return max(step, chunk_bytes // per_image // step * step)


#: Zarr v3 ``dimension_names`` of ``images`` by layout: xarray (``open_zarr``) needs them,
#: and they tell any reader which axis holds the channels.
DIMENSION_NAMES = {
    "nhw": ("image", "y", "x"),
    "nhwc": ("image", "y", "x", "channel"),
    "nchw": ("image", "channel", "y", "x"),
}


def dimension_names(shape: tuple[int, ...], layout: str | None) -> tuple[str, ...]:
    """The names of ``images``' axes: by ``layout``, else ``image`` and ``dim_1``…"""
    named = DIMENSION_NAMES.get(layout or "")
    if named is not None and len(named) == len(shape):
        return named
    return ("image", *(f"dim_{axis}" for axis in range(1, len(shape))))


def create_store(
    root: Path,
    shape: tuple[int, ...],
    rows: int,
    compression: str = "none",
    layout: str | None = None,
    inner: int | None = None,
    per_shard: int | None = None,
) -> None:
    """The float32 ``images`` array in the folder ``root`` (chunks of ``rows`` images,
    NaN where nothing was written, so a missing chunk never reads as data);
    ``store_zarr_record`` makes ``root`` its group.

    Uncompressed, a file (a shard: Zarr v3's ``sharding_indexed`` codec, its index after
    the chunks, without a checksum of its own) holds ``per_shard`` (default
    ``CHUNKS_PER_SHARD``) × ``rows``
    images as inner chunks of ``inner`` images (default ``rows``; a divisor of it): the
    writer streams each file front to back in large writes, as for one contiguous HDF5
    dataset, and a reader fetches one inner chunk at a time. A file per 4 MiB chunk
    measured up to 2× slower to write on ext4, and a 1 TB output would be 250,000 files.
    Compressed chunks are one file each. File keys are ``c.<i>.0.0…``, every file in the
    array's folder (the separator ``/`` would give each file folders of its own).
    """
    zarr = require_zarr()
    from zarr.codecs import BytesCodec, GzipCodec, ShardingCodec

    if compression not in ZARR_COMPRESSIONS:
        raise OutputError(f"Zarr output compression: choose from {ZARR_COMPRESSIONS}")
    rows = min(rows, max(1, shape[0]))
    little = BytesCodec(endian="little")
    options: dict[str, Any] = {"chunks": (rows, *shape[1:]), "serializer": little}
    if compression == "gzip":
        options["compressors"] = GzipCodec(level=DEFAULT_GZIP_LEVEL)
    else:
        per_file = max(1, min(per_shard or CHUNKS_PER_SHARD, -(-max(1, shape[0]) // rows)))
        inner = rows if inner is None or rows % min(inner, rows) else min(inner, rows)
        options["chunks"] = (rows * per_file, *shape[1:])
        options["serializer"] = ShardingCodec(
            chunk_shape=(inner, *shape[1:]),
            codecs=[little],
            index_codecs=[little],
            index_location="end",
        )
        options["compressors"] = None
    zarr.create_array(  # the group around it is written last, with the record
        zarr_location(root, IMAGES_DATASET),
        zarr_format=3,
        shape=shape,
        dtype="float32",
        filters=None,
        fill_value=float("nan"),
        dimension_names=dimension_names(shape, layout),
        chunk_key_encoding={"name": "default", "separator": CHUNK_KEY_SEPARATOR},
        config={"write_empty_chunks": True},  # keep -0.0 and NaN-free chunks alike
        **options,
    )


#: Separator of the ``images`` file keys pixscale writes.
CHUNK_KEY_SEPARATOR = "."
#: Uncompressed ``images`` chunks per file (shard): 64 MiB files with 4 MiB chunks.
CHUNKS_PER_SHARD = 16
#: On an object store: 32 MiB objects, each gathered whole in memory and uploaded while the
#: next is filled (a conversion from a bucket to a bucket stays within 512 MiB).
CHUNKS_PER_OBJECT = 8
#: The index entry of a chunk not stored (beyond the array's end).
NO_CHUNK = 2**64 - 1


@dataclass(frozen=True)
class ZarrImages:
    """Where the ``images`` files of a store go; picklable, so tasks on other machines
    can write their own files (the store must be on a file system they share).

    ``rows`` images make a chunk and ``file_rows`` a file: a shard of chunks, each
    ``rows`` images (``raw``: uncompressed), or one compressed chunk (``gzip_level``:
    gzip, encoded by pixscale; else written through zarr-python).
    """

    root: Location
    shape: tuple[int, ...]
    rows: int
    file_rows: int
    raw: bool
    direct: bool = False
    separator: str = CHUNK_KEY_SEPARATOR
    gzip_level: int | None = None

    @classmethod
    def of(cls, root: Path, direct: bool = False) -> ZarrImages:
        zarr = require_zarr()
        from zarr.codecs import GzipCodec, ShardingCodec

        array = zarr.open_array(zarr_location(root, IMAGES_DATASET), mode="r")
        codecs = array.metadata.codecs
        keys = array.metadata.chunk_key_encoding
        file_rows = int(array.metadata.chunk_grid.chunk_shape[0])
        sharding = codecs[0] if len(codecs) == 1 and isinstance(codecs[0], ShardingCodec) else None
        raw = (
            sharding is not None
            and little_bytes_only(sharding.codecs)
            and little_bytes_only(sharding.index_codecs)
            and str(getattr(sharding.index_location, "value", "")) == "end"
            and tuple(sharding.chunk_shape[1:]) == tuple(array.shape[1:])
            and keys.name == "default"
            and keys.separator in ("/", ".")
        )
        rows = int(sharding.chunk_shape[0]) if sharding is not None else file_rows
        gzipped = (
            len(codecs) == 2
            and little_bytes_only(codecs[:1])
            and isinstance(codecs[1], GzipCodec)
            and keys.name == "default"
        )
        level = int(codecs[1].level) if gzipped else None
        shape = tuple(array.shape)
        return cls(root, shape, rows, file_rows, raw, direct, keys.separator, level)

    def region(self, start: int, count: int) -> RegionWriter:
        """A writer of images ``start``…``start + count - 1`` (``start`` on a file boundary)."""
        from pixscale.store.backends.zarr.region import RegionWriter  # which imports this

        return RegionWriter(self, start, count)

    def file_path(self, index: int) -> Location:
        key = self.separator.join(["c", str(index), *["0"] * (len(self.shape) - 1)])
        return self.root / IMAGES_DATASET / key

    @property
    def files(self) -> int:
        return -(-self.shape[0] // self.file_rows)

    def file_bytes(self, index: int) -> int:
        """The size of file ``index`` when complete (uncompressed stores)."""
        rows = min(self.file_rows, self.shape[0] - index * self.file_rows)
        stored = -(-rows // self.rows)
        row_bytes = 4 * math.prod(self.shape[1:])
        return stored * self.rows * row_bytes + 16 * (self.file_rows // self.rows)


def little_bytes_only(codecs: Any) -> bool:
    """True for a codec chain that is just the little-endian ``bytes`` codec."""
    from zarr.codecs import BytesCodec

    return (
        len(codecs) == 1
        and isinstance(codecs[0], BytesCodec)
        and str(getattr(codecs[0].endian, "value", codecs[0].endian)) == "little"
    )
