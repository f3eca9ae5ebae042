"""Every source format converts real data with exact values, shapes and labels."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import SAMPLE_IMAGES
from pixscale.cli import main
from pixscale.core.spec import Spec
from pixscale.engine.local import convert
from pixscale.errors import InputError
from pixscale.sources import open_source
from pixscale.store.output import Output
from pixscale.tasks.invert import invert

PIXSCALE = str(Path(sys.executable).parent / "pixscale")


def unit(x: np.ndarray) -> np.ndarray:
    return np.float32(x) / np.float32(255)


def run(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_keras_style_npz_brings_matching_labels(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = sample
    npz = tmp_path / "mnist.npz"
    np.savez_compressed(
        npz, x_train=images[:600], y_train=labels[:600], x_test=images[600:], y_test=labels[600:]
    )
    result = run("convert", npz, "--key", "x_test", "-o", tmp_path / "test.h5")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    with h5py.File(tmp_path / "test.h5", "r") as handle:
        assert np.array_equal(handle["images"][()], unit(images[600:]))
        assert np.array_equal(handle["labels"][()], labels[600:])
    missing = run("convert", npz, "-o", tmp_path / "x.h5")
    assert missing.exit_code == 1 and "choose one with --key" in missing.stderr  # type: ignore[attr-defined]


def test_hdf5_input_by_key_with_labels(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = sample
    raw = tmp_path / "raw.h5"
    with h5py.File(raw, "w") as handle:
        handle["images/train"] = images
        handle["images/labels"] = labels
    result = run("convert", raw, "--key", "images/train", "-o", tmp_path / "train.npy")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert np.array_equal(np.load(tmp_path / "train.npy"), unit(images))
    assert np.array_equal(np.load(tmp_path / "train.labels.npy"), labels)


def test_a_pixscale_output_is_not_taken_for_uint8_input(tmp_path: Path) -> None:
    convert(SAMPLE_IMAGES, tmp_path / "out.h5")
    with pytest.raises(InputError, match="is a pixscale output"):
        open_source(tmp_path / "out.h5")


def write_class_folders(root: Path, images: np.ndarray, labels: np.ndarray, suffix: str) -> None:
    from PIL import Image

    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / f"digit-{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:04d}{suffix}")


def test_png_folder_with_class_subfolders(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = sample[0][:120], sample[1][:120]
    write_class_folders(tmp_path / "digits", images, labels, ".png")
    record = convert(tmp_path / "digits", tmp_path / "d.h5")
    order = np.lexsort((np.arange(120), labels))  # by class folder, then by file name
    with h5py.File(tmp_path / "d.h5", "r") as handle:
        assert np.array_equal(handle["images"][()], unit(images[order]))
        assert np.array_equal(handle["labels"][()], np.sort(labels))
    names = [f"digit-{d}" for d in sorted(set(labels.tolist()))]
    assert record["output"]["class_names"] == names


def test_jpeg_folder_of_photographs_flat(tmp_path: Path, photo_tiles: np.ndarray) -> None:
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for index, tile in enumerate(photo_tiles[:10]):
        Image.fromarray(tile).save(folder / f"p{index:02d}.jpg", quality=95)
    decoded = np.stack([np.asarray(Image.open(folder / f"p{i:02d}.jpg")) for i in range(10)])
    record = convert(folder, tmp_path / "p.npy")
    assert np.array_equal(np.load(tmp_path / "p.npy"), unit(decoded))
    assert record["source"]["layout"] == "nhwc" and "labels" not in record["output"]
    grey = convert(folder, Output(tmp_path / "g.npy"), Spec())
    assert grey["output"]["shape"] == [10, 64, 64, 3]
    source = open_source(folder, mode="L")
    assert source.shape == (10, 64, 64) and source.layout == "nhw"


def test_folder_with_different_sizes_names_the_offender(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("L", (8, 8)).save(folder / "a.png")
    Image.new("L", (9, 8)).save(folder / "b.png")
    result = run("convert", folder, "-o", tmp_path / "m.h5")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "b.png: image is 9×8, a.png is 8×8 (no silent resize)" in result.stderr  # type: ignore[attr-defined]


def cifar_batch(path: Path, tiles: np.ndarray, labels: np.ndarray, fine: bool = False) -> None:
    planar = tiles.transpose(0, 3, 1, 2).reshape(len(tiles), -1)
    head = [labels[:, None] // 5, labels[:, None]] if fine else [labels[:, None]]
    path.write_bytes(np.concatenate([*head, planar], axis=1).astype(np.uint8).tobytes())


@pytest.fixture
def cifar_tiles(photo_tiles: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(photo_tiles[:, ::2, ::2])  # 32×32 RGB from the photograph


def test_cifar10_batches_decode_like_by_hand(tmp_path: Path, cifar_tiles: np.ndarray) -> None:
    labels = np.arange(len(cifar_tiles)) % 10
    half = len(cifar_tiles) // 2
    cifar_batch(tmp_path / "data_batch_1.bin", cifar_tiles[:half], labels[:half])
    cifar_batch(tmp_path / "data_batch_2.bin", cifar_tiles[half:], labels[half:])
    raw = np.fromfile(tmp_path / "data_batch_1.bin", np.uint8).reshape(-1, 3073)
    by_hand = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert np.array_equal(by_hand, cifar_tiles[:half])
    result = run(
        "convert",
        tmp_path / "data_batch_1.bin",
        tmp_path / "data_batch_2.bin",
        "-o",
        tmp_path / "cifar.h5",
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    with h5py.File(tmp_path / "cifar.h5", "r") as handle:
        assert np.array_equal(handle["images"][:half], unit(by_hand))
        assert np.array_equal(handle["images"][()], unit(cifar_tiles))
        assert np.array_equal(handle["labels"][()], labels)


def test_cifar100_uses_the_fine_label(tmp_path: Path, cifar_tiles: np.ndarray) -> None:
    labels = np.arange(len(cifar_tiles)) % 100
    cifar_batch(tmp_path / "train.bin", cifar_tiles, labels, fine=True)
    source = open_source(tmp_path / "train.bin")
    assert source.format == "cifar100" and source.labels is not None
    assert np.array_equal(source.labels.values, labels)
    assert np.array_equal(np.concatenate(list(source.chunks(7))), cifar_tiles)


class Exploit:
    """A pickle that would create a file when loaded by an ordinary unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_pickles_other_than_cifar_batches_are_refused_with_the_reason(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "data_batch_1"
    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps({b"data": Exploit(marker)}, protocol=2))
    result = run("convert", path, "-o", tmp_path / "x.h5")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "the pickle refers to io.open" in result.stderr  # type: ignore[attr-defined]
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"data": [1, 2, 3]}))
    result = run("convert", path, "-o", tmp_path / "x.h5")
    assert "no uint8 'data' rows" in result.stderr  # type: ignore[attr-defined]


