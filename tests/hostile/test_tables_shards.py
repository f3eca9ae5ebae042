"""Parquet tables and WebDataset shards that lie: nothing they declare is trusted unverified.

Parquet: the row counts of the footer (the file's, a row group's, a column chunk's) are
patched to say more or fewer rows than the pages hold; a value shared by thousands of rows
through the dictionary expands far past what the footer says; label columns hold what no
label is. WebDataset: keys come back after other samples, members repeat, ``.cls`` members
hold what ``int`` would take but no label is. Each must be refused in one line naming the
file (and the row group, key or member), and leave no output behind.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import (
    RSS_BOUND,
    assert_clean_failure,
    assert_unchanged,
    assert_within_memory,
    isolated_cli,
    run_child,
    snapshot,
)

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
Image = pytest.importorskip("PIL.Image")

SIDE = 8
ROWS = 50
GROUP_ROWS = 20
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


# --------------------------------------------------------------------------- building inputs


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, SIDE, SIDE), dtype=np.uint8)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def hub_file(
    path: Path,
    cells: Sequence[bytes | None] | Any,
    labels: Any = None,
    *,
    names: list[str] | None = NAMES,
    row_group_size: int = GROUP_ROWS,
    **options: Any,
) -> Path:
    """A Parquet file as the Hub writes it: image structs, and a ClassLabel column when
    ``labels`` (an Arrow array, or anything ``pa.array`` takes) are given."""
    if isinstance(cells, pa.Array):
        column = cells
    else:
        column = pa.array([{"bytes": c, "path": None} for c in cells], IMAGE_TYPE)
    columns = {"image": column}
    features: dict[str, Any] = {"image": {"_type": "Image"}}
    if labels is not None:
        columns["label"] = labels if isinstance(labels, pa.Array) else pa.array(labels)
        features["label"] = {"_type": "ClassLabel", **({"names": names} if names else {})}
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    table = pa.table(columns).replace_schema_metadata(metadata)
    pq.write_table(table, path, row_group_size=row_group_size, **options)
    return path


def honest_file(path: Path, labels: bool = False, seed: int = 0) -> Path:
    """50 PNG images in row groups of 20, 20 and 10 (with labels 0…9 when asked)."""
    cells = [png(image) for image in images(ROWS, seed)]
    return hub_file(path, cells, np.arange(ROWS) % 10 if labels else None)


# Parquet's footer is a Thrift struct in the compact protocol; these few lines find its
# integer fields by their path of field ids (and list positions) so that a test can make
# one of them lie. FileMetaData: 3 num_rows, 4 row_groups; RowGroup: 1 columns, 3
# num_rows; ColumnChunk: 3 meta_data; ColumnMetaData: 5 num_values.
FILE_ROWS = (3,)


def group_rows(group: int) -> tuple[int, ...]:
    return (4, group, 3)


def column_values(group: int, column: int) -> tuple[int, ...]:
    return (4, group, 1, column, 3, 5)


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def skip_value(
    data: bytes, at: int, kind: int, where: tuple[int, ...], found: dict[Any, Any]
) -> int:
    """Past one compact-protocol value of type ``kind``, recording integers in ``found``."""
    if kind in (1, 2):  # booleans live in the field header
        return at
    if kind == 3:
        return at + 1
    if kind in (4, 5, 6):
        value, end = read_varint(data, at)
        found[where] = (at, end, (value >> 1) ^ -(value & 1))
        return end
    if kind == 7:
        return at + 8
    if kind == 8:
        size, at = read_varint(data, at)
        return at + size
    if kind in (9, 10):
        size, element = data[at] >> 4, data[at] & 0x0F
        at += 1
        if size == 15:
            size, at = read_varint(data, at)
        for index in range(size):
            at = skip_value(data, at, element, (*where, index), found)
        return at
    if kind == 12:
        last = 0
        while data[at]:
            delta, field_kind = data[at] >> 4, data[at] & 0x0F
            at += 1
            if delta:
                last += delta
            else:
                raw, at = read_varint(data, at)
                last = (raw >> 1) ^ -(raw & 1)
            at = skip_value(data, at, field_kind, (*where, last), found)
        return at + 1
    raise AssertionError(f"no Thrift type {kind} in a Parquet footer")


def footer_integers(data: bytes) -> dict[tuple[int, ...], tuple[int, int, int]]:
    length = int.from_bytes(data[-8:-4], "little")
    found: dict[Any, Any] = {}
    skip_value(data, len(data) - 8 - length, 12, (), found)
    return found


def lie(path: Path, *changes: tuple[tuple[int, ...], int]) -> Path:
    """Rewrite ``path`` with footer integers changed: ``(field path, new value)``."""
    data = path.read_bytes()
    for where, value in changes:
        start, end, _ = footer_integers(data)[where]
        encoded = bytearray()
        number = (value << 1) ^ (value >> 63)
        while number > 0x7F:
            encoded.append(number & 0x7F | 0x80)
            number >>= 7
        encoded.append(number)
        length = int.from_bytes(data[-8:-4], "little") + len(encoded) - (end - start)
        data = data[:start] + bytes(encoded) + data[end:-8] + length.to_bytes(4, "little")
        data += b"PAR1"
    path.write_bytes(data)
    return path


def test_the_footer_patcher_changes_only_what_it_is_told(tmp_path: Path) -> None:
    path = lie(honest_file(tmp_path / "p.parquet"), (FILE_ROWS, 1 << 40), (group_rows(2), 7))
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_rows == 1 << 40
    assert [metadata.row_group(g).num_rows for g in range(3)] == [20, 20, 7]
    assert metadata.row_group(1).column(0).num_values == 20


def convert_refused(tmp_path: Path, inputs: Sequence[Path], *args: str, **check: Any) -> str:
    """``convert`` (in a forked child: a lie may ask for the world) refused cleanly, with
    nothing written."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    before = snapshot(tmp_path)
    outcome = isolated_cli(["convert", *inputs, "-o", out / "x.h5", "-q", *args])
    line = assert_clean_failure(outcome, **check)
    assert_unchanged(tmp_path, before)
    return line


