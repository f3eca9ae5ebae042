"""CIFAR readers and archive detection under hostile input.

- Pickled batches: numpy arrays are made only C-ordered, of plain numeric dtypes, over a
  ``bytes`` buffer of exactly their size, within the pickle's own size, whichever way the
  pickle builds them (``numpy.ndarray(...)``, ``_reconstruct`` and its state, ``dtype``,
  ``_codecs.encode``).
- An archive of CIFAR batches is listed once (not once per batch), and bounded.
- Labels beyond the dataset's classes are refused (``.bin`` and pickled batches).
- Archives are told apart by what their members are, not by their names.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy._core.multiarray import _reconstruct

from .conftest import (
    Outcome,
    assert_clean_failure,
    assert_unchanged,
    cli,
    isolated_cli,
    snapshot,
    unit_values,
)

ROW = 3 * 32 * 32
U1 = np.dtype("u1")
PLAIN_ARRAYS = "only plain arrays are unpickled"


class Reduce:
    """Pickles as ``func(*args)``, then ``BUILD`` with ``state`` when given."""

    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        if self.state is None:
            return (self.func, self.args)
        return (self.func, self.args, self.state)


def ndarray(*args: Any) -> Reduce:
    """``numpy.ndarray(shape, dtype, buffer, offset, strides, order)`` in a pickle."""
    return Reduce(np.ndarray, args)


def rebuilt(shape: Any, dtype: Any, fortran: bool, raw: Any) -> Reduce:
    """numpy's own pickling: ``_reconstruct(ndarray, (0,), b"b")`` then its state."""
    return Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, shape, dtype, fortran, raw))


def batch(data: Any, labels: Any, protocol: int = 2, **more: Any) -> bytes:
    return pickle.dumps({b"data": data, b"labels": labels, **more}, protocol=protocol)


def convert(path: Path, out: Path, *options: str, isolated: bool = False) -> Outcome:
    args = ["convert", path, "-o", out / "x.npy", *options]
    return isolated_cli(args) if isolated else cli(args)


def refused(outcome: Outcome, path: Path, reason: str, out: Path, before: Any) -> str:
    line = assert_clean_failure(outcome, names=[path.name], reasons=[reason])
    assert_unchanged(out, before)
    return line


# --------------------------------------------------------------------------- arrays

