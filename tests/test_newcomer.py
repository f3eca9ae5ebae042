"""What a newcomer tripped over: a folder that reads as the archive of it does, the label
column of a Parquet file chosen with --labels, messages that say what to do (--resize, an
honest progress bar, class names that fit their tile, convert --help listing every kind),
and parameters of other images reused without a word."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_helpers import fails_with, run_cli
from image_datasets import assert_clean_error, cli, encode, unit
from pixscale.sources import open_source

pytest.importorskip("PIL")


def outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def converted(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict[str, object]]:
    with h5py.File(path) as h5:
        record = json.loads(h5.attrs["pixscale_params"])
        labels = h5["labels"][:] if "labels" in h5 else None
        return h5["images"][:], labels, record


# --------------------------------------------------------------------------- trees


CLASSES = {"cat": 5, "dog": 3, "emu": 0, "owl": 4}  # emu: a class folder without images


def image_tree(root: Path, images: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """``root/photos/train/<class>/<n>.png``, as people download them; the images and
    their classes in the order a folder is read (names sorted)."""
    written = []
    index = 0
    for name, count in CLASSES.items():
        folder = root / "photos" / "train" / name
        folder.mkdir(parents=True)
        for n in range(count):
            (folder / f"{n:03d}.png").write_bytes(encode(images[index]))
            written.append((images[index], name))
            index += 1
    (root / "photos" / "train" / ".DS_Store").write_bytes(b"not an image")
    return written


def tree_entries(root: Path, top: str) -> Iterator[Path]:
    """Every folder and file under ``root / top``, names sorted, folders before what they
    hold (as ``tar`` and ``zip -r`` store them when told to sort)."""
    yield root / top
    for base, folders, files in os.walk(root / top):
        folders.sort()
        for name in sorted(files):
            yield Path(base) / name
        for name in folders:
            yield Path(base) / name


def zip_of(root: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for entry in sorted(tree_entries(root, "photos"), key=lambda p: p.parts):
            archive.write(entry, entry.relative_to(root).as_posix())
    return path


def tar_of(root: Path, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        archive.add(root / "photos", "photos")  # members sorted by name, folders included
    return path


def test_a_folder_and_its_zip_and_tar_give_the_same_images_labels_and_classes(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    written = image_tree(tmp_path / "data", sample[0])
    inputs = {
        "folder": tmp_path / "data" / "photos",
        "zip": zip_of(tmp_path / "data", tmp_path / "photos.zip"),
        "tar": tar_of(tmp_path / "data", tmp_path / "photos.tar.gz"),
    }
    results = {}
    for kind, path in inputs.items():
        out = tmp_path / f"{kind}.h5"
        code, stderr = cli("convert", path, "-o", out, "-q")
        assert code == 0, stderr
        results[kind] = converted(out)
    images, labels, record = results["folder"]
    names = sorted(CLASSES)
    assert np.array_equal(images, unit(np.stack([image for image, _ in written])))
    assert labels is not None
    assert [names[n] for n in labels] == [name for _, name in written]
    assert record["output"]["class_names"] == names  # type: ignore[index]
    for kind in ("zip", "tar"):
        other_images, other_labels, other_record = results[kind]
        assert np.array_equal(other_images, images), kind
        assert np.array_equal(other_labels, labels), kind  # type: ignore[arg-type]
        assert other_record["output"]["class_names"] == names, kind  # type: ignore[index]


def test_a_folder_with_images_at_mixed_depths_is_refused_as_its_archive_is(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    photos = tmp_path / "photos"
    (photos / "cat").mkdir(parents=True)
    (photos / "cat" / "000.png").write_bytes(encode(sample[0][0]))
    (photos / "stray.png").write_bytes(encode(sample[0][1]))
    out = tmp_path / "out.h5"
    code, stderr = cli("convert", photos, "-o", out)
    assert_clean_error(
        code, stderr, f"{photos}: images at different depths (stray.png, cat/000.png)"
    )
    assert outputs(tmp_path) == ["photos"]


def test_a_folder_of_splits_says_to_name_one(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    for split in ("test", "train"):
        (tmp_path / "photos" / split / "cat").mkdir(parents=True)
        (tmp_path / "photos" / split / "cat" / "0.png").write_bytes(encode(sample[0][0]))
    code, stderr = cli("convert", tmp_path / "photos", "-o", tmp_path / "out.h5")
    assert_clean_error(
        code,
        stderr,
        "photos: images 2 folders deep (test/cat/0.png)",
        "name the one folder to read, as in photos/train",
    )
    assert outputs(tmp_path) == ["photos"]


def test_a_link_out_of_a_looked_through_folder_is_refused(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    image_tree(tmp_path / "data", sample[0])
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "0.png").write_bytes(encode(sample[0][0]))
    link = tmp_path / "data" / "photos" / "train" / "zebra"
    link.symlink_to(secret)
    code, stderr = cli("convert", tmp_path / "data" / "photos", "-o", tmp_path / "out.h5")
    assert_clean_error(code, stderr, f"{link}: is a link leading outside", "refusing to read")
    assert outputs(tmp_path) == ["data", "secret"]


def test_a_link_back_to_a_folder_holding_it_is_refused_not_followed(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    image_tree(tmp_path / "data", sample[0])
    link = tmp_path / "data" / "photos" / "train" / "cat" / "again"
    link.symlink_to("..")
    code, stderr = cli("convert", tmp_path / "data" / "photos", "-o", tmp_path / "out.h5")
    assert_clean_error(code, stderr, f"{link}: is a link to a folder holding it")
    assert outputs(tmp_path) == ["data"]


# --------------------------------------------------------------------------- Parquet


FINE = [f"fine{n}" for n in range(10)]
COARSE = ["small", "large"]


def cifar100_like(path: Path, images: np.ndarray, fine: np.ndarray) -> Path:
    """The Hub's CIFAR-100 layout: an image, a fine and a coarse ClassLabel column."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    kind = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {
        "img": {"_type": "Image"},
        "fine_label": {"names": FINE, "_type": "ClassLabel"},
        "coarse_label": {"names": COARSE, "_type": "ClassLabel"},
    }
    table = pa.table(
        {
            "img": pa.array([{"bytes": encode(i), "path": None} for i in images], kind),
            "fine_label": pa.array(fine.astype(np.int64)),
            "coarse_label": pa.array((fine // 5).astype(np.int64)),
        }
    ).replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, path)
    return path


def string_labels(path: Path, images: np.ndarray) -> Path:
    """Images with a ``label`` column of names, not class indices."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    kind = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array([{"bytes": encode(i), "path": None} for i in images], kind),
            "label": pa.array([f"digit {n}" for n in range(len(images))]),
        }
    )
    pq.write_table(table, path)
    return path


@pytest.fixture
def hub(tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]) -> Path:
    return cifar100_like(tmp_path / "train.parquet", sample[0][:40], sample[1][:40])


def info_json(path: Path, *options: str) -> dict[str, object]:

    result = run_cli("info", path, "--json", *options)
    assert result.exit_code == 0, result.output
    found: dict[str, object] = json.loads(result.stdout)
    return found


def test_info_says_which_label_column_was_taken_among_several(hub: Path) -> None:
    details = info_json(hub)
    assert details["label_column"] == "fine_label"
    assert details["label_columns"] == ["fine_label", "coarse_label"]
    assert details["class_names"] == FINE
    assert info_json(hub, "--labels", "coarse_label")["class_names"] == COARSE


def test_plain_info_says_which_label_column_was_taken(hub: Path) -> None:

    result = run_cli("info", hub)
    assert result.exit_code == 0, result.output
    assert (
        "  label column fine_label (of fine_label, coarse_label; --labels COLUMN picks another)"
        in result.stdout.splitlines()
    )


def test_labels_column_picks_the_coarse_labels_and_verify_reopens_them(
    tmp_path: Path, hub: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    out = tmp_path / "coarse.h5"
    code, stderr = cli("convert", hub, "--labels", "coarse_label", "-o", out, "-q")
    assert code == 0, stderr
    images, labels, record = converted(out)
    assert np.array_equal(images, unit(sample[0][:40]))
    assert np.array_equal(labels, sample[1][:40] // 5)  # type: ignore[arg-type]
    assert record["source"]["labels"] == "train.parquet:coarse_label"  # type: ignore[index]
    assert record["output"]["class_names"] == COARSE  # type: ignore[index]
    code, stderr = cli("verify", out, "--source", hub)
    assert code == 0, stderr


def test_labels_none_converts_a_file_whose_labels_are_names(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    path = string_labels(tmp_path / "named.parquet", sample[0][:12])
    out = tmp_path / "named.h5"
    code, stderr = cli("convert", path, "-o", out)
    assert_clean_error(
        code, stderr, "named.parquet: label column 'label' holds string values", "--labels none"
    )
    assert not out.exists()
    code, stderr = cli("convert", path, "--labels", "none", "-o", out, "-q")
    assert code == 0, stderr
    images, labels, _ = converted(out)
    assert labels is None and np.array_equal(images, unit(sample[0][:12]))
    code, stderr = cli("verify", out, "--source", path)  # reopened without labels, as recorded
    assert code == 0, stderr


def test_a_labels_file_replaces_a_label_column_it_need_not_read(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    path = string_labels(tmp_path / "named.parquet", sample[0][:12])
    np.save(tmp_path / "y.npy", sample[1][:12])
    source = open_source(path, labels=tmp_path / "y.npy")
    assert source.labels is not None and np.array_equal(source.labels.values, sample[1][:12])


def test_an_unknown_label_column_names_the_file_and_the_columns(tmp_path: Path, hub: Path) -> None:
    out = tmp_path / "out.h5"
    code, stderr = cli("convert", hub, "--labels", "superclass", "-o", out)
    assert_clean_error(
        code,
        stderr,
        f"{hub}: no column 'superclass' for --labels; columns: fine_label, coarse_label",
    )
    assert outputs(tmp_path) == ["train.parquet"]


def test_a_column_name_for_another_format_is_no_labels_file(
    tmp_path: Path, sample_npy: Path
) -> None:
    out = tmp_path / "out.h5"
    code, stderr = cli("convert", sample_npy, "--labels", "fine_label", "-o", out)
    assert_clean_error(code, stderr, "fine_label: no such labels file")
    assert not out.exists()


# --------------------------------------------------------------------------- messages


def test_convert_help_lists_every_input_and_output() -> None:

    text = run_cli("convert", "--help").output
    for kind in (
        "IDX",
        ".npy",
        ".npz",
        "HDF5",
        "Zarr",
        "image folders",
        ".zip",
        ".tar",
        "Parquet",
        "WebDataset",
        "CIFAR",
        "standard input",
        ".h5",
        ".zarr",
    ):
        assert kind in text, kind


def test_images_of_two_sizes_suggest_resize(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(encode(sample[0][0]))
    (photos / "b.png").write_bytes(encode(np.zeros((30, 32), np.uint8)))
    code, stderr = cli("convert", photos, "-o", tmp_path / "out.h5")
    assert_clean_error(code, stderr, "b.png: image is 32×30, a.png is 28×28", "--resize 28x28")
    assert outputs(tmp_path) == ["photos"]


class Terminal(io.StringIO):
    """Standard error as a terminal, kept."""

    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_the_share_done_and_the_time_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pixscale.cli.progress as progress

    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    advance, close = progress.progress_bar(False, "converting")
    assert advance is not None
    for now in (100.5, 101.0, 102.0):  # 100 of 1,000 images (two passes of 500) each time
        clock[0] = now
        advance(100, 1000, 100 * 784)
    close()
    shown = [line for line in terminal.getvalue().split("\r") if "converting" in line]
    # after 2 s, 300 of 1,000 done: 700 more at 150 a second
    assert "30%" in shown[-1] and "ETA 00:00:05" in shown[-1], shown[-1]
    assert "300/1000" not in terminal.getvalue()


def test_preview_keeps_long_class_names_under_their_tiles(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    from PIL import Image

    from pixscale.tasks.preview import CELL, LABEL_HEIGHT

    names = ["a_remarkably_long_class_name_one", "a_remarkably_long_class_name_two"]
    for index, name in enumerate(names):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for n in range(4):
            image = sample[0][4 * index + n]
            (tmp_path / "photos" / name / f"{n}.png").write_bytes(encode(image))
    out = tmp_path / "preview.png"
    code, stderr = cli("preview", tmp_path / "photos", "-o", out, "-n", "8")
    assert code == 0, stderr
    pixels = np.asarray(Image.open(out).convert("L"))
    top = 24 + CELL - 6
    band = pixels[top : top + LABEL_HEIGHT]
    for column in range(7):  # the 8 px between one tile and the next stay blank
        gap = band[:, 10 + column * CELL + CELL - 8 : 10 + (column + 1) * CELL]
        assert gap.min() == 255, f"a label runs past tile {column}"


# --------------------------------------------------------------------------- parameters


def test_parameters_fitted_on_other_images_warn_naming_both_shapes(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    mnist, other = tmp_path / "mnist.npy", tmp_path / "other.npy"
    np.save(mnist, sample[0][:100])
    np.save(other, np.resize(sample[0][:100], (100, 32, 32)))
    fitted = tmp_path / "fitted.h5"
    code, stderr = cli("convert", mnist, "-o", fitted, "-s", "standardize", "-q")
    assert code == 0, stderr
    code, stderr = cli("convert", mnist, "-o", tmp_path / "same.h5", "--params-from", fitted)
    assert code == 0 and "Warning" not in stderr, stderr
    code, stderr = cli("convert", other, "-o", tmp_path / "o.h5", "--params-from", fitted)
    assert code == 0, stderr
    warning = [line for line in stderr.splitlines() if line.startswith("Warning: ")]
    assert warning == [
        f"Warning: {fitted}: parameters fitted on 28×28 images, applied to 32×32 images "
        "(global scope): statistics of other data"
    ], stderr


def test_labels_none_drops_labels_of_any_format_and_a_file_so_named_is_dot_none(
    tmp_path: Path,
) -> None:

    images = (
        Path(__file__).resolve().parents[1] / "sample_data" / "mnist-train-1k-images-idx3-ubyte.gz"
    )
    os.chdir(tmp_path)
    Path("none").write_bytes(b"not labels")  # a file of that name does not turn none into a path
    result = run_cli("convert", images, "-o", "x.h5", "--labels", "none")
    assert result.exit_code == 0, result.output
    with h5py.File("x.h5") as handle:
        assert "labels" not in handle
    result = fails_with(["convert", images, "-o", "y.h5", "--labels", "./none"], "none: ")
    assert result.stderr.startswith("Error: none: ")
    assert not Path("y.h5").exists()


def test_inputs_of_which_only_some_carry_labels_are_refused(tmp_path: Path) -> None:

    sample = Path(__file__).resolve().parents[1] / "sample_data"
    for name in ("mnist-train-1k-images-idx3-ubyte.gz", "mnist-train-1k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes((sample / name).read_bytes())
    (tmp_path / "other-images.gz").write_bytes(
        (sample / "mnist-train-1k-images-idx3-ubyte.gz").read_bytes()
    )
    args = [
        str(tmp_path / "mnist-train-1k-images-idx3-ubyte.gz"),
        str(tmp_path / "other-images.gz"),
    ]
    fails_with(
        ["convert", *args, "-o", tmp_path / "c.h5"], "other-images.gz: holds no labels while"
    )
    assert not (tmp_path / "c.h5").exists()


def test_invert_says_what_it_wrote_and_verify_what_it_compared(tmp_path: Path) -> None:

    images = (
        Path(__file__).resolve().parents[1] / "sample_data" / "mnist-train-1k-images-idx3-ubyte.gz"
    )
    out, back = tmp_path / "x.npy", tmp_path / "back.npy"
    assert run_cli("convert", images, "-o", out).exit_code == 0
    result = run_cli("invert", out, "-o", back)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"{back}: 1,000 images, exact\n"
    result = run_cli("verify", out, "--source", images, "--samples", "10")
    assert "ok   10 sampled images re-derive exactly from the source" in result.stdout
    result = run_cli("verify", out, "--source", images)
    assert "ok   every image re-derives exactly from the source" in result.stdout


def test_empty_labels_say_what_to_give(tmp_path: Path) -> None:

    images = Path(__file__).resolve().parents[1] / "sample_data"
    sample = images / "mnist-train-1k-images-idx3-ubyte.gz"
    result = fails_with(["convert", sample, "-o", tmp_path / "o.h5", "--labels", ""], "--labels")
    assert (
        result.stderr == "Error: --labels is empty: give a labels file, a Parquet column or none\n"
    )
    assert not (tmp_path / "o.h5").exists()