# --------------------------------------------------------------------------- lying counts


LIES = {
    "file says more": ([(FILE_ROWS, 60)], "declares 60 rows, but its row groups hold 50"),
    "file says fewer": ([(FILE_ROWS, 40)], "declares 40 rows, but its row groups hold 50"),
    "file says 2^40": ([(FILE_ROWS, 1 << 40)], "declares 1,099,511,627,776 rows, but"),
    "group says more": (
        [(group_rows(1), 25)],
        "row group 1: column image.bytes holds 20 values for the 25 rows",
    ),
    "group says fewer": (
        [(group_rows(1), 15)],
        "row group 1: column image.bytes holds 20 values for the 15 rows",
    ),
    "group and file say more": (
        [(group_rows(0), 25), (FILE_ROWS, 55)],
        "row group 0: column image.bytes holds 20 values for the 25 rows",
    ),
    "group and file say fewer": (
        [(group_rows(2), 5), (FILE_ROWS, 45)],
        "row group 2: column image.bytes holds 10 values for the 5 rows",
    ),
    "column chunk says more": (
        [(column_values(0, 0), 21)],
        "row group 0: column image.bytes holds 21 values for the 20 rows",
    ),
    "group says 2^40": (
        [(group_rows(0), 1 << 40), (FILE_ROWS, (1 << 40) + 30)],
        "row group 0 declares 1,099,511,627,776 rows, over the limit",
    ),
    "group says negative": (
        [(group_rows(0), -5), (FILE_ROWS, 25)],
        "row group 0 declares -5 rows",
    ),
    # every count of the footer agrees; only reading the pages shows the rows are not there
    "footer consistently says more": (
        [(group_rows(1), 26), *[(column_values(1, c), 26) for c in (0, 1)], (FILE_ROWS, 56)],
        "row group 1 holds 20 rows, not the 26 its metadata declares",
    ),
}


@pytest.mark.parametrize("case", LIES)
def test_a_lying_row_count_is_refused_naming_the_file_and_row_group(
    tmp_path: Path, case: str
) -> None:
    changes, reason = LIES[case]
    path = lie(honest_file(tmp_path / "lies.parquet"), *changes)
    convert_refused(tmp_path, [path], names=["lies.parquet"], reasons=[reason])


def test_a_lying_row_count_beside_labels_is_refused_for_what_it_is(tmp_path: Path) -> None:
    path = lie(honest_file(tmp_path / "l.parquet", labels=True), (group_rows(0), 22))
    convert_refused(
        tmp_path,
        [path],
        names=["l.parquet"],
        reasons=["row group 0: column image.bytes holds 20 values for the 22 rows"],
    )


def test_the_labels_of_a_consistently_lying_footer_are_refused(tmp_path: Path) -> None:
    changes = [(group_rows(0), 23), *[(column_values(0, c), 23) for c in (0, 1, 2)]]
    path = lie(honest_file(tmp_path / "l.parquet", labels=True), *changes, (FILE_ROWS, 53))
    convert_refused(
        tmp_path,
        [path],
        names=["l.parquet"],
        reasons=["row group 0 holds 20 rows, not the 23 its metadata declares"],
    )


