"""Direct (page-cache bypassing) .npy and HDF5 writes: same bytes as buffered, clean fallbacks."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_helpers import fails_with, run_cli
from conftest import SAMPLE_IMAGES
from pixscale import Output, Spec, convert
from pixscale.core.kernels import reference
from pixscale.core.transform import flat_affine
from pixscale.store.io import direct
from pixscale.store.io.direct import ALIGN, DirectFile, aligned_empty, use_direct
from pixscale.store.records import load_params


def supports_direct(folder: Path) -> bool:
    """Whether ``folder``'s file system takes an aligned O_DIRECT write."""
    probe = folder / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | direct.O_DIRECT, 0o600)
    except OSError:
        return False
    try:
        os.write(fd, aligned_empty((ALIGN,), np.uint8).data)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()


def pieces() -> list[bytes | np.ndarray]:
    """Aligned arrays, unaligned bytes and odd sizes, in an order that exercises the carry."""
    rng = np.random.default_rng(7)
    aligned = aligned_empty((3 * ALIGN,), np.uint8)
    aligned[:] = rng.integers(0, 256, aligned.size, dtype=np.uint8)
    return [
        rng.integers(0, 256, 100, dtype=np.uint8).tobytes(),
        aligned,
        rng.integers(0, 256, 5 * ALIGN + 17, dtype=np.uint8).tobytes(),
        rng.integers(0, 256, 3 * ALIGN, dtype=np.uint8)[1:],  # unaligned address
        aligned,
        b"",
        rng.integers(0, 256, ALIGN - 1, dtype=np.uint8).tobytes(),
    ]


def write_pieces(path: Path, want_direct: bool) -> tuple[bytes, DirectFile]:
    handle = DirectFile(path, want_direct)
    expected = b""
    for piece in pieces():
        handle.write(piece)
        expected += bytes(memoryview(piece).cast("B"))
    handle.close()
    return expected, handle


@pytest.mark.parametrize("want_direct", [True, False])
def test_any_pieces_give_exactly_those_bytes(tmp_path: Path, want_direct: bool) -> None:
    expected, _ = write_pieces(tmp_path / "out.bin", want_direct)
    assert (tmp_path / "out.bin").read_bytes() == expected


def test_direct_writes_stay_direct_where_supported(tmp_path: Path) -> None:
    if not direct.O_DIRECT or not supports_direct(tmp_path):
        pytest.skip("this file system does not take O_DIRECT writes")
    handle = DirectFile(tmp_path / "out.bin", True)
    for piece in pieces():
        handle.write(piece)
    assert handle.direct
    handle.close()


def test_open_refused_falls_back_to_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refuse_direct(path: str, flags: int, mode: int = 0o777) -> int:
        if direct.O_DIRECT and flags & direct.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    monkeypatch.setattr(direct.os, "open", refuse_direct)
    expected, handle = write_pieces(tmp_path / "out.bin", True)
    assert not handle.direct
    assert (tmp_path / "out.bin").read_bytes() == expected


@pytest.mark.parametrize("offset", [ALIGN, 2 * ALIGN + 10])
def test_a_region_of_an_existing_file_keeps_the_bytes_around_it(
    tmp_path: Path, offset: int
) -> None:
    path = tmp_path / "out.bin"
    around = np.random.default_rng(3).integers(0, 256, 40 * ALIGN, dtype=np.uint8).tobytes()
    path.write_bytes(around)
    handle = DirectFile(path, True, offset=offset, create=False)
    expected = b""
    for piece in pieces():
        handle.write(piece)
        expected += bytes(memoryview(piece).cast("B"))
    handle.close()
    end = offset + len(expected)
    assert path.read_bytes() == around[:offset] + expected + around[end:]
    if offset % ALIGN:
        assert not handle.direct  # an unaligned region is written buffered


def test_write_refused_switches_to_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not direct.O_DIRECT:
        pytest.skip("no O_DIRECT on this platform")
    real_write = os.write
    refused = []

    def refuse_first(fd: int, data: memoryview) -> int:
        if not refused:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(direct.os, "write", refuse_first)
    expected, handle = write_pieces(tmp_path / "out.bin", True)
    assert refused and not handle.direct
    assert (tmp_path / "out.bin").read_bytes() == expected


def test_other_write_errors_are_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(fd: int, data: memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct.os, "write", disk_full)
    handle = DirectFile(tmp_path / "out.bin", True)
    with pytest.raises(OSError, match="No space"):
        handle.write(aligned_empty((ALIGN,), np.uint8))
    handle.close()


def test_directly_written_bytes_are_read_back_into_the_cache_in_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not supports_direct(tmp_path):
        pytest.skip("this file system does not take O_DIRECT writes")
    asked: list[tuple[int, int, int]] = []
    monkeypatch.setattr(direct.os, "posix_fadvise", lambda fd, *args: asked.append(args))
    monkeypatch.setattr(direct, "READ_AHEAD_STEP", 3 * ALIGN)
    monkeypatch.setattr(direct, "available_memory", lambda: 8 * 100 * ALIGN)
    handle = DirectFile(tmp_path / "small.bin", True, read_back=True)
    handle.write(aligned_empty((7 * ALIGN,), np.uint8))
    handle.close()
    step = 3 * ALIGN
    assert asked == [(start, step, os.POSIX_FADV_WILLNEED) for start in (0, step, 2 * step)]

    asked.clear()
    handle = DirectFile(tmp_path / "part.bin", True)  # a shard or region: not read back
    handle.write(aligned_empty((7 * ALIGN,), np.uint8))
    handle.close()
    handle = DirectFile(tmp_path / "large.bin", True, read_back=True)  # over an eighth
    handle.write(aligned_empty((101 * ALIGN,), np.uint8))
    handle.close()
    handle = DirectFile(tmp_path / "buffered.bin", False, read_back=True)  # in the cache
    handle.write(aligned_empty((7 * ALIGN,), np.uint8))
    handle.close()
    monkeypatch.setattr(direct, "available_memory", lambda: None)  # not known: not asked
    handle = DirectFile(tmp_path / "unknown.bin", True, read_back=True)
    handle.write(aligned_empty((7 * ALIGN,), np.uint8))
    handle.close()
    assert asked == []


