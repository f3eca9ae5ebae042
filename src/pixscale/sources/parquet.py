"""Parquet files laid out as the Hugging Face Hub publishes image datasets.

``train-00000-of-00002.parquet``: an image column of structs ``{bytes, path}`` holding PNG
or JPEG bytes, and an integer ``label`` column. The class names come from the schema's
``huggingface`` metadata, where ``datasets`` writes its features
(``info.features.label = {"names": [...], "_type": "ClassLabel"}``). Where several columns
hold labels (CIFAR-100's ``fine_label`` and ``coarse_label``), ``label`` or ``fine_label`` is
taken unless ``--labels COLUMN`` names another (``--labels none``: no labels); ``info`` says
which was taken. The file is read one
row group at a time, and only the image bytes: memory stays near one row group's images
plus the labels.

Nothing in the footer is taken on its word: the row counts of the file, of its row groups
and of the column chunks read must agree before anything is read, and each row group read
must hold the rows it declares. Image bytes are read dictionary-encoded, as stored, so that
a row group is measured at its expanded size (a value shared by many rows counts once per
row) before any image is taken out of it.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from pixscale.core.location import (
    SEEK_BLOCK_BYTES,
    Location,
    is_remote,
    open_bytes,
    shown,
    storage_exceptions,
    storage_reason,
)
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array, check_labels_size
from pixscale.sources.parallel import choose_backend, decode_chunks
from pixscale.sources.pictures import Encoded, Expect, first_expect, require_pillow
from pixscale.sources.resize import Resize

MAGIC = b"PAR1"
#: Largest row group read: its uncompressed bytes as the footer gives them, and the
#: expanded size of its image bytes (each row counted, however many share a value).
MAX_ROW_GROUP_BYTES = 1 << 30
#: Bytes reading one row costs at least (definition levels, dictionary index, offsets):
#: pyarrow sizes its buffers from a row group's declared row count before decoding it.
ROW_READ_BYTES = 16
#: Integer columns taken as the labels, in this order, before any other ClassLabel column.
LABEL_NAMES = ("label", "labels", "fine_label")
#: How the names of other label columns end (``coarse_label``), offered as choices.
LABEL_ENDINGS = ("_label", "_labels")
#: ``--labels none``: no labels, whatever columns the file holds.
NO_LABELS = "none"
#: The schema metadata where ``datasets`` stores its features.
HUB_METADATA = b"huggingface"
PILLOW_PURPOSE = "reading images in Parquet files"


def require_pyarrow(path: Location) -> Any:
    """pyarrow's Parquet module, or a one-line error saying how to install it."""
    try:
        import pyarrow.parquet
    except ImportError as exc:
        raise InputError(
            f"{shown(path)}: reading Parquet needs pyarrow: pip install 'pixscale[parquet]'"
        ) from exc
    return pyarrow.parquet


@contextmanager
def arrow_errors(path: Location) -> Iterator[None]:
    """pyarrow's errors on a damaged or truncated file become an InputError naming it; a
    failed read of a URL says why the storage failed."""
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, ValueError, *storage_exceptions()) as exc:
        if is_remote(path) and from_storage(exc):
            raise InputError(f"{shown(path)}: {storage_reason(exc)}") from exc
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{shown(path)}: damaged Parquet file ({reason})") from exc


def from_storage(exc: BaseException) -> bool:
    """Whether ``exc`` reports a failed read of the storage rather than bytes pyarrow could
    not parse (which it reports as a bare ``OSError``)."""
    import pyarrow as pa

    if isinstance(exc, pa.ArrowException | ValueError):
        return False
    return type(exc) is not OSError


@contextmanager
def parquet_file(path: Location, read_dictionary: list[str] | None = None) -> Iterator[Any]:
    """``path`` opened by pyarrow (a URL through a seekable file object: the footer and the
    column chunks read are fetched by byte range), closed on leaving."""
    parquet = require_pyarrow(path)
    raw = open_bytes(path, SEEK_BLOCK_BYTES) if is_remote(path) else None
    try:
        with arrow_errors(path):
            handle = parquet.ParquetFile(
                path if raw is None else raw, read_dictionary=read_dictionary
            )
        try:
            yield handle
        finally:
            handle.close()
    finally:
        if raw is not None:
            raw.close()


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