def test_one_lying_shard_among_several_is_named(tmp_path: Path) -> None:
    shards = [honest_file(tmp_path / f"train-{n:05d}-of-00003.parquet", seed=n) for n in range(3)]
    lie(shards[1], (FILE_ROWS, 70))
    line = convert_refused(
        tmp_path, shards, names=[shards[1].name], reasons=["declares 70 rows, but its row"]
    )
    assert shards[0].name not in line and shards[2].name not in line


def test_verify_against_a_lying_source_is_a_clean_refusal(tmp_path: Path) -> None:
    path = honest_file(tmp_path / "v.parquet")
    out = tmp_path / "out.h5"
    assert isolated_cli(["convert", path, "-o", out, "-q"]).code == 0
    lie(path, (group_rows(2), 12), (FILE_ROWS, 52))
    outcome = isolated_cli(["verify", out, "--source", path, "-q"])
    assert_clean_failure(
        outcome, names=["v.parquet"], reasons=["row group 2: column image.bytes holds 10"]
    )


def test_a_column_chunk_said_to_live_in_another_file_is_refused(tmp_path: Path) -> None:
    path = honest_file(tmp_path / "main.parquet")
    honest_file(tmp_path / "other.parquet", seed=9)
    metadata = pq.ParquetFile(path).metadata
    metadata.set_file_path("other.parquet")
    footer = io.BytesIO()
    metadata.write_metadata_file(footer)
    data = path.read_bytes()
    body = data[: len(data) - 8 - int.from_bytes(data[-8:-4], "little")]
    path.write_bytes(body + footer.getvalue()[4:])
    convert_refused(
        tmp_path,
        [path],
        names=["main.parquet"],
        reasons=["column image.bytes is stored in another file ('other.parquet')"],
    )


DASK_LIES = {
    # found when the file is opened, before any task runs
    "file says fewer": ([(FILE_ROWS, 40)], "declares 40 rows, but its row groups hold 50"),
    # found by the worker that reads row group 2
    "footer consistently says more": (
        [(group_rows(2), 14), *[(column_values(2, c), 14) for c in (0, 1)], (FILE_ROWS, 54)],
        "row group 2 holds 10 rows, not the 14 its metadata declares",
    ),
}


@pytest.mark.parametrize("case", DASK_LIES)
def test_a_footer_lie_on_the_dask_engine_commits_nothing(tmp_path: Path, case: str) -> None:
    pytest.importorskip("distributed")
    changes, reason = DASK_LIES[case]
    path = lie(honest_file(tmp_path / "d.parquet"), *changes)
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    outcome = run_child(
        ["convert", path, "-o", out / "x.npy", "--engine", "dask", "--workers", "2", "-q"],
        timeout=240,
    )
    # the worker's failure arrives as the one line, with no report of the worker's own
    assert outcome.code == 1 and not outcome.note, outcome.describe()
    assert outcome.stderr == f"Error: {path}: {reason}\n", outcome.describe()
    assert_unchanged(tmp_path, before)


# --------------------------------------------------------------------------- expanded sizes


def one_value_many_rows(rows: int, value: bytes, struct: bool) -> Any:
    """An image column whose rows all share one dictionary value: small on disk."""
    cells = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), [value])
    if not struct:
        return cells
    return pa.StructArray.from_arrays([cells, pa.nulls(rows, pa.string())], ["bytes", "path"])


@pytest.mark.parametrize("struct", [True, False], ids=["hub-struct", "plain-binary"])
def test_a_dictionary_value_shared_by_4000_rows_is_measured_expanded(
    tmp_path: Path, struct: bool, child_tmp: Path
) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (1000, 1000), dtype=np.uint8)
    value = png(noise)  # about 1 MB, stored once; 4 GB once every row holds its copy
    path = hub_file(
        tmp_path / "bomb.parquet",
        one_value_many_rows(4000, value, struct),
        row_group_size=4000,
        store_schema=False,  # the Arrow schema would say dictionary; plain binary says less
        dictionary_pagesize_limit=4 << 20,
    )
    assert path.stat().st_size < 2 * len(value)
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    outcome = run_child(
        ["convert", path, "-o", out / "x.h5", "-q"], tmpdir=child_tmp, rss_limit=2 * RSS_BOUND
    )
    assert_clean_failure(
        outcome,
        names=["bomb.parquet"],
        reasons=[f"row group 0: its images expand to {4000 * len(value):,} bytes, over"],
    )
    assert_within_memory(outcome)
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("arrow_type", [False, True], ids=["binary", "arrow-dictionary"])
def test_rows_sharing_dictionary_values_within_the_limit_convert_exactly(
    tmp_path: Path, arrow_type: bool
) -> None:
    pixels = images(3)
    indices = pa.array(np.arange(300, dtype=np.int32) % 3)
    cells = pa.DictionaryArray.from_arrays(indices, [png(p) for p in pixels])
    column = pa.StructArray.from_arrays([cells, pa.nulls(300, pa.string())], ["bytes", "path"])
    # with the Arrow schema stored, the column reads back as an Arrow dictionary type
    path = hub_file(tmp_path / "shared.parquet", column, store_schema=arrow_type)
    out = tmp_path / "x.npy"
    outcome = isolated_cli(["convert", path, "-o", out, "-q", "-s", "none"])
    assert outcome.code == 0, outcome.describe()
    assert np.array_equal(np.load(out), pixels[np.arange(300) % 3].astype(np.float32))