def test_reading_back_a_file_that_is_gone_is_no_error(tmp_path: Path) -> None:
    direct.read_ahead(tmp_path / "removed after a failed run.npy", 0, 1 << 20)
    assert not (tmp_path / "removed after a failed run.npy").exists()


def test_auto_goes_direct_from_64_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "O_DIRECT", 0x4000)
    assert use_direct("auto", 64 << 20) and use_direct("auto", 4 << 30)
    assert not use_direct("auto", (64 << 20) - 1)
    assert use_direct("direct", 1) and not use_direct("buffered", 4 << 30)
    monkeypatch.setattr(direct, "O_DIRECT", 0)  # a system without direct writes
    assert not use_direct("auto", 4 << 30)


def test_cli_direct_and_buffered_npy_are_byte_identical(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    images, _ = sample
    outputs = {}
    for io in ("direct", "buffered"):
        out = tmp_path / f"{io}.npy"
        result = run_cli("convert", SAMPLE_IMAGES, "-o", out, "-q", "--io", io)
        assert result.exit_code == 0, result.output
        outputs[io] = out.read_bytes()
    assert outputs["direct"] == outputs["buffered"]
    values = np.load(tmp_path / "direct.npy")
    np.testing.assert_array_equal(values, np.divide(images, np.float32(255), dtype=np.float32))
    assert np.load(tmp_path / "direct.npy", mmap_mode="r").offset == ALIGN
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "buffered.labels.npy",
        "buffered.npy",
        "buffered.npy.json",
        "direct.labels.npy",
        "direct.npy",
        "direct.npy.json",
    ]


@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_direct_and_buffered_outputs_are_byte_identical(
    tmp_path: Path, mnist_train: tuple[np.ndarray, np.ndarray], suffix: str
) -> None:
    images = mnist_train[0]
    source = tmp_path / "train.npy"
    np.save(source, images[:5001])  # 5001 × 784 × 4 bytes: the last block is partial
    outputs = {}
    for io in ("direct", "buffered"):
        out = tmp_path / io / f"out{suffix}"  # one name: HDF5 holds its name in the record
        out.parent.mkdir()
        convert(source, Output(out, io=io), Spec("standardize", scope="pixel"))
        outputs[io] = out.read_bytes()
    assert outputs["direct"] == outputs["buffered"]
    want = reference(images[:5001].reshape(5001, -1), flat_affine(load_params(out)[0]))
    got = np.load(out) if suffix == ".npy" else h5py.File(out)["images"][:]
    assert np.array_equal(got.reshape(5001, -1).view(np.uint32), want.view(np.uint32))


def test_uncompressed_hdf5_is_contiguous_on_a_page_boundary(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = sample
    out = tmp_path / "s.h5"
    record = convert(SAMPLE_IMAGES, out)
    assert record["output"]["chunks"] is None
    with h5py.File(out) as handle:
        dataset = handle["images"]
        assert dataset.chunks is None and dataset.id.get_offset() % ALIGN == 0
        expected = np.divide(images, np.float32(255), dtype=np.float32)
        assert np.array_equal(dataset[:].view(np.uint32), expected.view(np.uint32))
        assert np.array_equal(handle["labels"][:], labels)
    chunked = convert(SAMPLE_IMAGES, Output(tmp_path / "c.h5", chunk_images=100))
    assert chunked["output"]["chunks"] == [100, 28, 28]
    compressed = convert(SAMPLE_IMAGES, Output(tmp_path / "z.h5", compression="gzip"))
    assert compressed["output"]["chunks"] == [20, 28, 28]  # 64 KiB // (784 × 4 bytes)


@pytest.mark.parametrize("options", [["--compression", "gzip"], ["--chunk-images", "10"]])
def test_cli_direct_with_chunked_hdf5_is_refused(tmp_path: Path, options: list[str]) -> None:
    out = tmp_path / "out.h5"
    args = ["convert", SAMPLE_IMAGES, "-o", out, "--io", "direct", *options]
    fails_with(args, "direct writes need a .npy file or uncompressed, unchunked HDF5")
    assert list(tmp_path.iterdir()) == []


def test_dry_run_says_how_it_writes(tmp_path: Path) -> None:
    for io, says in (("direct", "direct"), ("buffered", "buffered")):
        result = run_cli(
            "convert", SAMPLE_IMAGES, "-o", tmp_path / "o.npy", "--io", io, "--dry-run"
        )
        assert result.exit_code == 0, result.output
        assert f"writes  {says}" in result.output


def test_direct_to_stdout_is_refused(tmp_path: Path) -> None:
    args = [
        "convert",
        SAMPLE_IMAGES,
        "-o",
        "-",
        "--io",
        "direct",
        "--params-out",
        tmp_path / "p.json",
    ]
    result = fails_with(args, "direct writes need a .npy file")
    assert result.stdout_bytes == b""
    assert list(tmp_path.iterdir()) == []