def is_binary(kind: Any) -> bool:
    """Binary values, dictionary-encoded or not."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_binary(kind) or pa.types.is_large_binary(kind))


def is_image_type(kind: Any) -> bool:
    """A struct with a binary ``bytes`` field (the Hub's Image feature), or binary."""
    import pyarrow as pa

    if pa.types.is_struct(kind):
        index = kind.get_field_index("bytes")
        return index >= 0 and is_binary(kind.field(index).type)
    return is_binary(kind)


def image_column(path: Location, schema: Any, features: dict[str, Any], key: str | None) -> str:
    """The column holding the images: ``--key``'s, or the only candidate (the Hub's Image
    features first)."""
    candidates: list[str] = [f.name for f in schema if is_image_type(f.type)]
    listing = ", ".join(candidates) or "none"
    if key is not None:
        if key not in candidates:
            raise InputError(f"{shown(path)}: no image column {key!r}; image columns: {listing}")
        return key
    marked: list[str] = [name for name in candidates if feature_type(features, name) == "Image"]
    chosen: list[str] = marked or candidates
    if len(chosen) != 1:
        if not chosen:
            columns = ", ".join(schema.names)
            raise InputError(f"{shown(path)}: no column of image bytes (columns: {columns})")
        raise InputError(f"{shown(path)}: holds image columns {listing}; choose one with --key")
    return chosen[0]


def image_leaves(schema: Any, column: str) -> tuple[str, str | None]:
    """The Parquet paths of the image bytes and of the image's stored path, if any:
    ``image.bytes`` and ``image.path`` in the Hub's struct, else the column itself."""
    import pyarrow as pa

    kind = schema.field(column).type
    if not pa.types.is_struct(kind):
        return column, None
    has_path = kind.get_field_index("path") >= 0
    return f"{column}.bytes", f"{column}.path" if has_path else None


def label_candidates(schema: Any, features: dict[str, Any], image: str) -> list[str]:
    """Columns that look like labels, in schema order: named ``label`` or ``labels``, ending
    in ``_label`` (``fine_label``, ``coarse_label``), or marked ClassLabel by the Hub."""
    return [
        name
        for name in schema.names
        if name != image
        and (
            name.lower() in LABEL_NAMES
            or name.lower().endswith(LABEL_ENDINGS)
            or feature_type(features, name) == "ClassLabel"
        )
    ]


def label_column(
    path: Location, schema: Any, features: dict[str, Any], image: str, chosen: str | None = None
) -> str | None:
    """The column of labels: ``chosen`` (``--labels COLUMN``; ``none`` for no labels), else
    ``label`` (or ``labels``, ``fine_label``), else the only ClassLabel column. One that does
    not hold integers is refused, not passed over."""
    if chosen == NO_LABELS:
        return None
    if chosen is not None:
        if chosen not in schema.names or chosen == image:
            others = ", ".join(n for n in schema.names if n != image) or "none"
            raise InputError(
                f"{shown(path)}: no column {chosen!r} for --labels; columns: {others} "
                f"({image} holds the images)"
            )
        column = chosen
    else:
        found = [name for name in LABEL_NAMES if name in schema.names]
        marked = [n for n in schema.names if feature_type(features, n) == "ClassLabel"]
        if not found and len(marked) != 1:
            return None
        column = (found or marked)[0]
    check_label_type(path, schema, column, chosen is not None)
    return column


def check_label_type(path: Location, schema: Any, column: str, chosen: bool) -> None:
    """Refuse a label column that does not hold integers (class indices)."""
    import pyarrow as pa

    kind = schema.field(column).type
    value_kind = kind.value_type if pa.types.is_dictionary(kind) else kind
    if pa.types.is_integer(value_kind):
        return
    advice = "" if chosen else "; choose another with --labels COLUMN, or --labels none"
    raise InputError(
        f"{shown(path)}: label column {column!r} holds {kind} values, not integer class "
        f"labels{advice}"
    )


def class_names(features: dict[str, Any], column: str) -> list[str] | None:
    found = features.get(column)
    names = found.get("names") if isinstance(found, dict) else None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return None


def column_leaves(metadata: Any, columns: Sequence[str]) -> list[int]:
    """Indices of the Parquet leaf columns that make up ``columns``."""
    schema = metadata.schema
    return [
        index
        for index in range(metadata.num_columns)
        if any(
            schema.column(index).path == name or schema.column(index).path.startswith(f"{name}.")
            for name in columns
        )
    ]


def checked_row_group(path: Location, metadata: Any, group: int, leaves: list[int]) -> int:
    """The rows of row group ``group``, once its column chunks agree with them and the
    reading it asks for is within bounds."""
    info = metadata.row_group(group)
    rows: int = info.num_rows
    where = f"{shown(path)}: row group {group}"
    if rows < 0:
        raise InputError(f"{where} declares {rows:,} rows")
    if rows * ROW_READ_BYTES > MAX_ROW_GROUP_BYTES:
        raise InputError(
            f"{where} declares {rows:,} rows, over the limit of "
            f"{MAX_ROW_GROUP_BYTES // ROW_READ_BYTES:,} rows read at a time"
        )
    if info.total_byte_size > MAX_ROW_GROUP_BYTES:
        raise InputError(
            f"{where} holds {info.total_byte_size:,} bytes, over the limit of "
            f"{MAX_ROW_GROUP_BYTES:,} read at a time"
        )
    for leaf in leaves:
        chunk = info.column(leaf)
        if chunk.file_path:
            raise InputError(
                f"{where}: column {chunk.path_in_schema} is stored in another file "
                f"({chunk.file_path!r}); only self-contained files are read"
            )
        # a repeated column holds a value per list element, not per row
        flat = metadata.schema.column(leaf).max_repetition_level == 0
        if flat and chunk.num_values != rows:
            raise InputError(
                f"{where}: column {chunk.path_in_schema} holds {chunk.num_values:,} values "
                f"for the {rows:,} rows the row group declares"
            )
    return rows


def checked_row_groups(path: Location, metadata: Any, columns: Sequence[str]) -> tuple[int, ...]:
    """The rows of every row group, once they agree with the file's count and with the
    column chunks of ``columns``."""
    leaves = column_leaves(metadata, columns)
    with arrow_errors(path):
        groups = tuple(
            checked_row_group(path, metadata, group, leaves)
            for group in range(metadata.num_row_groups)
        )
    if sum(groups) != metadata.num_rows:
        raise InputError(
            f"{shown(path)}: declares {metadata.num_rows:,} rows, but its row groups hold "
            f"{sum(groups):,}"
        )
    return groups


def read_group(path: Location, handle: Any, group: int, column: str, rows: int) -> Any:
    """One column (a Parquet path) of one row group, holding exactly its declared rows."""
    with arrow_errors(path):
        table = handle.read_row_group(group, columns=[column])
    if table.num_rows != rows:
        raise InputError(
            f"{shown(path)}: row group {group} holds {table.num_rows:,} rows, not the {rows:,} "
            "its metadata declares"
        )
    return table.column(0)


def leaf_arrays(column: Any) -> list[Any]:
    """The chunks of a column read by one leaf, the struct around it taken off (its nulls
    kept)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return [
        pc.struct_field(chunk, 0) if pa.types.is_struct(chunk.type) else chunk
        for chunk in column.chunks
    ]


def expanded_bytes(array: Any) -> int:
    """Bytes of binary ``array``'s values once each row holds its own copy."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(array.type):
        sizes = pc.take(pc.binary_length(array.dictionary), array.indices)
    else:
        sizes = pc.binary_length(array)
    total = pc.sum(sizes).as_py()
    return int(total or 0)


def values_of(array: Any) -> list[Any]:
    """The values of binary ``array``, rows sharing a dictionary value sharing its object."""
    import pyarrow as pa

    if not pa.types.is_dictionary(array.type):
        return list(array.to_pylist())
    unique = array.dictionary.to_pylist()
    return [None if index is None else unique[index] for index in array.indices.to_pylist()]


def first_null(arrays: list[Any]) -> int | None:
    """The row of the first null in ``arrays`` (consecutive chunks), or None."""
    import pyarrow.compute as pc

    offset = 0
    for array in arrays:
        if array.null_count:
            return offset + int(pc.index(array.is_null(), True).as_py())
        offset += len(array)
    return None


@dataclass
class ParquetSource(Source):
    """The images of one column of a Parquet file, read by row group."""

    random_access: ClassVar[bool] = True
    column: str = "image"
    columns: tuple[str, ...] = ()
    #: The column the labels were read from, and every column that looks like labels.
    label_column: str | None = None
    label_columns: tuple[str, ...] = ()
    #: Rows of each row group, as verified when the file was opened.
    groups: tuple[int, ...] = ()
    #: The Parquet paths of the image bytes and of the image's stored path (``image_leaves``).
    leaves: tuple[str, str | None] = ("image", None)
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

    def encoded(self, start: int, stop: int) -> Generator[Encoded, None, None]:
        """The encoded images of rows ``start``…``stop - 1``, reading only their row groups."""
        path = self.files[0]
        name = shown(path)
        with self.reader() as handle:
            first = 0
            for group, rows in enumerate(self.groups):
                if first + rows > start and first < stop:
                    values = self.group_images(handle, group, rows, first)
                    for row in range(max(start - first, 0), min(stop - first, rows)):
                        yield Encoded(f"{name}:row {first + row}", values[row])
                first += rows
                if first >= stop:
                    return

    @contextmanager
    def reader(self) -> Iterator[Any]:
        """The file opened to read its image bytes dictionary-encoded, as stored; checked
        to hold the row groups it held when opened."""
        path = self.files[0]
        leaves = [leaf for leaf in self.leaves if leaf is not None]
        with parquet_file(path, read_dictionary=leaves) as handle:
            if handle.metadata.num_row_groups != len(self.groups):
                raise InputError(
                    f"{shown(path)}: file changed since it was opened (its row groups)"
                )
            yield handle

    def group_images(self, handle: Any, group: int, rows: int, first: int) -> list[bytes]:
        """The encoded images of one row group, measured at their expanded size before
        any is taken out; a missing one is an error naming its row."""
        path = self.files[0]
        bytes_leaf, path_leaf = self.leaves
        arrays = leaf_arrays(read_group(path, handle, group, bytes_leaf, rows))
        size = sum(expanded_bytes(array) for array in arrays)
        if size > MAX_ROW_GROUP_BYTES:
            raise InputError(
                f"{shown(path)}: row group {group}: its images expand to {size:,} bytes, over the "
                f"limit of {MAX_ROW_GROUP_BYTES:,} read at a time"
            )
        row = first_null(arrays)
        if row is not None:
            where = ""
            if path_leaf is not None:
                names = leaf_arrays(read_group(path, handle, group, path_leaf, rows))
                name = [value for array in names for value in values_of(array)][row]
                where = f" (only a reference to {name!r} is stored)" if name else ""
            raise InputError(f"{shown(path)}:row {first + row}: holds no image bytes{where}")
        return [value for array in arrays for value in values_of(array)]

    def details(self) -> dict[str, Any]:
        """The columns of the file and the ones read, for ``info``: which column gave the
        labels, among the ones that could have (``--labels COLUMN`` picks another)."""
        return {
            "columns": list(self.columns),
            "image_column": self.column,
            "label_column": self.label_column,
            "label_columns": list(self.label_columns),
        }


def looks_like_parquet(head: bytes) -> bool:
    return head.startswith(MAGIC)


def open_parquet(
    path: Location,
    key: str | None,
    mode: str | None,
    resize: Resize | None = None,
    labels: str | None = None,
) -> ParquetSource:
    """One Parquet file: its image column and, where present, its label column (``labels``
    names it; ``none``: no labels). Counts come from the row groups once they agree with
    the footer; nothing is read before."""
    image_module = require_pillow(PILLOW_PURPOSE)
    with parquet_file(path) as handle:
        with arrow_errors(path):
            schema = handle.schema_arrow
        features = hub_features(schema.metadata)
        column = image_column(path, schema, features, key)
        labels_column = label_column(path, schema, features, column, labels)
        read = [column, *([labels_column] if labels_column is not None else [])]
        groups = checked_row_groups(path, handle.metadata, read)
        count = sum(groups)
        if count == 0:
            raise InputError(f"{shown(path)}: holds zero images")
        source = ParquetSource(
            name=f"{path.name}:{column}",
            format="parquet",
            shape=(count,),
            layout="nhw",
            files=(path,),
            labels=read_labels(path, handle, labels_column, features, groups),
            column=column,
            columns=tuple(schema.names),
            label_column=labels_column,
            label_columns=tuple(label_candidates(schema, features, column)),
            groups=groups,
            leaves=image_leaves(schema, column),
            resize=resize,
        )
    images = source.encoded(0, 1)
    first = next(images)
    images.close()
    source.expect = first_expect(image_module, first, mode, resize)
    source.shape = (count, *source.expect.shape)
    source.dtype = source.expect.dtype
    source.layout = "nhwc" if source.expect.mode == "RGB" else "nhw"
    return source


def read_labels(
    path: Location,
    handle: Any,
    column: str | None,
    features: dict[str, Any],
    groups: tuple[int, ...],
) -> Labels | None:
    """The label column, row group by row group (its size checked first), as stored:
    ``Labels`` judges the values. Nulls are refused naming the first."""
    import pyarrow as pa

    if column is None:
        return None
    check_labels_size(path, sum(groups), 8)
    chunks = [
        chunk
        for group, rows in enumerate(groups)
        for chunk in read_group(path, handle, group, column, rows).chunks
    ]
    values = pa.chunked_array(chunks, type=handle.schema_arrow.field(column).type)
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    row = first_null(values.chunks)
    if row is not None:
        raise InputError(
            f"{shown(path)}: label column {column!r} has {values.null_count:,} empty rows "
            f"(the first at row {row:,})"
        )
    return Labels(integers(values), f"{path.name}:{column}", class_names(features, column))


def integers(values: Any) -> npt.NDArray[np.integer[Any]]:
    """An integer arrow array (no nulls) as numpy, of the same type: through Python
    integers, since pyarrow's ``to_numpy`` imports pandas (0.2–0.4 s of a run)."""
    import pyarrow as pa

    kind = values.type
    signed = "i" if pa.types.is_signed_integer(kind) else "u"
    return np.array(values.to_pylist(), np.dtype(f"{signed}{kind.bit_width // 8}"))
