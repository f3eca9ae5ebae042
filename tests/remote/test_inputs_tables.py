"""Parquet, HDF5 and Zarr v3 inputs in a bucket, read by byte range against a real S3
protocol server: pixels and labels exactly as the same files read from disk, and the same
refusals (external links, chunks larger than their codec allows, missing objects), each one
line naming the URL."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result

from image_datasets import hub_parquet
from pixscale.cli import main
from pixscale.errors import InputError
from pixscale.sources import open_source
from pixscale.sources.base import Source

from .conftest import SECRET, upload

pytest.importorskip("pyarrow")
pytest.importorskip("PIL")
zarr = pytest.importorskip("zarr", reason="zarr-python is not installed")
numcodecs = pytest.importorskip("numcodecs", reason="numcodecs is not installed")

from zarr.codecs import ZstdCodec  # noqa: E402

SHAPE = (150, 12, 10)
#: Images per stored chunk of the Zarr stores.
ROWS = 16
#: Bytes of one such chunk.
CHUNK = ROWS * 12 * 10


def images() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, SHAPE, dtype=np.uint8)


def labels() -> np.ndarray:
    return (np.arange(SHAPE[0]) * 7 % 10).astype(np.int64)


def every_image(source: Source, rows: int) -> np.ndarray:
    return np.concatenate(list(source.chunks(rows)))


def assert_same(remote: Source, local: Source) -> None:
    """Pixels (in several chunk lengths and one window) and labels equal to the local read."""
    expected = every_image(local, 64)
    for rows in (7, 64, 150):
        assert np.array_equal(every_image(remote, rows), expected)
    window = np.concatenate(list(remote.window(13, 131, 40)))
    assert np.array_equal(window, expected[13:131])
    assert remote.labels is not None and local.labels is not None
    assert np.array_equal(remote.labels.values, local.labels.values)
    assert remote.labels.class_names == local.labels.class_names


def run(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def refused(error: pytest.ExceptionInfo[InputError], url: str, phrase: str) -> str:
    """One line naming ``url`` and giving ``phrase``, no credential."""
    text = str(error.value)
    assert "\n" not in text and text.startswith(f"{url}: "), text
    assert phrase in text, text
    assert SECRET not in text
    return text


# --------------------------------------------------------------------------- Parquet


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_hub_parquet_is_read_by_row_groups_as_on_disk(
    tmp_path: Path, bucket: str, s3: object, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pixscale.sources.parallel as parallel

    monkeypatch.setattr(parallel, "BACKEND", backend)
    local = hub_parquet(tmp_path / "train.parquet", images(), labels(), row_group_size=40)
    url = upload(s3, local, f"{bucket}/hub/train-00000-of-00001.parquet")
    remote = open_source(url)
    assert remote.format == "parquet" and remote.groups == (40, 40, 40, 30)  # type: ignore[attr-defined]
    assert_same(remote, open_source(local))
    assert np.array_equal(every_image(remote, 64), images())


def test_a_truncated_parquet_object_names_its_url(tmp_path: Path, bucket: str, s3: object) -> None:
    local = hub_parquet(tmp_path / "t.parquet", images(), labels(), row_group_size=40)
    data = local.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[:4] + data[len(data) // 2 :])  # the footer kept, row groups lost
    url = upload(s3, cut, f"{bucket}/cut.parquet")
    with pytest.raises(InputError) as error:
        every_image(open_source(url), 64)
    refused(error, url, "damaged Parquet file")


# --------------------------------------------------------------------------- HDF5


def hdf5_file(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", data=images(), chunks=(ROWS, 12, 10), compression="gzip")
        handle["labels"] = labels()
        handle["elsewhere"] = h5py.ExternalLink("secrets.h5", "/images")
    return path


def test_hdf5_is_read_through_a_file_object_as_on_disk(
    tmp_path: Path, bucket: str, s3: object
) -> None:
    local = hdf5_file(tmp_path / "data.h5")
    url = upload(s3, local, f"{bucket}/data.h5")
    remote = open_source(url, key="images")
    assert remote.format == "hdf5"
    assert_same(remote, open_source(local, key="images"))


def test_an_external_link_in_a_remote_hdf5_is_refused_naming_the_url(
    tmp_path: Path, bucket: str, s3: object
) -> None:
    url = upload(s3, hdf5_file(tmp_path / "data.h5"), f"{bucket}/data.h5")
    with pytest.raises(InputError) as error:
        open_source(url, key="elsewhere")
    line = refused(error, url, "'elsewhere' is an external link to secrets.h5:/images")
    assert line.endswith("refusing to read outside the input")


# --------------------------------------------------------------------------- Zarr

STORES = {
    "plain": {"chunks": (ROWS, 12, 10), "compressors": None},
    "zstd": {"chunks": (ROWS, 12, 10), "compressors": ZstdCodec(level=3)},
    "sharded": {"chunks": (4, 12, 10), "shards": (ROWS * 2, 12, 10), "compressors": ZstdCodec()},
}


def zarr_group(path: Path, **options: object) -> Path:
    """A group of uint8 ``images`` stored with ``options`` and int64 ``labels``."""
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.create_array("images", shape=SHAPE, dtype="u1", **options)[:] = images()
    group.create_array("labels", shape=(SHAPE[0],), chunks=(64,), dtype="i8")[:] = labels()
    return path


@pytest.mark.parametrize("kind", list(STORES))
def test_a_zarr_store_is_read_chunk_by_chunk_as_on_disk(
    tmp_path: Path, bucket: str, s3: object, kind: str
) -> None:
    local = zarr_group(tmp_path / f"{kind}.zarr", **STORES[kind])
    url = upload(s3, local, f"{bucket}/stores/{kind}.zarr")
    remote = open_source(url)
    assert remote.format == "zarr" and remote.shape == SHAPE
    assert_same(remote, open_source(local))
    assert remote.sha256() == open_source(local).sha256()


@pytest.mark.parametrize("kind", ["sharded", "zstd"])
def test_a_remote_zarr_store_converts_through_the_cli(
    tmp_path: Path, bucket: str, s3: object, kind: str
) -> None:
    local = zarr_group(tmp_path / "in.zarr", **STORES[kind])
    url = upload(s3, local, f"{bucket}/in.zarr")
    out, expected = tmp_path / "from-bucket.h5", tmp_path / "from-disk.h5"
    assert run("convert", url, "-o", out, "-q").exit_code == 0
    assert run("convert", local, "-o", expected, "-q").exit_code == 0
    with h5py.File(out, "r") as got, h5py.File(expected, "r") as want:
        assert np.array_equal(got["images"][...], want["images"][...])
        assert np.array_equal(got["labels"][...], labels())
        record = json.loads(got.attrs["pixscale_params"])
    assert url in json.dumps(record["source"]) and SECRET not in json.dumps(record)


def test_a_remote_parquet_converts_through_the_cli(tmp_path: Path, bucket: str, s3: object) -> None:
    local = hub_parquet(tmp_path / "train.parquet", images(), labels(), row_group_size=64)
    url = upload(s3, local, f"{bucket}/train.parquet")
    out = tmp_path / "train.h5"
    assert run("convert", url, "-o", out, "-q").exit_code == 0
    with h5py.File(out, "r") as got:
        assert np.array_equal(got["images"][...], images() / np.float32(255))
        assert np.array_equal(got["labels"][...], labels())


def test_a_zstd_chunk_bomb_is_refused_before_decoding(
    tmp_path: Path, bucket: str, s3: object
) -> None:
    local = zarr_group(tmp_path / "s.zarr", **STORES["zstd"])
    (local / "images" / "c" / "2" / "0" / "0").write_bytes(
        numcodecs.Zstd(level=19).encode(bytes(64 << 20))
    )
    url = upload(s3, local, f"{bucket}/s.zarr")
    source = open_source(url)
    with pytest.raises(InputError) as error:
        every_image(source, 64)
    refused(error, url, f"chunk images/c/2/0/0 would decode to more than its {CHUNK:,} bytes")


def test_a_stored_chunk_larger_than_its_codec_allows_is_refused(
    tmp_path: Path, bucket: str, s3: object
) -> None:
    local = zarr_group(tmp_path / "s.zarr", **STORES["plain"])
    (local / "images" / "c" / "1" / "0" / "0").write_bytes(bytes(8 << 20))
    url = upload(s3, local, f"{bucket}/s.zarr")
    with pytest.raises(InputError) as error:
        every_image(open_source(url), 64)
    refused(error, url, f"chunk images/c/1/0/0 is {CHUNK + 1:,} bytes stored, more than its")


def test_an_inner_chunk_bomb_in_a_remote_shard_is_refused(
    tmp_path: Path, bucket: str, s3: object
) -> None:
    local = zarr_group(tmp_path / "s.zarr", **STORES["sharded"])
    shard = local / "images" / "c" / "1" / "0" / "0"
    data = shard.read_bytes()
    count = ROWS * 2 // 4
    index = np.frombuffer(data[-(16 * count + 4) : -4], "<u8").reshape(count, 2).copy()
    bomb = numcodecs.Zstd(level=19).encode(bytes(64 << 20))
    body = data[: int(index[:, 0].max() + index[:, 1].max())]
    index[3] = (len(body), len(bomb))
    table = index.tobytes()
    crc = __import__("google_crc32c").value(table).to_bytes(4, "little")
    shard.write_bytes(body + bomb + table + crc)
    url = upload(s3, local, f"{bucket}/s.zarr")
    with pytest.raises(InputError) as error:
        every_image(open_source(url), 7)
    refused(error, url, "shard images/c/1/0/0: inner chunk (3, 0, 0) would decode to more than")


@pytest.mark.parametrize("kind", ["zstd", "sharded"])
def test_a_missing_chunk_object_is_refused_when_opening(
    tmp_path: Path, bucket: str, s3: object, kind: str
) -> None:
    local = zarr_group(tmp_path / "s.zarr", **STORES[kind])
    url = upload(s3, local, f"{bucket}/s.zarr")
    s3.rm(f"{url.removeprefix('s3://')}/images/c/1/0/0")  # type: ignore[attr-defined]
    s3.invalidate_cache()  # type: ignore[attr-defined]
    with pytest.raises(InputError) as error:
        open_source(url)
    lost = {
        "zstd": "array 'images' has 1 of 10 chunks not stored",
        "sharded": "array 'images' has 8 of 38 chunks not stored (first in shard images/c/1/0/0",
    }
    refused(error, url, lost[kind])


def test_a_key_climbing_out_of_a_remote_store_is_refused(
    tmp_path: Path, bucket: str, s3: object
) -> None:
    local = zarr_group(tmp_path / "s.zarr", **STORES["plain"])
    upload(s3, local, f"{bucket}/s.zarr")
    url = upload(s3, local, f"{bucket}/other.zarr")
    with pytest.raises(InputError) as error:
        open_source(url, key="../s.zarr/images")
    refused(error, url, "key '../s.zarr/images' leads outside the store")


def test_a_missing_object_is_one_line_naming_its_url(bucket: str) -> None:
    for name in ("absent.parquet", "absent.h5", "absent.zarr"):
        url = f"{bucket}/{name}"
        result = run("convert", url, "-o", "never.h5")
        lines = result.stderr.splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith(f"Error: {url}: "), lines[0]
        assert not Path("never.h5").exists()
