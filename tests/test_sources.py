"""Readers: IDX (raw and gzip, by content) and .npy, with labels."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE_IMAGES, SAMPLE_LABELS
from pixscale.errors import InputError
from pixscale.sources import open_source


def collect(source, rows: int = 77) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.concatenate(list(source.chunks(rows)))


def test_gzip_idx_reads_images_and_sibling_labels(sample: tuple[np.ndarray, np.ndarray]) -> None:
    source = open_source(SAMPLE_IMAGES)
    assert source.shape == (1000, 28, 28) and source.layout == "nhw" and source.format == "idx"
    assert np.array_equal(collect(source), sample[0])
    assert source.labels is not None
    assert np.array_equal(source.labels.values, sample[1])


def test_raw_idx_is_recognised_by_content_not_name(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    raw = tmp_path / "digits.bin"
    raw.write_bytes(gzip.open(SAMPLE_IMAGES).read())
    source = open_source(raw)
    assert source.labels is None
    assert np.array_equal(collect(source, 1000), sample[0])


def test_explicit_labels_file(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    images = tmp_path / "x.gz"
    shutil.copy(SAMPLE_IMAGES, images)
    labels = tmp_path / "y.npy"
    np.save(labels, sample[1].astype(np.int64))
    source = open_source(images, labels=labels)
    assert source.labels is not None and np.array_equal(source.labels.values, sample[1])


def test_npy_is_read_in_windows(sample_npy: Path, sample) -> None:  # type: ignore[no-untyped-def]
    source = open_source(sample_npy)
    chunks = list(source.chunks(300))
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    assert np.array_equal(np.concatenate(chunks), sample[0])


def test_several_inputs_concatenate_with_labels(sample) -> None:  # type: ignore[no-untyped-def]
    source = open_source([SAMPLE_IMAGES, SAMPLE_IMAGES])
    assert source.shape == (2000, 28, 28)
    assert source.labels is not None and len(source.labels.values) == 2000
    assert np.array_equal(collect(source)[1000:], sample[0])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"hello world, not images", "unknown format"),
        (b"\x00\x00\x0d\x03" + (1).to_bytes(4, "big") * 3 + b"\0" * 4, "IDX data type is float32"),
        (
            b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 9,
            "truncated",
        ),
    ],
)
def test_bad_inputs_raise_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        source = open_source(path)
        collect(source)


def test_non_uint8_npy_names_the_dtype(tmp_path: Path) -> None:
    path = tmp_path / "f.npy"
    np.save(path, np.zeros((2, 3, 3), np.float32))
    with pytest.raises(InputError, match="dtype is float32"):
        open_source(path)


def test_corrupt_gzip_is_reported(tmp_path: Path) -> None:
    data = bytearray(SAMPLE_IMAGES.read_bytes())
    data[5000:5100] = b"\xff" * 100
    path = tmp_path / "corrupt-images-idx3-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt or truncated gzip"):
        collect(open_source(path))


def test_label_count_must_match(tmp_path: Path) -> None:
    labels = tmp_path / "y.npy"
    np.save(labels, np.zeros(10, np.uint8))
    with pytest.raises(InputError, match="10 labels for 1000 images"):
        open_source(SAMPLE_IMAGES, labels=labels)


def test_sibling_labels_file_name() -> None:
    assert SAMPLE_LABELS.is_file()
    source = open_source(SAMPLE_IMAGES)
    assert source.labels is not None and source.labels.origin == SAMPLE_LABELS.name