ROWS = bytes(range(256)) * (2 * ROW // 256)

#: name: (data, labels, protocol, the specific reason)
ARRAY_CASES: dict[str, tuple[Any, Any, int, str]] = {
    "stride 0 over one byte, 8 GB": (
        ndarray((2_800_000, ROW), U1, b"\x00", 0, (0, 0)),
        ndarray((2_800_000,), U1, b"\x01", 0, (0,)),
        2,
        "(8,601,600,000 bytes) from 1 bytes",
    ),
    "stride 0 over an exact buffer": (ndarray((2, ROW), U1, ROWS, 0, (0, 1)), [1, 2], 2, "strides"),
    "huge strides": (ndarray((2, ROW), U1, ROWS, 0, (1 << 40, 1)), [1, 2], 2, "strides"),
    "negative strides from an offset": (
        ndarray((2, ROW), U1, ROWS, ROW, (-ROW, 1)),
        [1, 2],
        2,
        "at offset 3072",
    ),
    "negative strides": (ndarray((2, ROW), U1, ROWS, 0, (-ROW, 1)), [1, 2], 2, "strides"),
    "no buffer": (ndarray((2, ROW), U1), [1, 2], 2, "from no buffer"),
    "Fortran order flag": (rebuilt((2, ROW), U1, True, ROWS), [1, 2], 2, "Fortran order"),
    "Fortran order argument": (ndarray((2, ROW), U1, ROWS, 0, None, "F"), [1, 2], 2, "order 'F'"),
    "object labels": (
        rebuilt((2, ROW), U1, False, ROWS),
        rebuilt((2,), np.dtype("O"), False, [1, 2]),
        2,
        "asks for dtype 'O8'",
    ),
    "structured dtype": (
        rebuilt((2, ROW), np.dtype([("a", "u1")]), False, ROWS),
        [1, 2],
        2,
        "asks for dtype 'V1'",
    ),
    "shape product beyond int64": (
        rebuilt((1 << 32, 1 << 32, 1 << 32), U1, False, b""),
        [],
        2,
        "makes an array of shape",
    ),
    "a zero dimension beside a huge one": (
        rebuilt((0, 1 << 64), U1, False, b""),
        [],
        2,
        "makes an array of shape",
    ),
    "buffer shorter than declared": (
        rebuilt((2, ROW), U1, False, ROWS[:-1]),
        [1, 2],
        2,
        "from 6,143 bytes",
    ),
    "buffer longer than declared": (
        ndarray((2, ROW), U1, ROWS + b"\x00"),
        [1, 2],
        2,
        "from 6,145 bytes",
    ),
    "bytearray buffer": (ndarray((2, ROW), U1, bytearray(ROWS)), [1, 2], 5, "bytearray buffer"),
    "bytearray state": (rebuilt((2, ROW), U1, False, bytearray(ROWS)), [1, 2], 5, "bytearray"),
    "array as the buffer of another": (
        ndarray((2, ROW), U1, rebuilt((2, ROW), U1, False, ROWS)),
        [1, 2],
        2,
        "not bytes",
    ),
    "reconstruct of something else": (
        Reduce(_reconstruct, (_reconstruct, (0,), b"b"), (1, (2, ROW), U1, False, ROWS)),
        [1, 2],
        2,
        "other than numpy.ndarray",
    ),
}


@pytest.mark.parametrize("case", ARRAY_CASES)
def test_arrays_are_made_only_from_exact_bytes(tmp_path: Path, out_dir: Path, case: str) -> None:
    data, labels, protocol, reason = ARRAY_CASES[case]
    path = tmp_path / "data_batch_1"
    path.write_bytes(batch(data, labels, protocol))
    assert path.stat().st_size < 20_000
    before = snapshot(out_dir)
    line = refused(convert(path, out_dir, isolated=True), path, reason, out_dir, before)
    assert PLAIN_ARRAYS in line


def test_arrays_of_numpy_pickles_convert_but_not_beyond_the_pickle(
    tmp_path: Path, out_dir: Path
) -> None:
    rows = np.frombuffer(ROWS, np.uint8).reshape(2, ROW)
    images = rows.reshape(2, 3, 32, 32).transpose(0, 2, 3, 1)
    for protocol in (2, 3, 4):  # as numpy pickles them: these convert exactly
        path = tmp_path / f"data_batch_{protocol}"
        path.write_bytes(batch(rows, np.array([3, 9], np.int64), protocol))
        outcome = convert(path, out_dir, "--overwrite")
        assert outcome.code == 0, outcome.describe()
        assert np.array_equal(np.load(out_dir / "x.npy"), unit_values(images))
        assert np.array_equal(np.load(out_dir / "x.labels.npy"), [3, 9])
    # one buffer under three arrays: more array bytes than the pickle holds
    path = tmp_path / "data_batch_1"
    shared = ndarray((2, ROW), U1, ROWS)
    path.write_bytes(batch(shared, [1, 2], copies=[ndarray((2, ROW), U1, ROWS)] * 2))
    before = snapshot(out_dir)
    reason = "arrays hold more bytes than the pickle"
    line = refused(convert(path, out_dir, "--overwrite"), path, reason, out_dir, before)
    assert PLAIN_ARRAYS in line


def test_codecs_that_multiply_the_size_are_refused(tmp_path: Path, out_dir: Path) -> None:
    grown: Any = b"\x00" * 64
    for _ in range(34):  # 64 bytes doubled 34 times: a terabyte
        grown = Reduce(codecs.encode, (grown, "hex"))
    path = tmp_path / "data_batch_1"
    path.write_bytes(batch(ndarray((2, ROW), U1, ROWS), [1, 2], filenames=grown))
    before = snapshot(out_dir)
    outcome = convert(path, out_dir, isolated=True)
    refused(outcome, path, "the pickle encodes bytes with 'hex'", out_dir, before)


# --------------------------------------------------------------------------- labels


def bin_records(labels: list[list[int]]) -> bytes:
    head = np.array(labels, np.uint8)
    pixels = np.zeros((len(labels), ROW), np.uint8)
    return np.concatenate([head, pixels], axis=1).tobytes()


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([[1], [200], [3]], "label 200 at row 1 is not one of the 10 classes"),
        ([[1], [9], [10]], "label 10 at row 2 is not one of the 10 classes"),
        ([[1, 5], [2, 99], [3, 100]], "label 100 at row 2 is not one of the 100 classes"),
        ([[1, 5], [20, 99], [3, 7]], "label 20 at row 1 is not one of the 20 classes"),
    ],
    ids=["cifar10-200", "cifar10-10", "cifar100-fine-100", "cifar100-coarse-20"],
)
def test_cifar_bin_labels_beyond_the_classes_are_refused(
    tmp_path: Path, out_dir: Path, records: list[list[int]], reason: str
) -> None:
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bin_records(records))
    before = snapshot(out_dir)
    refused(convert(path, out_dir), path, reason, out_dir, before)


