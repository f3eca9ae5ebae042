"""Archives that end early, hold links, repeat names or lie about sizes: every tar and zip
reader (images, WebDataset, CIFAR python batches) refuses them by name, never dropping
members silently."""

from __future__ import annotations

import gzip
import io
import pickle
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from .conftest import assert_clean_failure, cli


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def tar_bytes(members: list[tuple[str, bytes]], **special: bytes) -> bytes:
    """A tar of regular ``members``; ``special`` adds link/device members by type."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, kind in special.items():
            info = tarfile.TarInfo(name.replace("__", "/"))
            info.type = kind
            info.linkname = "data_batch_1" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            archive.addfile(info)
    return buffer.getvalue()


def cut_in_last_header(data: bytes, members: list[tuple[str, bytes]]) -> bytes:
    """``data`` cut 100 bytes into the header of its last member."""
    offset = 0
    for _, content in members[:-1]:
        offset += 512 + -(-len(content) // 512) * 512
    return data[: offset + 100]


IMAGES = [("a/0.png", png(1)), ("a/1.png", png(2)), ("b/2.png", png(3))]
SAMPLES = [
    ("k0.png", png(1)),
    ("k0.cls", b"0"),
    ("k1.png", png(2)),
    ("k1.cls", b"1"),
    ("k2.png", png(3)),
    ("k2.cls", b"2"),
]


def batch(count: int, labels: list[object]) -> bytes:
    rows = np.arange(count * 3072, dtype=np.uint64).astype(np.uint8).reshape(count, 3072)
    return pickle.dumps({b"data": rows, b"labels": labels}, protocol=2)


BATCHES = [("data_batch_1", batch(2, [0, 1])), ("data_batch_2", batch(2, [2, 3]))]


def refused(tmp_path: Path, inputs: list[Path], name: str, reason: str) -> str:
    """Convert ``inputs``: exit 1, one line naming ``name`` and ``reason``, no output."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    outcome = cli(["convert", *inputs, "-o", out / "o.h5"])
    line = assert_clean_failure(outcome, names=[name], reasons=[reason])
    assert list(out.iterdir()) == []
    return line


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- tar ends


def test_an_image_tar_cut_in_a_header_is_refused(tmp_path: Path) -> None:
    data = cut_in_last_header(tar_bytes(IMAGES), IMAGES)
    path = write(tmp_path / "a.tar", data)
    refused(tmp_path, [path], "a.tar", "truncated after member a/1.png")


def test_a_gzipped_image_tar_cut_in_a_header_is_refused(tmp_path: Path) -> None:
    data = gzip.compress(cut_in_last_header(tar_bytes(IMAGES), IMAGES))
    path = write(tmp_path / "a.tar.gz", data)
    refused(tmp_path, [path], "a.tar.gz", "truncated after member a/1.png")


def test_a_tar_cut_at_a_member_boundary_is_refused(tmp_path: Path) -> None:
    whole = tar_bytes(IMAGES)
    path = write(tmp_path / "a.tar", cut_in_last_header(whole, IMAGES)[:-100])
    refused(tmp_path, [path], "a.tar", "truncated after member a/1.png (no end-of-archive marker)")


def test_a_damaged_header_after_a_member_is_refused(tmp_path: Path) -> None:
    data = bytearray(tar_bytes(IMAGES))
    at = len(cut_in_last_header(bytes(data), IMAGES)) - 100
    data[at + 148 : at + 156] = b"0000000\x00"  # a checksum no header has
    path = write(tmp_path / "a.tar", bytes(data))
    refused(tmp_path, [path], "a.tar", "unreadable header after member a/1.png")


def test_a_second_tar_after_the_end_marker_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tar", tar_bytes(IMAGES[:2]) + tar_bytes(IMAGES[2:]))
    refused(
        tmp_path, [path], "a.tar", "data after the end-of-archive marker (after member a/1.png)"
    )


def test_a_tar_gz_whose_crc_is_wrong_is_refused(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(tar_bytes(IMAGES)))
    data[-8:-4] = (zlib.crc32(b"other") & 0xFFFFFFFF).to_bytes(4, "little")
    path = write(tmp_path / "a.tar.gz", bytes(data))
    refused(tmp_path, [path], "a.tar.gz", "CRC check failed")


def test_a_webdataset_shard_cut_in_a_header_is_refused(tmp_path: Path) -> None:
    data = cut_in_last_header(tar_bytes(SAMPLES[:5]), SAMPLES[:5])
    path = write(tmp_path / "s.tar", data)
    refused(tmp_path, [path], "s.tar", "truncated after member k1.cls")


