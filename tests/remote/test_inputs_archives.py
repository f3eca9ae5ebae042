"""Archives, CIFAR batches and image folders read from an object store: streamed from the
bucket of a real S3 protocol server, with the values and labels of the local reading, and
the same refusals."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from image_datasets import (
    assert_clean_error,
    class_members,
    cli,
    encode,
    unit,
    webdataset_members,
    write_tar,
    write_zip,
)
from pixscale.errors import InputError
from pixscale.sources import open_source

from .conftest import upload

pytest.importorskip("PIL")

LABELS = 4


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """60 greyscale 12×10 images with labels 0-3, every class present."""
    rng = np.random.default_rng(22)
    images = rng.integers(0, 256, (60, 12, 10), dtype=np.uint8)
    return images, np.arange(60) % LABELS


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    """30 colour images at CIFAR's 32×32."""
    return np.random.default_rng(23).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)


def read(target: object, **options: object) -> tuple[np.ndarray, np.ndarray | None]:
    """Every image of an input, and its labels."""
    source = open_source(target, **options)  # type: ignore[arg-type]
    images = np.concatenate(list(source.chunks(7)))
    return images, None if source.labels is None else np.asarray(source.labels.values)


def same_reading(local: Path, url: str | list[str], **options: object) -> np.ndarray:
    """Assert that ``url`` reads exactly as ``local`` does (pixels, labels); the pixels."""
    images, labels = read(local, **options)
    remote_images, remote_labels = read(url, **options)
    assert remote_images.dtype == images.dtype
    np.testing.assert_array_equal(remote_images, images)
    if labels is None:
        assert remote_labels is None
    else:
        assert remote_labels is not None
        np.testing.assert_array_equal(remote_labels, labels)
    return remote_images


def converted(url: str, out: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``pixscale convert URL -o out`` (a local .h5): its images and labels."""
    code, stderr = cli("convert", url, "-o", out, "-q")
    assert code == 0, stderr
    with h5py.File(out) as h5:
        return h5["images"][:], h5["labels"][:] if "labels" in h5 else None


def refused(url: str, out: Path, *texts: str) -> None:
    """The CLI refuses ``url`` in one line holding ``texts``, writing nothing."""
    code, stderr = cli("convert", url, "-o", out, "-q")
    assert_clean_error(code, stderr, *texts)
    assert not out.exists()


# --------------------------------------------------------------------------- arrays


def test_npz_from_the_bucket(tmp_path: Path, s3: object, bucket: str, digits: tuple) -> None:
    images, labels = digits
    local = tmp_path / "mnist.npz"
    np.savez_compressed(local, x_train=images, y_train=labels)
    url = upload(s3, local, f"{bucket}/data/mnist.npz")
    pixels = same_reading(local, url, key="x_train")
    np.testing.assert_array_equal(pixels, images)
    assert read(url, key="x_train")[1] is not None


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """NHWC images as CIFAR's planar rows of 3072 bytes."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)


def batch_pickle(images: np.ndarray, labels: list[int]) -> bytes:
    batch = {b"batch_label": b"batch", b"labels": labels, b"data": cifar_rows(images)}
    return pickle.dumps(batch, protocol=2)


def test_cifar_binary_batch(tmp_path: Path, s3: object, bucket: str, tiles: np.ndarray) -> None:
    labels = np.arange(len(tiles), dtype=np.uint8) % 10
    records = np.concatenate([labels[:, None], cifar_rows(tiles)], axis=1)
    local = tmp_path / "data_batch_1.bin"
    local.write_bytes(records.tobytes())
    url = upload(s3, local, f"{bucket}/cifar/data_batch_1.bin")
    np.testing.assert_array_equal(same_reading(local, url), tiles)
    np.testing.assert_array_equal(read(url)[1], labels)


def test_cifar_pickled_batch(tmp_path: Path, s3: object, bucket: str, tiles: np.ndarray) -> None:
    labels = [i % 10 for i in range(len(tiles))]
    local = tmp_path / "data_batch_1"
    local.write_bytes(batch_pickle(tiles, labels))
    url = upload(s3, local, f"{bucket}/cifar/data_batch_1")
    np.testing.assert_array_equal(same_reading(local, url), tiles)


def test_cifar_python_archive(tmp_path: Path, s3: object, bucket: str, tiles: np.ndarray) -> None:
    local = tmp_path / "cifar-10-python.tar.gz"
    halves = np.array_split(np.arange(len(tiles)), 3)
    with tarfile.open(local, "w:gz") as archive:
        for name, rows in zip(("data_batch_2", "data_batch_1", "test_batch"), halves, strict=True):
            add(archive, f"cifar-10-batches-py/{name}", batch_pickle(tiles[rows], [1] * len(rows)))
    url = upload(s3, local, f"{bucket}/cifar-10-python.tar.gz")
    pixels = same_reading(local, url)
    np.testing.assert_array_equal(pixels, tiles[np.concatenate(halves[:2][::-1])])
    np.testing.assert_array_equal(same_reading(local, url, key="test_batch"), tiles[halves[2]])


def add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


# --------------------------------------------------------------------------- archives


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_archives_of_class_folders(
    tmp_path: Path, s3: object, bucket: str, digits: tuple, kind: str
) -> None:
    images, labels = digits
    members = class_members(images, labels)
    local = tmp_path / f"digits.{kind}"
    if kind == "zip":
        write_zip(local, members)
    else:
        write_tar(local, members, "w:gz" if kind == "tar.gz" else "w")
    url = upload(s3, local, f"{bucket}/archives/digits.{kind}")
    np.testing.assert_array_equal(same_reading(local, url), images)
    np.testing.assert_array_equal(read(url)[1], labels)


def test_zip_of_images_through_the_cli(
    tmp_path: Path, s3: object, bucket: str, digits: tuple
) -> None:
    images, labels = digits
    local = write_zip(tmp_path / "digits.zip", class_members(images, labels))
    url = upload(s3, local, f"{bucket}/digits.zip")
    pixels, found = converted(url, tmp_path / "out.h5")
    np.testing.assert_array_equal(pixels, unit(images))
    np.testing.assert_array_equal(found, labels)


def test_webdataset_shards(tmp_path: Path, s3: object, bucket: str, digits: tuple) -> None:
    images, labels = digits
    local: list[Path] = []
    urls: list[str] = []
    for shard, first in enumerate(range(0, len(images), 25)):
        rows = slice(first, first + 25)
        path = tmp_path / f"shard-{shard:06d}.tar"
        write_tar(path, webdataset_members(images[rows], labels[rows], first), "w")
        local.append(path)
        urls.append(upload(s3, path, f"{bucket}/wds/{path.name}"))
    source = open_source(urls)
    assert source.format == "webdataset"
    pixels = same_reading(local, urls)  # type: ignore[arg-type]
    np.testing.assert_array_equal(pixels, images)
    np.testing.assert_array_equal(read(urls)[1], labels)


# --------------------------------------------------------------------------- folders


def image_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """``root/<class>/<index>.png``, with a hidden file and a text file beside them."""
    for index, image in enumerate(images):
        folder = root / f"class-{labels[index]}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.png").write_bytes(encode(image))
    (root / "class-0" / ".hidden.png").write_bytes(b"not read")
    (root / "README.txt").write_text("digits by class\n")
    return root