def test_mixed_formats_are_refused(tmp_path: Path, sample_npy: Path) -> None:
    result = run("convert", SAMPLE_IMAGES, sample_npy, "-o", tmp_path / "x.h5")
    assert result.exit_code == 1 and "share one format" in result.stderr  # type: ignore[attr-defined]


def test_nchw_output_for_pytorch_and_back(tmp_path: Path, photo_npy: Path, photo_tiles) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "convert",
        photo_npy,
        "-o",
        tmp_path / "chw.h5",
        "--layout",
        "nchw",
        "-s",
        "standardize",
        "--scope",
        "channel",
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    with h5py.File(tmp_path / "chw.h5", "r") as handle:
        data = handle["images"][()]
    assert data.shape == (len(photo_tiles), 3, 64, 64)
    nhwc = convert(photo_npy, tmp_path / "hwc.npy", Spec("standardize", scope="channel"))
    assert np.array_equal(data, np.load(tmp_path / "hwc.npy").transpose(0, 3, 1, 2))
    assert nhwc["output"]["layout"] == "nhwc"
    invert(tmp_path / "chw.h5", tmp_path / "back.npy")
    assert np.array_equal(np.load(tmp_path / "back.npy"), photo_tiles)


def test_greyscale_gains_a_channel_axis_in_nchw(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    convert(SAMPLE_IMAGES, Output(tmp_path / "g.npy", layout="nchw"))
    assert np.load(tmp_path / "g.npy").shape == (1000, 1, 28, 28)
    invert(tmp_path / "g.npy", tmp_path / "back.npy")
    assert np.array_equal(np.load(tmp_path / "back.npy"), sample[0])


def test_input_layout_nchw(tmp_path: Path, photo_tiles: np.ndarray) -> None:
    path = tmp_path / "chw.npy"
    np.save(path, np.ascontiguousarray(photo_tiles.transpose(0, 3, 1, 2)))
    result = run(
        "convert", path, "--input-layout", "nchw", "--layout", "nhwc", "-o", tmp_path / "hwc.npy"
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert np.array_equal(np.load(tmp_path / "hwc.npy"), unit(photo_tiles))


def test_stdin_to_stdout_equals_the_file_route(tmp_path: Path, sample_npy: Path) -> None:
    with sample_npy.open("rb") as stdin:
        piped = subprocess.run(
            [PIXSCALE, "convert", "-", "-o", "-", "--params-out", str(tmp_path / "p.json")],
            stdin=stdin,
            capture_output=True,
            check=False,
        )
    assert piped.returncode == 0, piped.stderr
    convert(sample_npy, tmp_path / "file.npy")
    assert piped.stdout == (tmp_path / "file.npy").read_bytes()
    assert (tmp_path / "p.json").is_file()


def test_gunzipped_idx_from_stdin(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    piped = subprocess.run(
        [PIXSCALE, "convert", "-", "-o", "-", "-s", "symmetric"],
        input=gzip.open(SAMPLE_IMAGES).read(),
        capture_output=True,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    out = tmp_path / "o.npy"
    out.write_bytes(piped.stdout)
    assert np.array_equal(
        np.load(out), (sample[0].astype(np.float64) * 2 / 255 - 1).astype(np.float32)
    )


def test_closed_pipe_ends_quietly() -> None:
    shell = f"'{PIXSCALE}' convert '{SAMPLE_IMAGES}' -o - | head -c 100 > /dev/null"
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {shell}"], capture_output=True, text=True, check=False
    )
    assert result.stderr == ""
    # 3 MB of output cannot fit the pipe once head has gone: pixscale exits 141, as a
    # process killed by SIGPIPE would (cli/errors.py)
    assert result.returncode == 141


def test_hdf5_to_stdout_is_refused(tmp_path: Path) -> None:
    result = run("convert", SAMPLE_IMAGES, "-o", "-", "--format", "h5")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "HDF5 cannot be streamed" in result.stderr  # type: ignore[attr-defined]


def test_binary_output_to_a_terminal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pixscale.cli import convert as conversion

    monkeypatch.setattr(conversion, "stdout_is_terminal", lambda: True)
    result = CliRunner().invoke(main, ["convert", str(SAMPLE_IMAGES), "-o", "-"])
    assert result.exit_code == 2 and "binary .npy to a terminal" in result.stderr
    assert result.stdout == ""


def test_hdf5_key_choice_and_errors(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    images, labels = sample
    single = tmp_path / "single.h5"
    with h5py.File(single, "w") as handle:
        handle["x_train"] = images
        handle["y_train"] = labels
    source = open_source(single)
    assert source.name == "single.h5:x_train" and source.labels is not None
    assert np.array_equal(source.labels.values, labels)
    several = tmp_path / "several.h5"
    with h5py.File(several, "w") as handle:
        handle["a"] = images
        handle["b"] = images
        handle["f"] = images.astype(np.float32)
    with pytest.raises(
        InputError, match="uint8/uint16 image datasets: a, b; choose one with --key"
    ):
        open_source(several)
    with pytest.raises(InputError, match="dataset 'f' dtype is float32"):
        open_source(several, key="f")
    with pytest.raises(InputError, match="no dataset 'nope'"):
        open_source(several, key="nope")
    with pytest.raises(InputError, match="--key applies to .npz, HDF5"):
        open_source(SAMPLE_IMAGES, key="x")


def test_npz_errors(tmp_path: Path, sample) -> None:  # type: ignore[no-untyped-def]
    npz = tmp_path / "a.npz"
    np.savez(npz, images=sample[0], other=np.zeros(3))
    with pytest.raises(InputError, match="no array 'x'; it holds images, other"):
        open_source(npz, key="x")
    with pytest.raises(InputError, match="dtype is float64"):
        open_source(npz, key="other")
    only = tmp_path / "only.npz"
    np.savez(only, images=sample[0])
    assert open_source(only).shape == (1000, 28, 28)