def test_cifar_bin_labels_in_range_carry_the_class_names(tmp_path: Path, out_dir: Path) -> None:
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bin_records([[0], [9]]))
    outcome = cli(["info", path, "--json"])
    assert outcome.code == 0, outcome.describe()
    assert b'"truck"' in outcome.stdout and b'"airplane"' in outcome.stdout


def add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def rows_of(count: int) -> np.ndarray:
    return np.arange(count * ROW, dtype=np.uint64).astype(np.uint8).reshape(count, ROW)


@pytest.mark.parametrize(
    ("contents", "reason"),
    [
        ({b"labels": [1, 10]}, "label 10 at row 1 is not one of the 10 classes"),
        ({b"fine_labels": [100, 1]}, "label 100 at row 0 is not one of the 100 classes"),
        (
            {b"fine_labels": [1, 2], b"coarse_labels": [3, 20]},
            "label 20 at row 1 is not one of the 20 classes",
        ),
    ],
    ids=["cifar10", "cifar100-fine", "cifar100-coarse"],
)
def test_pickled_batch_labels_beyond_the_classes_are_refused(
    tmp_path: Path, out_dir: Path, contents: dict[bytes, list[int]], reason: str
) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": rows_of(2), **contents}, protocol=2))
    before = snapshot(out_dir)
    refused(convert(path, out_dir), path, reason, out_dir, before)


def test_archive_labels_are_checked_against_its_meta_names(tmp_path: Path, out_dir: Path) -> None:
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        meta = pickle.dumps({b"label_names": [b"cat", b"dog", b"bird"]}, protocol=2)
        add(archive, "cifar-10-batches-py/batches.meta", meta)
        add(archive, "cifar-10-batches-py/data_batch_1", batch(rows_of(2), [0, 2]))
        add(archive, "cifar-10-batches-py/data_batch_2", batch(rows_of(2), [1, 3]))
    before = snapshot(out_dir)
    line = refused(
        convert(path, out_dir),
        path,
        "label 3 at row 1 is not one of the 3 classes",
        out_dir,
        before,
    )
    assert "data_batch_2" in line


# --------------------------------------------------------------------------- many members


class TooManyReads(BaseException):
    """Raised by the counter past its budget, so that a quadratic reader stops at once."""


