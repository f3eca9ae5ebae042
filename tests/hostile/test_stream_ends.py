"""Where an input ends: exactly where its header says, with its checksums intact.

A file that holds more than its header declares is refused, raw or gzip, as standard input
is; a gzip stream is read to its end, so that gzip's CRC and length checks run before the
output is committed; a .npz member whose CRC fails is reported as damaged, naming it.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from pixscale.errors import InputError

from .conftest import (
    Outcome,
    assert_clean_failure,
    cli,
    gzip_bytes,
    idx_bytes,
    leftovers,
    npy_bytes,
    unit_values,
)

#: 20 images of 8×8 whose pixels run through every byte value.
PIXELS = (np.arange(20 * 8 * 8) % 256).astype(np.uint8).reshape(20, 8, 8)
LABELS = (np.arange(20) % 10).astype(np.uint8)
IDX_HEADER = 16
#: A stored-block gzip member: a 10-byte header, then a 5-byte block header before the data.
STORED_DATA_AT = 10 + 5


def stored_gzip(data: bytes) -> bytearray:
    """``data`` gzip-compressed at level 0, so each byte of it sits in the file as is."""
    return bytearray(gzip.compress(data, compresslevel=0, mtime=0))


def convert(source: Path, out: Path, *extra: object) -> Outcome:
    return cli(["convert", source, "-o", out / "o.h5", *extra])


def assert_refused(outcome: Outcome, source: Path, out: Path, reason: str) -> str:
    """Exit 1 with one line naming ``source`` and ``reason``, and no output left."""
    line = assert_clean_failure(outcome, names=[source.name], reasons=[reason])
    assert sorted(p.name for p in out.iterdir()) == [], line
    assert leftovers(out) == []
    return line


def assert_converted_exactly(outcome: Outcome, out: Path, pixels: np.ndarray) -> None:
    assert outcome.code == 0, outcome.describe()
    with h5py.File(out / "o.h5") as handle:
        np.testing.assert_array_equal(handle["images"][:], unit_values(pixels))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# ------------------------------------------------------------------ gzip checksums


def test_gzip_idx_with_a_flipped_pixel_fails_its_crc(inputs: Path, out: Path) -> None:
    data = stored_gzip(idx_bytes(PIXELS))
    data[STORED_DATA_AT + IDX_HEADER + 700] ^= 1  # a pixel: only the CRC can tell
    source = inputs / "a-idx3-ubyte.gz"
    source.write_bytes(bytes(data))
    line = assert_refused(convert(source, out), source, out, "gzip CRC check failed")
    assert "the file is damaged" in line


def test_gzip_idx_with_a_tampered_trailer_crc_fails_its_crc(inputs: Path, out: Path) -> None:
    data = bytearray(gzip_bytes(idx_bytes(PIXELS)))
    data[-8] ^= 0xFF  # the trailer's CRC-32; the pixels are intact
    source = inputs / "a-idx3-ubyte.gz"
    source.write_bytes(bytes(data))
    assert_refused(convert(source, out), source, out, "gzip CRC check failed")


def test_gzip_labels_with_a_flipped_label_fail_their_crc(inputs: Path, out: Path) -> None:
    (inputs / "a-images-idx3-ubyte.gz").write_bytes(gzip_bytes(idx_bytes(PIXELS)))
    labels = stored_gzip(idx_bytes(LABELS))
    labels[STORED_DATA_AT + 8 + 3] ^= 1
    (inputs / "a-labels-idx1-ubyte.gz").write_bytes(bytes(labels))
    outcome = convert(inputs / "a-images-idx3-ubyte.gz", out)
    assert_refused(outcome, inputs / "a-labels-idx1-ubyte.gz", out, "gzip CRC check failed")


def test_verify_against_a_damaged_gzip_source_names_the_crc(inputs: Path, out: Path) -> None:
    source = inputs / "a-idx3-ubyte.gz"
    data = stored_gzip(idx_bytes(PIXELS))
    source.write_bytes(bytes(data))
    assert convert(source, out).code == 0
    data[STORED_DATA_AT + IDX_HEADER + 700] ^= 1
    source.write_bytes(bytes(data))
    outcome = cli(["verify", out / "o.h5", "--source", source])
    assert_clean_failure(outcome, names=[source.name], reasons=["gzip CRC check failed"])


# ------------------------------------------------------------------ more than declared


def test_raw_idx_holding_more_images_than_declared(inputs: Path, out: Path) -> None:
    source = inputs / "a-idx3-ubyte"
    data = bytearray(idx_bytes(PIXELS))
    data[4:8] = (10).to_bytes(4, "big")  # 20 images in the file, 10 in the header
    source.write_bytes(bytes(data))
    reason = "holds 640 bytes more than its header declares"
    assert_refused(convert(source, out), source, out, reason)


def test_gzip_idx_holding_more_images_than_declared(inputs: Path, out: Path) -> None:
    source = inputs / "a-idx3-ubyte.gz"
    data = bytearray(idx_bytes(PIXELS))
    data[4:8] = (10).to_bytes(4, "big")
    source.write_bytes(gzip_bytes(bytes(data)))
    reason = "holds 640 bytes more than its header declares"
    assert_refused(convert(source, out), source, out, reason)


def test_gzip_idx_whose_stream_goes_on_for_megabytes(inputs: Path, out: Path) -> None:
    source = inputs / "a-idx3-ubyte.gz"
    source.write_bytes(gzip_bytes(idx_bytes(PIXELS) + bytes(16 << 20)))
    reason = "holds over 1,048,576 bytes more than its header declares"
    assert_refused(convert(source, out), source, out, reason)


def test_gzip_idx_with_garbage_after_its_member(inputs: Path, out: Path) -> None:
    source = inputs / "a-idx3-ubyte.gz"
    source.write_bytes(gzip_bytes(idx_bytes(PIXELS)) + b"garbage after the member")
    reason = "bytes after its gzip data are neither gzip nor zero padding"
    assert_refused(convert(source, out), source, out, reason)


def test_npy_with_trailing_bytes(inputs: Path, out: Path) -> None:
    source = inputs / "x.npy"
    source.write_bytes(npy_bytes(PIXELS) + bytes(64))
    reason = "holds 64 bytes more than its header declares"
    assert_refused(convert(source, out), source, out, reason)


def test_raw_stdin_with_trailing_bytes(out: Path) -> None:
    outcome = cli(["convert", "-", "-o", out / "o.h5"], input=npy_bytes(PIXELS) + b"xy")
    assert_clean_failure(outcome, names=["<stdin>"], reasons=["than its header declares"])
    assert sorted(p.name for p in out.iterdir()) == []


def test_npz_member_holding_more_than_its_header_declares(inputs: Path, out: Path) -> None:
    source = inputs / "a.npz"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", npy_bytes(PIXELS) + bytes(4096))
    reason = "member 'x_train.npy': holds 4,096 bytes more than its header declares"
    assert_refused(convert(source, out), source, out, reason)


# ------------------------------------------------------------------ .npz member CRCs


def npz_with_stored_member(path: Path) -> bytearray:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("x_train.npy", npy_bytes(PIXELS))
    return bytearray(path.read_bytes())


def test_npz_member_with_a_flipped_pixel_fails_its_crc(inputs: Path, out: Path) -> None:
    source = inputs / "a.npz"
    data = npz_with_stored_member(source)
    data[data.find(b"\x93NUMPY") + 200] ^= 1
    source.write_bytes(bytes(data))
    reason = "member 'x_train.npy': CRC check failed (damaged)"
    assert_refused(convert(source, out), source, out, reason)


def test_npz_member_with_a_tampered_crc_fails_its_crc(inputs: Path, out: Path) -> None:
    source = inputs / "a.npz"
    data = npz_with_stored_member(source)
    data[14] ^= 0xFF  # the CRC-32 in the local header …
    data[data.find(b"PK\x01\x02") + 16] ^= 0xFF  # … and in the central directory
    source.write_bytes(bytes(data))
    reason = "member 'x_train.npy': CRC check failed (damaged)"
    line = assert_refused(convert(source, out), source, out, reason)
    assert "damaged header" not in line


def test_npz_labels_member_with_a_flipped_label_fails_its_crc(inputs: Path, out: Path) -> None:
    source = inputs / "a.npz"
    buffer = io.BytesIO()
    labels = LABELS.astype(np.int64)
    np.savez(buffer, x_train=PIXELS, y_train=labels)
    data = bytearray(buffer.getvalue())
    header = len(npy_bytes(labels)) - labels.nbytes
    labels_at = data.find(b"\x93NUMPY", data.find(b"y_train.npy"))
    data[labels_at + header + labels.itemsize] ^= 1  # the second label
    source.write_bytes(bytes(data))
    reason = "member 'y_train.npy': CRC check failed (damaged)"
    assert_refused(convert(source, out, "--key", "x_train"), source, out, reason)


# ------------------------------------------------------------------ valid gzip framing


def test_multi_member_gzip_idx_converts_exactly(inputs: Path, out: Path) -> None:
    data = idx_bytes(PIXELS)
    source = inputs / "a-idx3-ubyte.gz"
    source.write_bytes(gzip_bytes(data[:500]) + gzip_bytes(data[500:]))  # as `cat a.gz b.gz`
    assert_converted_exactly(convert(source, out), out, PIXELS)


def test_gzip_idx_followed_by_zero_padding_converts_exactly(inputs: Path, out: Path) -> None:
    source = inputs / "a-idx3-ubyte.gz"
    source.write_bytes(gzip_bytes(idx_bytes(PIXELS)) + bytes(1 << 20))  # as gzip accepts
    assert_converted_exactly(convert(source, out), out, PIXELS)


def test_verify_reads_the_source_to_its_end() -> None:
    """Its end checks run even when the images stop with the last one taken."""
    from pixscale.tasks.verify import Rechunked

    def chunks() -> Iterator[np.ndarray]:
        yield np.zeros((3, 2, 2), np.uint8)
        raise InputError("x.idx: holds 4 bytes more than its header declares")

    taken = Rechunked(chunks())
    assert taken.take(3).shape == (3, 2, 2)
    with pytest.raises(InputError, match="holds 4 bytes more"):
        taken.finish()