def test_a_cifar_tar_cut_in_a_header_is_refused(tmp_path: Path) -> None:
    data = cut_in_last_header(tar_bytes(BATCHES), BATCHES)
    path = write(tmp_path / "c.tar", data)
    refused(tmp_path, [path], "c.tar", "truncated after member data_batch_1")


# --------------------------------------------------------------------------- tar links


def test_a_cifar_batch_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    data = gzip.compress(tar_bytes(BATCHES[:1], data_batch_2=tarfile.SYMTYPE))
    path = write(tmp_path / "c.tar.gz", data)
    refused(tmp_path, [path], "c.tar.gz:data_batch_2", "member is a link; links are not followed")


def test_a_cifar_batch_that_is_a_hard_link_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "c.tar", tar_bytes(BATCHES[:1], data_batch_2=tarfile.LNKTYPE))
    refused(tmp_path, [path], "c.tar:data_batch_2", "member is a link; links are not followed")


def test_a_fifo_beside_the_batches_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "c.tar", tar_bytes(BATCHES, readme=tarfile.FIFOTYPE))
    refused(tmp_path, [path], "c.tar:readme", "member is a FIFO, not a regular file")


def test_a_device_among_images_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tar", tar_bytes(IMAGES, a__null=tarfile.CHRTYPE))
    refused(tmp_path, [path], "a.tar:a/null", "member is a character device, not a regular file")


# --------------------------------------------------------------------------- zip


def zip_with(path: Path, members: list[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(info, data)
    return path


def test_a_zip_member_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("a/evil.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    members = [(zipfile.ZipInfo(n), d) for n, d in IMAGES] + [(link, b"/etc/passwd")]
    path = zip_with(tmp_path / "a.zip", members)
    refused(tmp_path, [path], "a.zip:a/evil.png", "member is a link; links are not followed")


def test_a_zip_folder_symlink_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("t/b/up")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    members = [(zipfile.ZipInfo(f"t/{n}"), d) for n, d in IMAGES] + [(link, b"../..")]
    path = zip_with(tmp_path / "a.zip", members)
    refused(tmp_path, [path], "a.zip:t/b/up", "member is a link; links are not followed")


def test_a_zip_member_named_twice_is_refused(tmp_path: Path) -> None:
    members = [(zipfile.ZipInfo(n), d) for n, d in [*IMAGES, IMAGES[0]]]
    path = tmp_path / "a.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        zip_with(path, members)  # zipfile warns of the duplicate, and writes it
    refused(tmp_path, [path], "a.zip:a/0.png", "member appears twice in the archive")


def test_a_zip_member_larger_than_it_declares_is_refused_before_inflating(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/0.png", IMAGES[0][1])
        archive.writestr("b/1.png", bytes(50 << 20))
    data = bytearray(path.read_bytes())
    directory = data.rindex(b"PK\x01\x02")  # the central record of b/1.png
    data[directory + 24 : directory + 28] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    refused(tmp_path, [path], "a.zip:b/1.png", "more than the 100 bytes it declares can take")


# --------------------------------------------------------------------------- labels, keys


def test_a_key_in_two_shards_is_refused_naming_both(tmp_path: Path) -> None:
    first = write(tmp_path / "s-0.tar", tar_bytes(SAMPLES[:2]))
    second = write(tmp_path / "s-1.tar", tar_bytes(SAMPLES[2:4] + SAMPLES[:2]))
    line = refused(tmp_path, [first, second], "s-1.tar", "sample key 'k0' is also in")
    assert str(first) in line


def test_a_cls_label_with_white_space_around_it_is_read(tmp_path: Path) -> None:
    members = [("k0.png", png(1)), ("k0.cls", b" 3\n"), ("k1.png", png(2)), ("k1.cls", b"\t4 ")]
    path = write(tmp_path / "s.tar", tar_bytes(members))
    out = tmp_path / "o.h5"
    outcome = cli(["convert", path, "-o", out])
    assert outcome.code == 0, outcome.describe()
    with h5py.File(out) as opened:
        assert opened["labels"][:].tolist() == [3, 4]


def test_a_negative_cifar_label_is_named_with_its_row(tmp_path: Path) -> None:
    path = write(tmp_path / "data_batch_1", batch(4, [0, 1, -1, 2]))
    refused(tmp_path, [path], "data_batch_1", "label -1 at row 2 is negative")


def test_bool_cifar_labels_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "data_batch_1", batch(4, [True, False, True, False]))
    refused(tmp_path, [path], "data_batch_1", "entry True at row 0 is a bool, not an integer")
