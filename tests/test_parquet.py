"""Parquet in the Hugging Face Hub's layout: image structs of PNG/JPEG bytes, a ClassLabel
label column, the features in the schema metadata; read by row group, decoded in parallel."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_helpers import run_cli
from image_datasets import (
    DIGITS,
    assert_clean_error,
    claimed_png,
    cli,
    encode,
    hub_parquet,
    unit,
)
from pixscale.errors import InputError
from pixscale.sources import open_source

pytest.importorskip("pyarrow")
pytest.importorskip("PIL")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def read_all(path: Path | list[Path], **options: str) -> np.ndarray:
    source = open_source(path, **options)
    return np.concatenate(list(source.chunks(300)))


def test_hub_shards_convert_exactly_with_labels_and_class_names(
    tmp_path: Path, mnist_train: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_train[0][:6000], mnist_train[1][:6000]
    shards = [
        hub_parquet(tmp_path / "train-00000-of-00002.parquet", images[:3500], labels[:3500]),
        hub_parquet(tmp_path / "train-00001-of-00002.parquet", images[3500:], labels[3500:]),
    ]
    out = tmp_path / "train.h5"
    code, stderr = cli("convert", *shards, "-o", out, "-q")
    assert code == 0, stderr
    with h5py.File(out) as h5:
        assert np.array_equal(h5["images"][:], unit(images))
        assert np.array_equal(h5["labels"][:], labels)
        record = json.loads(h5.attrs["pixscale_params"])
    assert record["source"]["format"] == "parquet"
    assert record["output"].get("class_names", DIGITS) == DIGITS


def test_info_shows_format_columns_count_size_and_label_names(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    path = hub_parquet(tmp_path / "train-00000-of-00001.parquet", sample[0][:50], sample[1][:50])
    code, _ = cli("info", path)
    assert code == 0

    text = run_cli("info", path).stdout
    assert "parquet" in text and "50×28×28" in text and "(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)" in text
    details = json.loads(run_cli("info", path, "--json").stdout)
    assert details["format"] == "parquet"
    assert details["columns"] == ["image", "label"] and details["image_column"] == "image"
    assert details["shape"] == [50, 28, 28] and details["class_names"] == DIGITS


@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
def test_every_decoding_backend_gives_the_same_images_in_order(
    tmp_path: Path,
    sample: tuple[np.ndarray, np.ndarray],
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pixscale.sources.parallel as parallel

    monkeypatch.setattr(parallel, "BACKEND", backend)
    path = hub_parquet(tmp_path / "s.parquet", sample[0], sample[1], row_group_size=128)
    assert np.array_equal(read_all(path), sample[0])
    source = open_source(path)
    assert np.array_equal(np.concatenate(list(source.window(130, 777, 100))), sample[0][130:777])


def test_many_small_images_go_to_worker_processes(
    tmp_path: Path, mnist_train: tuple[np.ndarray, np.ndarray]
) -> None:
    from pixscale.sources.parallel import choose_backend

    images = mnist_train[0][:5000]
    path = hub_parquet(tmp_path / "s.parquet", images, mnist_train[1][:5000])
    source = open_source(path)
    if choose_backend(source.expect, source.n_images) != "processes":  # type: ignore[attr-defined]
        pytest.skip("no worker processes on this platform or with one core")
    assert np.array_equal(read_all(path), images)


def test_jpeg_photographs_decode_as_pillow_decodes_them(
    tmp_path: Path, photo_tiles: np.ndarray
) -> None:
    from PIL import Image

    cells = [encode(tile, "JPEG") for tile in photo_tiles]
    path = hub_parquet(tmp_path / "p.parquet", photo_tiles, None, encoded=cells)
    expected = np.stack([np.asarray(Image.open(__import__("io").BytesIO(c))) for c in cells])
    assert np.array_equal(read_all(path), expected)
    assert open_source(path).labels is None
    assert read_all(path, mode="L").shape == (len(cells), 64, 64)


def test_labels_without_names_and_other_label_columns(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = sample[0][:20], sample[1][:20]
    plain = hub_parquet(tmp_path / "plain.parquet", images, labels, names=None)
    found = open_source(plain).labels
    assert found is not None and found.class_names is None
    assert np.array_equal(found.values, labels)
    kind = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {
        "img": {"_type": "Image"},
        "coarse_label": {"names": ["a", "b"], "_type": "ClassLabel"},
        "fine_label": {"names": DIGITS, "_type": "ClassLabel"},
    }
    table = pa.table(
        {
            "img": pa.array(
                [{"bytes": encode(i), "path": f"{n}.png"} for n, i in enumerate(images)], kind
            ),
            "coarse_label": pa.array(labels // 5),
            "fine_label": pa.array(labels),
        }
    ).replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, tmp_path / "cifar100-like.parquet")
    source = open_source(tmp_path / "cifar100-like.parquet")
    assert source.labels is not None and source.labels.class_names == DIGITS
    assert np.array_equal(source.labels.values, labels)


def two_image_columns(path: Path, images: np.ndarray) -> Path:
    kind = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(
        pa.table(
            {
                "image": pa.array([{"bytes": encode(i), "path": None} for i in images], kind),
                "mask": pa.array([{"bytes": encode(255 - i), "path": None} for i in images], kind),
            }
        ),
        path,
    )
    return path


def test_key_picks_the_image_column(tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]) -> None:
    images = sample[0][:10]
    path = two_image_columns(tmp_path / "pairs.parquet", images)
    with pytest.raises(InputError, match="holds image columns image, mask; choose one with --key"):
        open_source(path)
    assert np.array_equal(read_all(path, key="mask"), 255 - images)
    with pytest.raises(InputError, match="no image column 'label'; image columns: image, mask"):
        open_source(path, key="label")


# --------------------------------------------------------------------------- hostile


def convert_fails(tmp_path: Path, source: Path, *texts: str) -> str:
    out = tmp_path / "out.h5"
    code, stderr = cli("convert", source, "-o", out)
    line = assert_clean_error(code, stderr, source.name, *texts)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    return line


def test_a_corrupt_image_names_its_row(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    cells = [encode(i) for i in sample[0][:300]]
    cells[217] = cells[217][:60] + b"\0" * 40
    path = hub_parquet(tmp_path / "c.parquet", None, sample[1][:300], encoded=cells)
    convert_fails(tmp_path, path, "c.parquet:row 217: cannot")


def test_an_image_of_another_size_names_the_first_offender(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    cells = [encode(i) for i in sample[0][:400]]
    for row in (150, 390):
        cells[row] = encode(np.zeros((30, 28), np.uint8))
    path = hub_parquet(
        tmp_path / "m.parquet", None, sample[1][:400], encoded=cells, row_group_size=100
    )
    convert_fails(tmp_path, path, "m.parquet:row 150: image is 28×30, the others 28×28")


def test_a_huge_declared_image_is_refused_from_its_header(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    cells = [encode(i) for i in sample[0][:20]]
    cells[5] = claimed_png(40000, 40000)
    path = hub_parquet(tmp_path / "b.parquet", None, sample[1][:20], encoded=cells)
    convert_fails(tmp_path, path, "b.parquet:row 5: declares an image of 1,600,000,000 pixels")


def test_an_image_stored_only_as_a_path_is_refused(tmp_path: Path) -> None:
    kind = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = [
        {"bytes": encode(np.zeros((4, 4), np.uint8)), "path": None},
        {"bytes": None, "path": "x.png"},
    ]
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"image": pa.array(cells, kind)}), path)
    convert_fails(tmp_path, path, "r.parquet:row 1: holds no image bytes", "'x.png'")


def test_a_truncated_file_is_a_clean_error(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    path = hub_parquet(tmp_path / "t.parquet", sample[0][:50], sample[1][:50])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + data[-8:])  # footer magic kept, metadata gone
    convert_fails(tmp_path, path)


def test_missing_pyarrow_is_one_line_saying_what_to_install(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = hub_parquet(tmp_path / "n.parquet", sample[0][:5], sample[1][:5])
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    convert_fails(tmp_path, path, "reading Parquet needs pyarrow: pip install 'pixscale[parquet]'")
