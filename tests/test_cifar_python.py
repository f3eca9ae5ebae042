"""CIFAR "python version" batches (pickles) through the restricted unpickler, from files and
straight from a tar.gz laid out as the download is."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from pixscale.errors import InputError
from pixscale.sources.cifar_python import open_cifar_archive, open_cifar_batch, unpickle_batch


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """NHWC 32×32×3 images as CIFAR's planar rows of 3072 bytes."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)


@pytest.fixture
def cifar_images(photo_tiles: np.ndarray) -> np.ndarray:
    """Real photograph tiles at CIFAR's 32×32."""
    return np.ascontiguousarray(photo_tiles[:, ::2, ::2])


def batch_pickle(images: np.ndarray, labels: list[int], fine: bool = False) -> bytes:
    key = b"fine_labels" if fine else b"labels"
    batch = {
        b"batch_label": b"batch",
        key: labels,
        b"data": cifar_rows(images),
        b"filenames": [f"{i}.png".encode() for i in range(len(images))],
    }
    return pickle.dumps(batch, protocol=2)


def add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


@pytest.fixture
def cifar_tar(tmp_path: Path, cifar_images: np.ndarray) -> Path:
    path = tmp_path / "cifar-10-python.tar.gz"
    halves = np.array_split(np.arange(len(cifar_images)), 3)
    with tarfile.open(path, "w:gz") as archive:
        meta = pickle.dumps({b"label_names": [b"airplane", b"automobile", b"bird"]}, protocol=2)
        add(archive, "cifar-10-batches-py/batches.meta", meta)
        for number, rows in zip((2, 1), halves[:2], strict=True):  # out of order on purpose
            labels = [int(i) % 3 for i in rows]
            add(
                archive,
                f"cifar-10-batches-py/data_batch_{number}",
                batch_pickle(cifar_images[rows], labels),
            )
        rows = halves[2]
        add(
            archive,
            "cifar-10-batches-py/test_batch",
            batch_pickle(cifar_images[rows], [int(i) % 3 for i in rows]),
        )
    return path


def read_all(source) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.concatenate(list(source.chunks(7)))


def test_training_batches_from_the_archive_in_order(
    cifar_tar: Path, cifar_images: np.ndarray
) -> None:
    source = open_cifar_archive(cifar_tar, None)
    halves = np.array_split(np.arange(len(cifar_images)), 3)
    expected = np.concatenate([cifar_images[halves[1]], cifar_images[halves[0]]])  # batch 1, 2
    assert source.shape == (len(expected), 32, 32, 3) and source.layout == "nhwc"
    assert np.array_equal(read_all(source), expected)
    assert source.labels is not None
    assert source.labels.class_names == ["airplane", "automobile", "bird"]
    assert source.labels.values.tolist() == [int(i) % 3 for i in (*halves[1], *halves[0])]


def test_key_picks_the_test_batch(cifar_tar: Path, cifar_images: np.ndarray) -> None:
    source = open_cifar_archive(cifar_tar, "test_batch")
    assert np.array_equal(
        read_all(source), cifar_images[np.array_split(np.arange(len(cifar_images)), 3)[2]]
    )
    with pytest.raises(InputError, match="no batch matches nothing"):
        open_cifar_archive(cifar_tar, "nothing")


def test_one_batch_file_cifar100(tmp_path: Path, cifar_images: np.ndarray) -> None:
    path = tmp_path / "train"
    path.write_bytes(batch_pickle(cifar_images, list(range(len(cifar_images))), fine=True))
    source = open_cifar_batch(path)
    assert source.format == "cifar100-python"
    assert np.array_equal(read_all(source), cifar_images)


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("echo pwned",))


def test_any_other_global_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"refers to (posix|os)\.system"):
        unpickle_batch(pickle.dumps({b"data": Exploit()}), "evil")
    with pytest.raises(InputError, match="refers to builtins.eval"):
        unpickle_batch(b"cbuiltins\neval\n(S'1'\ntR.", "evil")


def test_damaged_or_wrong_pickles(tmp_path: Path, cifar_images: np.ndarray) -> None:
    good = batch_pickle(cifar_images[:4], [0, 1, 2, 0])
    with pytest.raises(InputError, match="damaged pickle"):
        unpickle_batch(good[: len(good) // 2], "cut")
    with pytest.raises(InputError, match="not a CIFAR batch"):
        unpickle_batch(pickle.dumps([1, 2, 3], protocol=2), "list")
    path = tmp_path / "data_batch_1"
    path.write_bytes(batch_pickle(cifar_images[:4], [0, 1]))
    with pytest.raises(InputError, match="labels do not match the 4 images"):
        open_cifar_batch(path)


def test_convert_the_download_as_it_is(tmp_path: Path, cifar_tar: Path) -> None:
    import pixscale

    train, test = tmp_path / "train.h5", tmp_path / "test.h5"
    args = ["convert", str(cifar_tar), "-o", str(train), "-s", "standardize", "--scope", "channel"]
    assert run_cli(*args).exit_code == 0
    args = [
        "convert",
        str(cifar_tar),
        "--key",
        "test_batch",
        "-o",
        str(test),
        "--params-from",
        str(train),
    ]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    with pixscale.open(test) as data:
        assert data.record["source"]["name"] == "cifar-10-python.tar.gz:test_batch"
        expected = open_cifar_archive(cifar_tar, "test_batch")
        back = pixscale.Scaler.load(test).inverse_transform(data[:])
        assert np.array_equal(back, read_all(expected))
    result = run_cli("verify", test, "--source", cifar_tar)
    assert result.exit_code == 0, result.output
