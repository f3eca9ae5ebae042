"""Parquet files laid out as the Hugging Face Hub publishes image datasets.

``train-00000-of-00002.parquet``: an image column of structs ``{bytes, path}`` holding PNG
or JPEG bytes, and an integer ``label`` column. The class names come from the schema's
``huggingface`` metadata, where ``datasets`` writes its features
(``info.features.label = {"names": [...], "_type": "ClassLabel"}``). The file is read one
row group at a time, and only the image column: memory stays near one row group's images
(row groups over ``MAX_ROW_GROUP_BYTES`` are refused) plus the labels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array, check_labels_size
from pixscale.sources.parallel import choose_backend, decode_chunks
from pixscale.sources.pictures import Encoded, Expect, first_expect, require_pillow
from pixscale.sources.resize import Resize

MAGIC = b"PAR1"
#: Largest row group read (uncompressed bytes of all its columns): pyarrow reads a row
#: group's column whole.
MAX_ROW_GROUP_BYTES = 1 << 30
#: Integer columns taken as the labels, in this order, before any other ClassLabel column.
LABEL_NAMES = ("label", "labels", "fine_label")
#: The schema metadata where ``datasets`` stores its features.
HUB_METADATA = b"huggingface"
PILLOW_PURPOSE = "reading images in Parquet files"


def require_pyarrow(path: Path) -> Any:
    """pyarrow's Parquet module, or a one-line error saying how to install it."""
    try:
        import pyarrow.parquet
    except ImportError as exc:
        raise InputError(
            f"{path}: reading Parquet needs pyarrow: pip install 'pixscale[parquet]'"
        ) from exc
    return pyarrow.parquet


@contextmanager
def arrow_errors(path: Path) -> Iterator[None]:
    """pyarrow's errors on a damaged or truncated file become an InputError naming it."""
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{path}: damaged Parquet file ({exc})") from exc


def hub_features(metadata: dict[bytes, bytes] | None) -> dict[str, Any]:
    """``info.features`` of the Hub's metadata, or ``{}`` where absent or unreadable."""
    raw = (metadata or {}).get(HUB_METADATA)
    if raw is None:
        return {}
    try:
        features = json.loads(raw).get("info", {}).get("features", {})
    except (ValueError, RecursionError, AttributeError):
        return {}
    return features if isinstance(features, dict) else {}


def feature_type(features: dict[str, Any], column: str) -> str | None:
    found = features.get(column)
    return found.get("_type") if isinstance(found, dict) else None


def is_image_type(kind: Any) -> bool:
    """A struct with a binary ``bytes`` field (the Hub's Image feature), or plain binary."""
    import pyarrow as pa

    if pa.types.is_struct(kind):
        index = kind.get_field_index("bytes")
        return index >= 0 and is_image_type(kind.field(index).type)
    return bool(pa.types.is_binary(kind) or pa.types.is_large_binary(kind))


def image_column(path: Path, schema: Any, features: dict[str, Any], key: str | None) -> str:
    """The column holding the images: ``--key``'s, or the only candidate (the Hub's Image
    features first)."""
    candidates: list[str] = [f.name for f in schema if is_image_type(f.type)]
    listing = ", ".join(candidates) or "none"
    if key is not None:
        if key not in candidates:
            raise InputError(f"{path}: no image column {key!r}; image columns: {listing}")
        return key
    marked: list[str] = [name for name in candidates if feature_type(features, name) == "Image"]
    chosen: list[str] = marked or candidates
    if len(chosen) != 1:
        if not chosen:
            columns = ", ".join(schema.names)
            raise InputError(f"{path}: no column of image bytes (columns: {columns})")
        raise InputError(f"{path}: holds image columns {listing}; choose one with --key")
    return chosen[0]


def label_column(schema: Any, features: dict[str, Any]) -> str | None:
    """The integer column of labels: ``label`` (or ``labels``, ``fine_label``), else the
    only ClassLabel column."""
    import pyarrow as pa

    integers = [f.name for f in schema if pa.types.is_integer(f.type)]
    for name in LABEL_NAMES:
        if name in integers:
            return name
    marked = [n for n in integers if feature_type(features, n) == "ClassLabel"]
    return marked[0] if len(marked) == 1 else None


def class_names(features: dict[str, Any], column: str) -> list[str] | None:
    found = features.get(column)
    names = found.get("names") if isinstance(found, dict) else None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return None


