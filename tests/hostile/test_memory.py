"""Memory bombs: tiny files whose headers claim huge arrays.

Each run is a child process whose peak resident memory (its own ru_maxrss, measured through a
small launcher) must stay under ``RSS_BOUND``; a watchdog kills it as soon as it goes over, so
a bomb that works fails its test quickly instead of taking the machine down. Each must end
with exit 1 and one clean line.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from .conftest import (
    RSS_BOUND,
    Outcome,
    assert_clean_failure,
    assert_unchanged,
    assert_within_memory,
    gzip_bytes,
    idx_bytes,
    idx_header,
    run_child,
    snapshot,
)

#: RLIMIT_FSIZE for these children: an output that a bomb makes grow stops here.
FILE_SIZE_GUARD = 2 << 30
TIMEOUT = 60


def run_bomb(args: list[object], tmp_path: Path, **options: object) -> Outcome:
    return run_child(
        args,
        rss_limit=RSS_BOUND,
        timeout=TIMEOUT,
        file_size_limit=FILE_SIZE_GUARD,
        tmpdir=tmp_path / "tmpdir",
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "tmpdir").mkdir()
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    return inputs, outputs


def forge_gzip_size(data: bytes, size: int) -> bytes:
    """A gzip stream whose trailer claims ``size`` uncompressed bytes (mod 2**32)."""
    return data[:-4] + struct.pack("<I", size % (1 << 32))


def small_images() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (10, 28, 28), dtype=np.uint8)


def labels_bomb(folder: Path, case: str) -> tuple[Path, Path]:
    """Ten genuine images beside a labels file whose header claims billions of labels."""
    images = folder / "bomb-images-idx3-ubyte.gz"
    images.write_bytes(gzip_bytes(idx_bytes(small_images())))
    labels = folder / "bomb-labels-idx1-ubyte.gz"
    if case == "2e9 labels":
        labels.write_bytes(gzip_bytes(idx_header(2_000_000_000) + bytes(64)))
    elif case == "2e9 labels, forged gzip size":
        data = gzip_bytes(idx_header(2_000_000_000) + bytes(64))
        labels.write_bytes(forge_gzip_size(data, 8 + 2_000_000_000))
    elif case == "4294967295 labels":
        labels.write_bytes(gzip_bytes(idx_header(0xFFFFFFFF) + bytes(64)))
    else:
        raise AssertionError(case)
    return images, labels


LABEL_CASES = ["2e9 labels", "2e9 labels, forged gzip size", "4294967295 labels"]


@pytest.mark.parametrize(
    ("case", "command"),
    [(case, "info") for case in LABEL_CASES] + [("2e9 labels, forged gzip size", "convert")],
)
def test_labels_header_claiming_billions(
    tmp_path: Path, folders: tuple[Path, Path], case: str, command: str
) -> None:
    inputs, outputs = folders
    images, labels = labels_bomb(inputs, case)
    before = snapshot(tmp_path)
    args: list[object] = [command, images]
    if command == "convert":
        args += ["-o", outputs / "x.npy"]
    result = run_bomb(args, tmp_path)
    assert_within_memory(result)
    count = "4294967295" if case.startswith("4294967295") else "2000000000"
    assert_clean_failure(result, names=[f"{labels}: "], reasons=[f"{count} labels for 10 images"])
    assert_unchanged(tmp_path, before)


def unallocated_hdf5(folder: Path) -> Path:
    """2**28 images of one pixel and 2**28 int64 labels, none of them stored: a 10 KB file
    whose labels read back as 2 GiB of fill values."""
    path = folder / "hollow.h5"
    count = 1 << 28
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", shape=(count, 1, 1), dtype="u1", chunks=(1 << 20, 1, 1))
        handle.create_dataset("labels", shape=(count,), dtype="i8", chunks=(1 << 20,))
    assert path.stat().st_size < 1 << 20
    return path


@pytest.mark.parametrize("command", ["info", "convert"])
def test_unallocated_hdf5_labels(tmp_path: Path, folders: tuple[Path, Path], command: str) -> None:
    inputs, outputs = folders
    path = unallocated_hdf5(inputs)
    before = snapshot(tmp_path)
    args: list[object] = {
        "info": ["info", path],
        "convert": ["convert", path, "-o", outputs / "x.h5"],
    }[command]
    result = run_bomb(args, tmp_path)
    assert_within_memory(result)
    says = "dataset 'images' stores 0 of its 256 chunks; the rest are unallocated"
    assert_clean_failure(result, names=[f"{path}: "], reasons=[says])
    assert_unchanged(tmp_path, before)


def huge_idx(folder: Path, count: int) -> Path:
    """A 1 KB gzip IDX whose header claims ``count`` images of 65535×65535 pixels."""
    path = folder / "huge-images-idx3-ubyte.gz"
    path.write_bytes(gzip_bytes(idx_header(count, 65535, 65535) + bytes(4096)))
    return path


@pytest.mark.parametrize(
    ("count", "command"), [(1, "info"), (3, "info"), (3, "fit"), (3, "convert")]
)
def test_idx_claiming_65535_squared_images(
    tmp_path: Path, folders: tuple[Path, Path], count: int, command: str
) -> None:
    """One such image is just under 4 GiB, which the gzip trailer can vouch for; three are
    over it, where the trailer (a size modulo 2**32) cannot."""
    inputs, outputs = folders
    path = huge_idx(inputs, count)
    before = snapshot(tmp_path)
    args: list[object] = {
        "info": ["info", path],
        "fit": ["fit", path, "-s", "standardize", "-o", outputs / "p.json"],
        "convert": ["convert", path, "-o", outputs / "x.npy"],
    }[command]
    result = run_bomb(args, tmp_path)
    assert_within_memory(result)
    promised = f"{count * 65535 * 65535 + 16:,}"
    says = f"header promises {promised} bytes, more than the 48 compressed bytes of the file"
    assert_clean_failure(result, names=[f"{path}: "], reasons=[says])
    assert_unchanged(tmp_path, before)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def claimed_png(width: int, height: int) -> bytes:
    """A few hundred bytes: an 8-bit greyscale header for width×height and a few rows."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes(4 * (width + 1)), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("side", "command"), [(40000, "info"), (40000, "convert"), (12000, "convert")]
)
def test_png_header_claiming_a_huge_image(
    tmp_path: Path, folders: tuple[Path, Path], side: int, command: str
) -> None:
    """40000² is past Pillow's decompression-bomb error threshold; 12000² is between its
    warning and its error (a warning Pillow prints to stderr unless it is handled)."""
    pytest.importorskip("PIL")
    inputs, outputs = folders
    pictures = inputs / "pictures"
    pictures.mkdir()
    (pictures / "a.png").write_bytes(claimed_png(side, side))
    before = snapshot(tmp_path)
    args: list[object] = [command, pictures]
    if command == "convert":
        args += ["-o", outputs / "x.npy"]
    result = run_bomb(args, tmp_path)
    assert_within_memory(result)
    says = f"declares an image of {side * side:,} pixels, over the limit of 67,108,864 per image"
    assert_clean_failure(result, names=[f"{pictures / 'a.png'}: "], reasons=[says])
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("fmt", ["npy", "idx"])
def test_stdin_claiming_a_huge_array(tmp_path: Path, folders: tuple[Path, Path], fmt: str) -> None:
    _, outputs = folders
    if fmt == "npy":
        header = {"descr": "|u1", "fortran_order": False, "shape": (1_000_000, 1000, 1000)}
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, header)
        data = buffer.getvalue() + bytes(100)
    else:
        data = idx_header(1_000_000, 1000, 1000) + bytes(100)
    before = snapshot(tmp_path)
    result = run_bomb(["convert", "-", "-o", outputs / "x.npy"], tmp_path, stdin=data)
    assert_within_memory(result)
    declared = f"{10**12 + len(data) - 100:,}"
    says = f"header declares {declared} bytes; the temporary folder <tmp>/tmpdir has"
    assert_clean_failure(result, names=["<stdin>: "], reasons=[says])
    assert_unchanged(tmp_path, before)