@pytest.mark.parametrize("null", ["bytes", "struct"])
def test_a_null_image_value_names_its_row(tmp_path: Path, null: str) -> None:
    cells: list[Any] = [{"bytes": png(p), "path": None} for p in images(30)]
    cells[23] = None if null == "struct" else {"bytes": None, "path": "photos/23.png"}
    path = hub_file(tmp_path / "n.parquet", pa.array(cells, IMAGE_TYPE))
    where = " (only a reference to 'photos/23.png' is stored)" if null == "bytes" else ""
    line = convert_refused(
        tmp_path, [path], names=["n.parquet"], reasons=["n.parquet:row 23: holds no image bytes"]
    )
    assert line.endswith(f"holds no image bytes{where}")


# --------------------------------------------------------------------------- label columns


def labelled_file(path: Path, labels: Any, names: list[str] | None = NAMES) -> Path:
    cells = [png(image) for image in images(len(labels))]
    return hub_file(path, cells, labels, names=names)


LABEL_CASES = {
    "uint64 of 2^63": (
        pa.array([0, 1, 2**63, 3], pa.uint64()),
        None,
        "label 9223372036854775808 at row 2 is beyond int64",
    ),
    "uint64 at its maximum": (
        pa.array([0, 2**64 - 1, 1, 3], pa.uint64()),
        None,
        "label 18446744073709551615 at row 1 is beyond int64",
    ),
    "floats": (
        pa.array([0.0, 1.0, 2.5, 3.0]),
        NAMES,
        "label column 'label' holds double values, not integer class labels",
    ),
    "strings": (
        pa.array(["cat", "dog", "cat", "dog"]),
        NAMES,
        "label column 'label' holds string values, not integer class labels",
    ),
    "dictionary-encoded strings": (
        pa.array(["cat", "dog", "cat", "dog"]).dictionary_encode(),
        NAMES,
        "label column 'label' holds dictionary<values=string",
    ),
    "beyond the class names": (
        pa.array([0, 1, 7, 1]),
        ["cat", "dog"],
        "label 7 at row 2 is not one of the 2 classes",
    ),
    "negative": (pa.array([0, -1, 1, 1], pa.int8()), None, "label -1 at row 1 is negative"),
    "null": (pa.array([0, 1, 2, None]), NAMES, "has 1 empty rows (the first at row 3)"),
}


@pytest.mark.parametrize("case", LABEL_CASES)
def test_a_label_column_that_holds_no_valid_labels_is_refused(tmp_path: Path, case: str) -> None:
    labels, names, reason = LABEL_CASES[case]
    path = labelled_file(tmp_path / "labels.parquet", labels, names)
    convert_refused(tmp_path, [path], names=["labels.parquet"], reasons=[reason])


@pytest.mark.parametrize(
    "labels",
    [
        pa.array([3, 1, 4, 1, 5] * 8, pa.uint64()),
        pa.array([3, 1, 4, 1, 5] * 8, pa.int16()).dictionary_encode(),
    ],
    ids=["uint64", "dictionary-encoded"],
)
def test_valid_labels_of_any_integer_storage_arrive_exactly(tmp_path: Path, labels: Any) -> None:
    path = labelled_file(tmp_path / "ok.parquet", labels)
    out = tmp_path / "x.npy"
    outcome = isolated_cli(["convert", path, "-o", out, "-q"])
    assert outcome.code == 0, outcome.describe()
    assert np.load(tmp_path / "x.labels.npy").tolist() == [3, 1, 4, 1, 5] * 8


# --------------------------------------------------------------------------- WebDataset