def cell_bytes(path: Path, column: Any, first_row: int) -> list[bytes]:
    """The encoded images of one row group's column; a missing one is an error naming its row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values: list[bytes | None] = []
    paths: list[str | None] = []
    for chunk in column.chunks:
        if pa.types.is_struct(chunk.type):
            values += pc.struct_field(chunk, "bytes").to_pylist()
            has_path = chunk.type.get_field_index("path") >= 0
            paths += pc.struct_field(chunk, "path").to_pylist() if has_path else [None] * len(chunk)
        else:
            values += chunk.to_pylist()
            paths += [None] * len(chunk)
    for row, (data, name) in enumerate(zip(values, paths, strict=True)):
        if data is None:
            where = f" (only a reference to {name!r} is stored)" if name else ""
            raise InputError(f"{path}:row {first_row + row}: holds no image bytes{where}")
    return values  # type: ignore[return-value]


def check_row_groups(path: Path, metadata: Any) -> None:
    for group in range(metadata.num_row_groups):
        size = metadata.row_group(group).total_byte_size
        if size > MAX_ROW_GROUP_BYTES:
            raise InputError(
                f"{path}: row group {group} holds {size:,} bytes, over the limit of "
                f"{MAX_ROW_GROUP_BYTES:,} read at a time"
            )


@dataclass
class ParquetSource(Source):
    """The images of one column of a Parquet file, read by row group."""

    random_access: ClassVar[bool] = True
    column: str = "image"
    columns: tuple[str, ...] = ()
    expect: Expect = field(default_factory=lambda: Expect((0, 0), "L", False))

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        return self.window(0, self.n_images, max_images)

    def read_window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        backend = choose_backend(self.expect, stop - start)
        return decode_chunks(
            self.encoded(start, stop),
            self.expect,
            max_images,
            purpose=PILLOW_PURPOSE,
            backend=backend,
        )

    def encoded(self, start: int, stop: int) -> Iterator[Encoded]:
        """The encoded images of rows ``start``…``stop - 1``, reading only their row groups."""
        path = self.files[0]
        parquet = require_pyarrow(path)
        with arrow_errors(path):
            handle = parquet.ParquetFile(path)
        first = 0
        for group in range(handle.metadata.num_row_groups):
            rows = handle.metadata.row_group(group).num_rows
            if first + rows > start and first < stop:
                with arrow_errors(path):
                    table = handle.read_row_group(group, columns=[self.column])
                values = cell_bytes(path, table.column(0), first)
                del table
                for row in range(max(start - first, 0), min(stop - first, rows)):
                    yield Encoded(f"{path}:row {first + row}", values[row])
            first += rows
            if first >= stop:
                return

    def details(self) -> dict[str, Any]:
        """The columns of the file and the ones read, for ``info``."""
        return {"columns": list(self.columns), "image_column": self.column}


def looks_like_parquet(head: bytes) -> bool:
    return head.startswith(MAGIC)


def open_parquet(
    path: Path, key: str | None, mode: str | None, resize: Resize | None = None
) -> ParquetSource:
    """One Parquet file: its image column and, where present, its label column."""
    parquet = require_pyarrow(path)
    image_module = require_pillow(PILLOW_PURPOSE)
    with arrow_errors(path):
        handle = parquet.ParquetFile(path)
        schema = handle.schema_arrow
    features = hub_features(schema.metadata)
    column = image_column(path, schema, features, key)
    count = handle.metadata.num_rows
    check_row_groups(path, handle.metadata)
    labels = read_labels(path, handle, label_column(schema, features), features, count)
    source = ParquetSource(
        name=f"{path.name}:{column}",
        format="parquet",
        shape=(count,),
        layout="nhw",
        files=(path,),
        labels=labels,
        column=column,
        columns=tuple(schema.names),
        resize=resize,
    )
    if count == 0:
        raise InputError(f"{path}: holds zero images")
    first = next(source.encoded(0, 1))
    source.expect = first_expect(image_module, first, mode, resize)
    source.shape = (count, *source.expect.shape)
    source.dtype = source.expect.dtype
    source.layout = "nhwc" if source.expect.mode == "RGB" else "nhw"
    return source


def read_labels(
    path: Path, handle: Any, column: str | None, features: dict[str, Any], count: int
) -> Labels | None:
    """The label column, whole (its size checked first); nulls are refused."""
    if column is None:
        return None
    check_labels_size(path, count, 8)
    with arrow_errors(path):
        values = handle.read(columns=[column]).column(0)
    if values.null_count:
        raise InputError(f"{path}: label column {column!r} has {values.null_count:,} empty rows")
    array = np.asarray(values.to_numpy(), np.int64)
    return Labels(array, f"{path.name}:{column}", class_names(features, column))