@pytest.fixture
def member_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many tar headers were read (``TarFile.next`` calls), across every opening."""
    calls = [0]
    original = tarfile.TarFile.next

    def counting(self: tarfile.TarFile) -> tarfile.TarInfo | None:
        calls[0] += 1
        if calls[0] > 20_000:
            raise TooManyReads(f"{calls[0]} tar headers read")
        return original(self)

    monkeypatch.setattr(tarfile.TarFile, "next", counting)
    yield calls


def many_batches(path: Path, count: int) -> Path:
    one = batch(rows_of(1), [7])
    with tarfile.open(path, "w:gz") as archive:
        for number in range(1, count + 1):
            add(archive, f"cifar-10-batches-py/data_batch_{number}", one)
    return path


def test_an_archive_of_many_batches_is_listed_once(
    tmp_path: Path, out_dir: Path, member_reads: list[int]
) -> None:
    count = 200
    path = many_batches(tmp_path / "many.tar.gz", count)
    outcome = convert(path, out_dir)
    assert outcome.code == 0, outcome.describe()
    assert np.load(out_dir / "x.npy").shape == (count, 32, 32, 3)
    # detection (a few members), one listing, then one pass that reads at known offsets
    assert member_reads[0] <= 2 * count + 70, member_reads[0]


def test_an_archive_of_too_many_members_is_refused_early(
    tmp_path: Path, out_dir: Path, member_reads: list[int]
) -> None:
    count = 3000
    path = many_batches(tmp_path / "many.tar.gz", count)
    before = snapshot(out_dir)
    reason = "members; a CIFAR archive holds a few batches"
    line = refused(convert(path, out_dir), path, reason, out_dir, before)
    assert "holds more than" in line
    assert member_reads[0] < count // 3, member_reads[0]  # refused long before the end


def test_a_batch_named_twice_is_refused(tmp_path: Path, out_dir: Path) -> None:
    path = tmp_path / "cifar-10-python.tar"
    with tarfile.open(path, "w") as archive:
        add(archive, "data_batch_1", batch(rows_of(2), [1, 2]))
        add(archive, "data_batch_1", batch(rows_of(3), [1, 2, 3]))
    before = snapshot(out_dir)
    refused(convert(path, out_dir), path, "data_batch_1: member appears twice", out_dir, before)


# --------------------------------------------------------------------------- detection


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture
def pictures() -> np.ndarray:
    return np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8) * 3


def test_a_tar_of_images_named_like_batches_converts_as_images(
    tmp_path: Path, out_dir: Path, pictures: np.ndarray
) -> None:
    path = tmp_path / "photos.tar"
    with tarfile.open(path, "w") as archive:
        for number, image in enumerate(pictures, 1):
            add(archive, f"data_batch_{number}.png", png(image))
    outcome = convert(path, out_dir)
    assert outcome.code == 0, outcome.describe()
    assert np.array_equal(np.load(out_dir / "x.npy"), unit_values(pictures))


def test_a_tar_mixing_batches_and_images_is_refused_unless_key_chooses(
    tmp_path: Path, out_dir: Path, pictures: np.ndarray
) -> None:
    path = tmp_path / "mixed.tar"
    with tarfile.open(path, "w") as archive:
        add(archive, "data_batch_1", batch(rows_of(2), [1, 2]))
        add(archive, "data_batch_1.png", png(pictures[0]))
    before = snapshot(out_dir)
    line = refused(
        convert(path, out_dir), path, "holds both pickled batches (data_batch_1)", out_dir, before
    )
    assert "images (data_batch_1.png)" in line and "--key" in line
    as_batches = convert(path, out_dir, "--key", "data_batch_1")
    assert as_batches.code == 0, as_batches.describe()
    assert np.load(out_dir / "x.npy").shape == (2, 32, 32, 3)
    as_images = convert(path, out_dir, "--key", "*.png", "--overwrite")
    assert as_images.code == 0, as_images.describe()
    assert np.array_equal(np.load(out_dir / "x.npy"), unit_values(pictures[:1]))


def test_a_zip_of_images_with_a_stray_npy_is_refused_unless_key_chooses(
    tmp_path: Path, out_dir: Path, pictures: np.ndarray
) -> None:
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for number, image in enumerate(pictures):
            archive.writestr(f"img{number}.png", png(image))
        archive.writestr("stray.npy", npy(np.zeros(3, np.uint8)))
    before = snapshot(out_dir)
    line = refused(
        convert(path, out_dir), path, "holds both .npy arrays (stray.npy)", out_dir, before
    )
    assert "images (img0.png)" in line and "--key" in line
    outcome = convert(path, out_dir, "--key", "*.png")
    assert outcome.code == 0, outcome.describe()
    assert np.array_equal(np.load(out_dir / "x.npy"), unit_values(pictures))


def test_a_zip_whose_images_are_named_npy_is_not_an_npz(
    tmp_path: Path, out_dir: Path, pictures: np.ndarray
) -> None:
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.npy", png(pictures[0]))
        for number, image in enumerate(pictures):
            archive.writestr(f"img{number}.png", png(image))
    outcome = convert(path, out_dir)
    assert outcome.code == 0, outcome.describe()
    assert np.array_equal(np.load(out_dir / "x.npy"), unit_values(pictures))
