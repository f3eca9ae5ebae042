"""Archives of images, never extracted: a .zip or .tar.gz of class folders (or flat images)
and WebDataset shards (``KEY.png`` + ``KEY.cls``), read member by member; hostile members
(``..``, absolute paths, links, corrupt or oversized images) are refused by name."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from image_datasets import (
    DIGITS,
    assert_clean_error,
    claimed_png,
    class_members,
    cli,
    encode,
    unit,
    webdataset_members,
    write_tar,
    write_zip,
)
from pixscale.errors import InputError
from pixscale.sources import open_source, sniff

pytest.importorskip("PIL")


def read_all(path: Path | list[Path], **options: str) -> np.ndarray:
    source = open_source(path, **options)
    return np.concatenate(list(source.chunks(97)))


def convert(*args: object) -> dict[str, object]:
    out = Path(str(args[-1]))
    code, stderr = cli("convert", *args[:-1], "-o", out, "-q")
    assert code == 0, stderr
    with h5py.File(out) as h5:
        record: dict[str, object] = json.loads(h5.attrs["pixscale_params"])
        record["images"] = h5["images"][:]
        record["labels"] = h5["labels"][:] if "labels" in h5 else None
    return record


@pytest.fixture(scope="module")
def digits(mnist_train: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """2,000 real MNIST digits and their labels."""
    return mnist_train[0][:2000], mnist_train[1][:2000]


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar"])
def test_class_folders_convert_exactly_with_labels(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], kind: str
) -> None:
    images, labels = digits
    members = class_members(images, labels)
    path = tmp_path / f"digits.{kind}"
    if kind == "zip":
        write_zip(path, members)
    else:
        write_tar(path, members, "w:gz" if kind == "tar.gz" else "w")
    assert sniff(path) == ("image-zip" if kind == "zip" else "image-tar")
    record = convert(path, tmp_path / "d.h5")
    assert np.array_equal(record["images"], unit(images))  # type: ignore[arg-type]
    assert np.array_equal(record["labels"], labels)  # type: ignore[arg-type]
    source = open_source(path)
    assert source.labels is not None and source.labels.class_names == DIGITS


def test_webdataset_shards_from_a_quoted_glob(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = digits
    for shard, first in enumerate(range(0, len(images), 700)):
        rows = slice(first, first + 700)
        members = webdataset_members(images[rows], labels[rows], first)
        write_tar(tmp_path / f"shard-{shard:06d}.tar", members, "w")
    assert sniff(tmp_path / "shard-000000.tar") == "webdataset"
    record = convert(str(tmp_path / "shard-*.tar"), tmp_path / "w.h5")
    assert np.array_equal(record["images"], unit(images))  # type: ignore[arg-type]
    assert np.array_equal(record["labels"], labels)  # type: ignore[arg-type]


def test_flat_archives_have_no_labels_and_keep_archive_order(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    images = sample[0][:60]
    members = class_members(images, None, root="photos/all")
    members = members[30:] + members[:30]  # archive order, not name order
    path = write_zip(tmp_path / "flat.zip", members)
    source = open_source(path)
    assert source.labels is None
    assert np.array_equal(read_all(path), np.concatenate([images[30:], images[:30]]))
    tarred = write_tar(tmp_path / "flat.tar.gz", members)
    assert np.array_equal(read_all(tarred), read_all(path))


def test_windows_of_a_zip_read_only_their_images(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    path = write_zip(tmp_path / "d.zip", class_members(sample[0][:300], sample[1][:300]))
    source = open_source(path)
    assert source.random_access
    assert np.array_equal(np.concatenate(list(source.window(41, 250, 64))), sample[0][41:250])


def test_key_picks_a_folder_and_mode_converts(
    tmp_path: Path, photo_tiles: np.ndarray, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    from PIL import Image

    photos = [(f"data/train/{n:03d}.jpg", encode(t, "JPEG")) for n, t in enumerate(photo_tiles)]
    digits = class_members(sample[0][:20], sample[1][:20], root="data/test")
    path = write_zip(tmp_path / "mixed.zip", photos + digits)
    with pytest.raises(InputError, match="images at different depths"):
        open_source(path)
    train = read_all(path, key="data/train")
    expected = np.stack([np.asarray(Image.open(io.BytesIO(d))) for _, d in photos])
    assert np.array_equal(train, expected)
    assert read_all(path, key="data/train/*.jpg", mode="L").shape == (len(photos), 64, 64)
    assert np.array_equal(read_all(path, key="data/test"), sample[0][:20])


def test_webdataset_key_picks_the_image_extension(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = sample[0][:30], sample[1][:30]
    members = []
    for n, (image, label) in enumerate(zip(images, labels, strict=True)):
        members += [
            (f"s{n:04d}.png", encode(image)),
            (f"s{n:04d}.mask.png", encode(255 - image)),
            (f"s{n:04d}.cls", str(label).encode()),
        ]
    path = write_tar(tmp_path / "pairs.tar", members, "w")
    with pytest.raises(InputError, match=r"s0000: sample holds png, mask.png; choose one"):
        open_source(path)
    assert np.array_equal(read_all(path, key="mask.png"), 255 - images)
    source = open_source(path, key="png")
    assert source.labels is not None and np.array_equal(source.labels.values, labels)


def test_other_archives_are_still_what_they_were(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 3, 3), np.uint8))
    assert sniff(tmp_path / "x.npz") == "npz"
    cifar = write_tar(tmp_path / "cifar.tar.gz", [("cifar-10-batches-py/data_batch_1", b"x")])
    assert sniff(cifar) == "cifar-archive"


# --------------------------------------------------------------------------- hostile


def convert_fails(tmp_path: Path, source: Path, *texts: str) -> str:
    out = tmp_path / "out.h5"
    code, stderr = cli("convert", source, "-o", out)
    line = assert_clean_error(code, stderr, source.name, *texts)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    return line


def archive(tmp_path: Path, kind: str, members: list[tuple[str, bytes]]) -> Path:
    path = tmp_path / f"a.{kind}"
    return write_zip(path, members) if kind == "zip" else write_tar(path, members)


@pytest.fixture
def small(sample: tuple[np.ndarray, np.ndarray]) -> list[tuple[str, bytes]]:
    return class_members(sample[0][:40], sample[1][:40])


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../etc/evil.png", "member has '..' in its path"),
        ("digits/3/../../../evil.png", "member has '..' in its path"),
        ("/etc/evil.png", "member has an absolute path"),
    ],
)
def test_members_escaping_the_archive_are_refused_by_name(
    tmp_path: Path, small: list[tuple[str, bytes]], kind: str, name: str, reason: str
) -> None:
    members = [*small[:5], (name, small[0][1]), *small[5:]]
    path = archive(tmp_path, kind, members)
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    convert_fails(tmp_path, path, f"{path.name}:{name}: {reason}")
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
    assert not (tmp_path.parent / "evil.png").exists()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_corrupt_member_is_named(
    tmp_path: Path, small: list[tuple[str, bytes]], kind: str
) -> None:
    name, data = small[17]
    small[17] = (name, data[:50] + b"\0" * 30)
    convert_fails(tmp_path, archive(tmp_path, kind, small), f"a.{kind}:{name}: cannot")


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_member_of_another_size_names_the_first_offender(
    tmp_path: Path, small: list[tuple[str, bytes]], kind: str
) -> None:
    for row in (12, 30):
        small[row] = (small[row][0], encode(np.zeros((28, 31), np.uint8)))
    path = archive(tmp_path, kind, small)
    convert_fails(tmp_path, path, f"{small[12][0]}: image is 31×28, the others 28×28")


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_huge_declared_image_is_refused_before_decoding(
    tmp_path: Path, small: list[tuple[str, bytes]], kind: str
) -> None:
    small[9] = (small[9][0], claimed_png(12000, 12000))
    path = archive(tmp_path, kind, small)
    convert_fails(tmp_path, path, f"{small[9][0]}: declares an image of 144,000,000 pixels")


def test_a_zip_member_claiming_more_than_deflate_can_hold_is_refused(
    tmp_path: Path, small: list[tuple[str, bytes]]
) -> None:
    path = write_zip(tmp_path / "bomb.zip", small)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as opened:
        info = opened.infolist()[3]
    # member 3's uncompressed size in the central directory: promise 100 MB
    at = bytes(data).index(info.filename.encode(), bytes(data).index(b"PK\x01\x02")) - 46
    data[at + 24 : at + 28] = (100_000_000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    convert_fails(tmp_path, path, info.filename, "compressed bytes")


def test_a_link_member_is_refused(tmp_path: Path, small: list[tuple[str, bytes]]) -> None:
    path = write_tar(tmp_path / "links.tar.gz", small)
    with tarfile.open(path, "w:gz") as opened:
        for name, data in small[:3]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            opened.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("digits/5/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        opened.addfile(link)
    convert_fails(tmp_path, path, "links.tar.gz:digits/5/link.png: member is a link")


def test_webdataset_labels_must_be_integers_for_every_sample(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    members = webdataset_members(sample[0][:10], sample[1][:10])
    bad = [(n, b"cat\n" if n == "sample000004.cls" else d) for n, d in members]
    convert_fails(tmp_path, write_tar(tmp_path / "w.tar", bad, "w"), "sample000004.cls: label")
    missing = [(n, d) for n, d in members if n != "sample000006.cls"]
    shard = write_tar(tmp_path / "m.tar", missing, "w")
    convert_fails(tmp_path, shard, "m.tar:sample000006: sample has no .cls label")