def shard(path: Path, members: Sequence[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def samples(count: int, first: int = 0, seed: int = 0) -> list[tuple[str, bytes]]:
    """``KEY.png`` then ``KEY.cls`` for each sample, as WebDataset's writers lay them out."""
    members = []
    for offset, image in enumerate(images(count, seed)):
        key = f"sample{first + offset:06d}"
        members += [(f"{key}.png", png(image)), (f"{key}.cls", f"{offset % 10}\n".encode())]
    return members


def test_a_key_that_comes_back_after_other_samples_is_refused(tmp_path: Path) -> None:
    members = samples(6)
    # sample000001's label comes back after sample000002: one sample of two, or two of one
    members.insert(6, members.pop(3))
    path = shard(tmp_path / "again.tar", members)
    convert_refused(
        tmp_path,
        [path],
        names=["again.tar:sample000001.cls"],
        reasons=["key 'sample000001' appears again after other samples"],
    )


def test_a_whole_sample_repeated_later_is_refused(tmp_path: Path) -> None:
    members = samples(5)
    path = shard(tmp_path / "twice.tar", [*members, *members[2:4]])
    convert_refused(
        tmp_path,
        [path],
        names=["twice.tar:sample000001.png"],
        reasons=["key 'sample000001' appears again after other samples"],
    )


@pytest.mark.parametrize("extension", ["png", "cls"])
def test_a_member_repeated_within_its_sample_is_refused(tmp_path: Path, extension: str) -> None:
    members = samples(5)
    at = 4 if extension == "png" else 5  # sample000002's image, or its label
    members.insert(at + 1, members[at])
    path = shard(tmp_path / "adjacent.tar", members)
    convert_refused(
        tmp_path,
        [path],
        names=[f"adjacent.tar:sample000002.{extension}"],
        reasons=[f"sample 'sample000002' already holds a .{extension} member"],
    )


def test_the_shard_that_repeats_a_key_is_named_among_several(tmp_path: Path) -> None:
    good = shard(tmp_path / "shard-0.tar", samples(4))
    members = samples(4, first=4, seed=1)
    bad = shard(tmp_path / "shard-1.tar", [*members, members[0]])
    convert_refused(
        tmp_path,
        [good, bad],
        names=["shard-1.tar:sample000004.png"],
        reasons=["key 'sample000004' appears again"],
    )


NOT_LABELS = {
    "minus": b"-5",
    "underscore": b"1_0",
    "full-width digit": "３".encode(),
    "plus": b"+3",
    "hexadecimal": b"0x3",
    "empty": b"",
    "only a newline": b"\n",
    "two numbers": b"3 4",
    "nul byte": b"3\x00",
    "word": b"cat\n",
}


@pytest.mark.parametrize("case", NOT_LABELS)
def test_a_cls_member_that_is_not_ascii_digits_is_refused(tmp_path: Path, case: str) -> None:
    members = samples(5)
    members[5] = ("sample000002.cls", NOT_LABELS[case])
    path = shard(tmp_path / "cls.tar", members)
    convert_refused(
        tmp_path,
        [path],
        names=["cls.tar:sample000002.cls"],
        reasons=["is not a whole number in ASCII digits"],
    )


@pytest.mark.parametrize("digits", [20, 30, 64])
def test_a_cls_label_beyond_int64_is_refused(tmp_path: Path, digits: int) -> None:
    members = samples(5)
    members[3] = ("sample000001.cls", b"9" * digits)
    path = shard(tmp_path / "big.tar", members)
    convert_refused(
        tmp_path,
        [path],
        names=["big.tar:sample000001.cls"],
        reasons=[f"label {'9' * digits} is beyond int64"],
    )


def test_a_huge_cls_member_is_refused_before_it_is_read(tmp_path: Path) -> None:
    members = samples(5)
    members[3] = ("sample000001.cls", b"1" * (8 << 20))
    path = shard(tmp_path / "huge.tar", members)
    convert_refused(
        tmp_path,
        [path],
        names=["huge.tar:sample000001.cls"],
        reasons=["8,388,608 bytes is no label"],
    )


def test_labels_as_webdataset_writes_them_arrive_exactly(tmp_path: Path) -> None:
    written = [b"3", b"1\n", b"4\r\n", b"007", b"9223372036854775807"]
    members = samples(5)
    for index, text in enumerate(written):
        members[2 * index + 1] = (members[2 * index + 1][0], text)
    path = shard(tmp_path / "ok.tar", members)
    outcome = isolated_cli(["convert", path, "-o", tmp_path / "x.npy", "-q"])
    assert outcome.code == 0, outcome.describe()
    assert np.load(tmp_path / "x.labels.npy").tolist() == [3, 1, 4, 7, 2**63 - 1]