def test_folder_prefix_with_class_prefixes(
    tmp_path: Path, s3: object, bucket: str, digits: tuple
) -> None:
    images, labels = digits
    local = image_folder(tmp_path / "digits", images, labels)
    url = upload(s3, local, f"{bucket}/photos/digits")
    pixels = same_reading(local, url)
    source = open_source(url)
    assert source.labels is not None
    assert source.labels.class_names == [f"class-{n}" for n in range(LABELS)]
    # the order of a local folder: names sorted folder by folder (10.png before 2.png)
    order = sorted(range(len(images)), key=lambda i: (int(labels[i]), str(i)))
    np.testing.assert_array_equal(pixels, images[order])
    out, found = converted(url, tmp_path / "folder.h5")
    np.testing.assert_array_equal(out, unit(images[order]))
    np.testing.assert_array_equal(found, labels[order])


def test_memory_folder_reads_as_the_local_one(tmp_path: Path, digits: tuple) -> None:
    """A quick check without a server: listing, order and labels of a prefix, an empty
    class folder keeping its place."""
    fsspec = pytest.importorskip("fsspec")
    images, labels = digits
    local = image_folder(tmp_path / "digits", images[:12], labels[:12])
    (local / "class-9").mkdir()
    memory = fsspec.filesystem("memory")
    memory.put(str(local), "/folders/digits", recursive=True)
    memory.makedirs("/folders/digits/class-9", exist_ok=True)
    try:
        same_reading(local, "memory://folders/digits")
        source = open_source("memory://folders/digits")
        assert source.labels is not None and source.labels.class_names[-1] == "class-9"
    finally:
        memory.rm("/folders", recursive=True)


def test_remote_items_are_decoded_by_worker_processes(
    monkeypatch: pytest.MonkeyPatch, digits: tuple
) -> None:
    """Images handed to the process pool as URLs (no bytes) are opened in the workers."""
    fsspec = pytest.importorskip("fsspec")
    from upath import UPath

    from pixscale.sources import parallel
    from pixscale.sources.pictures import Encoded, Expect

    images = digits[0][:9]
    memory = fsspec.filesystem("memory")
    memory.pipe({f"/workers/{i}.png": encode(image) for i, image in enumerate(images)})
    try:
        urls = [f"memory://workers/{i}.png" for i in range(len(images))]
        items = [Encoded(url, None, UPath(url)) for url in urls]
        monkeypatch.setattr(parallel, "WORKERS", 2)
        chunks = parallel.decode_chunks(items, Expect((10, 12), "L", True), 4, backend="processes")
        np.testing.assert_array_equal(np.concatenate(list(chunks)), images)
    finally:
        memory.rm("/workers", recursive=True)


# --------------------------------------------------------------------------- refusals


def test_a_link_member_is_refused(tmp_path: Path, s3: object, bucket: str, digits: tuple) -> None:
    images, labels = digits
    local = tmp_path / "links.tar.gz"
    with tarfile.open(local, "w:gz") as archive:
        for name, data in class_members(images[:3], labels[:3]):
            add(archive, name, data)
        link = tarfile.TarInfo("digits/1/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    url = upload(s3, local, f"{bucket}/links.tar.gz")
    with pytest.raises(InputError, match="links.tar.gz:digits/1/link.png: member is a link"):
        open_source(url)
    refused(url, tmp_path / "out.h5", f"{url}:digits/1/link.png: member is a link")


def test_a_missing_object_is_named(tmp_path: Path, bucket: str) -> None:
    url = f"{bucket}/nothing/here.tar"
    refused(url, tmp_path / "out.h5", url, "no such object")


def test_a_prefix_without_images_is_refused(tmp_path: Path, s3: object, bucket: str) -> None:
    local = tmp_path / "notes"
    (local / "class-a").mkdir(parents=True)
    (local / "class-a" / "readme.txt").write_text("no images here\n")
    (local / ".hidden").mkdir()
    (local / ".hidden" / "0.png").write_bytes(encode(np.zeros((4, 4), np.uint8)))
    url = upload(s3, local, f"{bucket}/notes")
    refused(url, tmp_path / "out.h5", url, "holds no PNG, JPEG, BMP or TIFF images")
