"""Every byte read comes from inside the named file or root.

Image folders and Zarr stores: a file, class folder, array folder, ``zarr.json``, chunk or
shard that is a link leading out of the root is refused, naming the link; a link that stays
inside the root is read like any file of it. A sharded Zarr array must store every inner
chunk its images need, as its shards' indexes say (an index that lies about its bytes is
refused). HDF5 outputs: the ``params/`` arrays are read through the same opener as images
and labels, which refuses external storage, virtual datasets and external links.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import pixscale
from pixscale.errors import ParamsError

from .conftest import assert_clean_failure, assert_unchanged, cli, snapshot

zarr = pytest.importorskip("zarr", reason="zarr-python 3 is not installed")
google_crc32c = pytest.importorskip("google_crc32c", reason="zarr-python's crc32c is missing")

SHAPE = (25, 8, 8)
LEADS_OUT = "is a link leading outside"
NOT_STORED = "chunks not stored"


def pixels(value: int | None = None) -> np.ndarray:
    if value is not None:
        return np.full(SHAPE, value, np.uint8)
    return (np.arange(np.prod(SHAPE)) % 251 + 1).astype(np.uint8).reshape(SHAPE)


def store(path: Path, values: np.ndarray, sharded: bool = False, group: bool = False) -> Path:
    """A Zarr v3 store of ``values``: an array, or a group holding it as ``images``; one
    image per chunk, ten chunks per shard when ``sharded``."""
    chunks = (1, *values.shape[1:])
    shards = (10, *values.shape[1:]) if sharded else None
    if group:
        root = zarr.open_group(path, mode="w", zarr_format=3)
        array = root.create_array(
            "images", shape=values.shape, chunks=chunks, shards=shards, dtype="u1", fill_value=0
        )
    else:
        array = zarr.create_array(
            path, shape=values.shape, chunks=chunks, shards=shards, dtype="u1", fill_value=0
        )
    array[:] = values
    return path


def relink(link: Path, target: str) -> None:
    """Replace ``link`` (a file or a folder) by a symbolic link to ``target``."""
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif os.path.lexists(link):
        link.unlink()
    os.symlink(target, link)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The input folder, and another store beside it (whose pixels must stay unread)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (tmp_path / "out").mkdir()
    other = tmp_path / "other.zarr"
    return folder, other, tmp_path / "out"


def refused(source: Path, out: Path, link: str, reason: str = LEADS_OUT) -> str:
    """Converting ``source`` fails in one line naming ``link`` and ``reason``; nothing is
    written."""
    before = snapshot(out)
    line = assert_clean_failure(
        cli(["convert", source, "-o", out / "x.npy", "-q"]), names=[link], reasons=[reason]
    )
    assert_unchanged(out, before)
    return line


# ------------------------------------------------------------------------ Zarr: links


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("c/1/0/0", "../../../../other.zarr/c/1/0/0"),  # a chunk file
        ("c/1", "../../other.zarr/c/1"),  # a chunk folder
        ("c/1/0/0", "../../../../in/../other.zarr/c/1/0/0"),  # climbs out and back past it
        ("c/1/0/0", "/{other}/c/1/0/0"),  # absolute
        ("c/1/0/0", "../../../../gone.zarr/c/1/0/0"),  # dangling, outside
    ],
)
def test_a_chunk_link_leading_out_of_the_store_is_refused(
    stores: tuple[Path, Path, Path], link: str, target: str
) -> None:
    folder, other, out = stores
    source = store(folder / "x.zarr", pixels(1))
    store(other, pixels(99))
    relink(source / link, target.format(other=str(other).lstrip("/")))
    line = refused(source, out, f"x.zarr/{link}")
    assert "99" not in line


def test_a_linked_root_zarr_json_is_refused(stores: tuple[Path, Path, Path]) -> None:
    folder, other, out = stores
    source = store(folder / "x.zarr", pixels(1))
    store(other, pixels(99))
    relink(source / "zarr.json", "../../other.zarr/zarr.json")
    refused(source, out, "x.zarr/zarr.json")


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("images", "../../other.zarr/images"),  # the array folder
        ("images/zarr.json", "../../../other.zarr/images/zarr.json"),  # its metadata
    ],
)
def test_an_array_of_a_group_linked_out_of_the_store_is_refused(
    stores: tuple[Path, Path, Path], link: str, target: str
) -> None:
    folder, other, out = stores
    source = store(folder / "x.zarr", pixels(1), group=True)
    store(other, pixels(99), group=True)
    relink(source / link, target)
    refused(source, out, f"x.zarr/{link}")


def test_a_shard_linked_out_of_the_store_is_refused(stores: tuple[Path, Path, Path]) -> None:
    folder, other, out = stores
    source = store(folder / "x.zarr", pixels(1), sharded=True)
    store(other, pixels(99), sharded=True)
    relink(source / "c/1/0/0", "../../../../other.zarr/c/1/0/0")
    refused(source, out, "x.zarr/c/1/0/0")


@pytest.mark.parametrize("sharded", [False, True])
def test_a_link_that_stays_inside_the_store_is_read(tmp_path: Path, sharded: bool) -> None:
    """Decided: a link whose target lies inside the root is read like any file of it."""
    values = pixels()
    source = store(tmp_path / "x.zarr", values, sharded=sharded)
    relink(source / "c/1/0/0", "../../0/0/0")  # chunk (or shard) 1 reads as chunk 0
    per_chunk = 10 if sharded else 1
    values[per_chunk : 2 * per_chunk] = values[:per_chunk]
    result = cli(["convert", source, "-o", tmp_path / "x.npy", "-s", "unit", "-q"])
    assert result.code == 0, result.describe()
    stored = np.load(tmp_path / "x.npy")
    assert np.array_equal(stored, values.astype(np.float32) / np.float32(255))


def test_a_dangling_link_inside_the_store_is_a_missing_chunk(tmp_path: Path) -> None:
    source = store(tmp_path / "x.zarr", pixels())
    relink(source / "c/1/0/0", "../../9/0/missing")
    (tmp_path / "out").mkdir()
    refused(source, tmp_path / "out", "x.zarr", "1 of 25 chunks not stored")


# ------------------------------------------------------------- Zarr: inner chunks of shards

ABSENT = 2**64 - 1


def edit_index(shard: Path, change: dict[tuple[int, int], int], entries: int = 10) -> None:
    """Set entries of the shard's index (at its end, little-endian, CRC-32C after it) and
    write a valid checksum: only the index's content lies."""
    data = bytearray(shard.read_bytes())
    size = 16 * entries
    table = np.frombuffer(bytes(data[-size - 4 : -4]), "<u8").reshape(entries, 2).copy()
    for where, value in change.items():
        table[where] = value
    body = table.tobytes()
    data[-size - 4 :] = body + google_crc32c.value(body).to_bytes(4, "little")
    shard.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("shard", "inner"),
    [("0", 0), ("1", 5), ("1", 9), ("2", 4)],  # first, middle, end of a shard, last image
)
def test_a_missing_inner_chunk_of_a_shard_is_refused(
    tmp_path: Path, shard: str, inner: int
) -> None:
    source = store(tmp_path / "x.zarr", pixels(), sharded=True)
    edit_index(source / f"c/{shard}/0/0", {(inner, 0): ABSENT, (inner, 1): ABSENT})
    (tmp_path / "out").mkdir()
    line = refused(source, tmp_path / "out", "x.zarr", "1 of 25 chunks not stored")
    assert f"shard c/{shard}/0/0" in line


def test_inner_chunks_past_the_end_of_an_edge_shard_need_not_be_stored(tmp_path: Path) -> None:
    """25 images in shards of 10: the last shard's entries 5…9 are absent, as zarr writes it."""
    source = store(tmp_path / "x.zarr", pixels(), sharded=True)
    result = cli(["convert", source, "-o", tmp_path / "x.npy", "-s", "unit", "-q"])
    assert result.code == 0, result.describe()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({(3, 0): 10_000}, "index places inner chunk (3, 0, 0)"),  # past the end
        ({(3, 1): 2**63}, "index places inner chunk (3, 0, 0)"),  # a huge length
        ({(3, 0): ABSENT}, "index places inner chunk (3, 0, 0)"),  # half absent
    ],
)
def test_a_shard_index_that_lies_is_refused(
    tmp_path: Path, change: dict[tuple[int, int], int], reason: str
) -> None:
    source = store(tmp_path / "x.zarr", pixels(), sharded=True)
    edit_index(source / "c/1/0/0", change)
    (tmp_path / "out").mkdir()
    refused(source, tmp_path / "out", "shard c/1/0/0", reason)


def test_a_shard_shorter_than_its_index_is_refused(tmp_path: Path) -> None:
    source = store(tmp_path / "x.zarr", pixels(), sharded=True)
    (source / "c/1/0/0").write_bytes(b"short")
    (tmp_path / "out").mkdir()
    refused(source, tmp_path / "out", "shard c/1/0/0", "less than its 164-byte index")


def test_a_shard_index_failing_its_checksum_is_refused(tmp_path: Path) -> None:
    source = store(tmp_path / "x.zarr", pixels(), sharded=True)
    shard = source / "c/1/0/0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 1
    shard.write_bytes(bytes(data))
    (tmp_path / "out").mkdir()
    refused(source, tmp_path / "out", "shard c/1/0/0", "fails its CRC-32C check")


# --------------------------------------------------------------------- image folders


def image_folder(folder: Path, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    from PIL import Image

    for index, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 10 * index + i, np.uint8)).save(
                folder / name / f"{i}.png"
            )
    return folder


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    pytest.importorskip("PIL")
    image_folder(tmp_path / "secret", ("private",))
    (tmp_path / "out").mkdir()
    return image_folder(tmp_path / "in"), tmp_path / "out"


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("bird", "../secret/private"),  # a class folder
        ("cat/9.png", "../../secret/private/0.png"),  # an image
        ("cat/9.png", "../../in/../secret/private/0.png"),  # climbs out through the root
        ("cat/9.png", "../../secret/private/gone.png"),  # dangling, outside
    ],
)
def test_an_image_folder_link_leading_out_is_refused(
    folders: tuple[Path, Path], link: str, target: str
) -> None:
    source, out = folders
    relink(source / link, target)
    refused(source, out, f"in/{link}")


def test_a_flat_folder_image_linked_out_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    image_folder(tmp_path / "secret", ("private",))
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(tmp_path / "secret/private/0.png", source / "a.png")
    os.symlink("../secret/private/1.png", source / "b.png")
    (tmp_path / "out").mkdir()
    refused(source, tmp_path / "out", "in/b.png")


def test_an_image_folder_link_that_stays_inside_is_read(folders: tuple[Path, Path]) -> None:
    """Decided: a class folder linking to another class folder of the root is a class."""
    source, out = folders
    os.symlink("cat", source / "bird")
    result = cli(["convert", source, "-o", out / "x.npy", "-q"])
    assert result.code == 0, result.describe()
    assert np.load(out / "x.labels.npy").tolist() == [0] * 3 + [1] * 3 + [2] * 3


# ------------------------------------------------------- HDF5 outputs: params/ arrays


@pytest.fixture
def per_image_output(tmp_path: Path) -> Path:
    """An HDF5 output with per-image parameters, stored as ``params/`` arrays."""
    source = tmp_path / "in.npy"
    np.save(source, pixels())
    out = tmp_path / "out.h5"
    result = cli(
        ["convert", source, "-o", out, "-s", "range", "--from-data", "--scope", "image", "-q"]
    )
    assert result.code == 0, result.describe()
    return out


def hostile_params(output: Path, kind: str) -> None:
    """Make ``params/offset`` read from a file beside the output: its raw bytes (external
    storage), or a dataset of another HDF5 file (external link, virtual dataset)."""
    with h5py.File(output, "r") as handle:
        values = handle["params/offset"][()]
    raw = output.with_name("secret.bin")
    np.full_like(values, 3.0).tofile(raw)
    other = output.with_name("secret.h5")
    with h5py.File(other, "w") as handle:
        handle["offset"] = np.full_like(values, 3.0)
    with h5py.File(output, "r+") as handle:
        del handle["params/offset"]
        if kind == "external storage":
            handle["params"].create_dataset(
                "offset",
                shape=values.shape,
                dtype=values.dtype,
                external=[(str(raw), 0, values.nbytes)],
            )
        elif kind == "external link":
            handle["params/offset"] = h5py.ExternalLink(str(other), "offset")
        else:
            layout = h5py.VirtualLayout(values.shape, values.dtype)
            layout[:] = h5py.VirtualSource(str(other), "offset", shape=values.shape)
            handle["params"].create_virtual_dataset("offset", layout)


KINDS = {
    "external storage": "stores its data in another file",
    "external link": "is an external link",
    "virtual dataset": "is a virtual dataset",
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_invert_refuses_params_stored_outside_the_output(
    tmp_path: Path, per_image_output: Path, kind: str
) -> None:
    hostile_params(per_image_output, kind)
    (tmp_path / "back").mkdir()
    result = cli(["invert", per_image_output, "-o", tmp_path / "back" / "x.npy"])
    line = assert_clean_failure(result, names=["out.h5"], reasons=[KINDS[kind]])
    assert "params/offset" in line
    assert list((tmp_path / "back").iterdir()) == []


@pytest.mark.parametrize("kind", list(KINDS))
def test_open_and_scaler_load_refuse_params_stored_outside_the_output(
    per_image_output: Path, kind: str
) -> None:
    hostile_params(per_image_output, kind)
    with pytest.raises(ParamsError, match=f"out.h5: parameter array 'params/offset' {KINDS[kind]}"):
        pixscale.open(per_image_output)
    with pytest.raises(ParamsError, match=KINDS[kind]):
        pixscale.Scaler.load(per_image_output)


def test_a_params_group_linked_to_another_file_is_refused(
    tmp_path: Path, per_image_output: Path
) -> None:
    other = tmp_path / "secret.h5"
    with h5py.File(per_image_output, "r") as handle, h5py.File(other, "w") as copy:
        handle.copy("params", copy)
    with h5py.File(per_image_output, "r+") as handle:
        del handle["params"]
        handle["params"] = h5py.ExternalLink(str(other), "params")
    result = cli(["verify", per_image_output])
    assert_clean_failure(result, names=["out.h5"], reasons=["'params' is an external link"])


# ------------------------------------------- HDF5 outputs: shards of a virtual ``images``


def virtual_output(tmp_path: Path, shards: Path, external: bool = False) -> Path:
    """An output as the dask engine wrote them: ``d.h5`` whose ``images`` maps two shards
    of ``d.h5.shards/`` (the folder at ``shards``); with ``external``, the second shard
    keeps its ``images`` in a raw file beside the output instead."""
    source = tmp_path / "source.npy"
    np.save(source, pixels())
    local = tmp_path / "local.h5"
    assert cli(["convert", source, "-o", local, "-q"]).code == 0
    with h5py.File(local, "r") as handle:
        images = handle["images"][()]
        attrs = dict(handle.attrs)
    local.unlink()
    shards.mkdir()
    layout = h5py.VirtualLayout(images.shape, "<f4")
    for part, start in enumerate((0, 15)):
        values = images[start : start + 15]
        name = f"d.h5.shards/part-{part}.h5"
        with h5py.File(shards / f"part-{part}.h5", "w") as handle:
            if external and part == 1:
                raw = tmp_path / "secret.bin"
                np.full_like(values, 0.5).tofile(raw)
                handle.create_dataset(
                    "images", values.shape, "<f4", external=[(str(raw), 0, values.nbytes)]
                )
            else:
                handle["images"] = values
        layout[start : start + len(values)] = h5py.VirtualSource(name, "images", shape=values.shape)
    out = tmp_path / "d.h5"
    with h5py.File(out, "w") as handle:
        handle.create_virtual_dataset("images", layout)
        handle.attrs.update(attrs)
    if shards != tmp_path / "d.h5.shards":
        os.symlink(shards, tmp_path / "d.h5.shards")
    return out


def test_a_virtual_output_whose_shards_folder_leads_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    output = virtual_output(tmp_path / "out", tmp_path / "elsewhere" / "shards")
    result = cli(["invert", output, "-o", tmp_path / "back.npy"])
    assert_clean_failure(result, names=["d.h5.shards"], reasons=[LEADS_OUT])
    assert not (tmp_path / "back.npy").exists()


def test_a_virtual_output_whose_shard_uses_external_storage_is_refused(tmp_path: Path) -> None:
    output = virtual_output(tmp_path, tmp_path / "d.h5.shards", external=True)
    result = cli(["invert", output, "-o", tmp_path / "back.npy"])
    assert_clean_failure(result, names=["part-1.h5"], reasons=["stores its data in another file"])
    assert not (tmp_path / "back.npy").exists()


def test_an_output_store_with_a_chunk_linked_out_is_refused_when_opened(tmp_path: Path) -> None:
    """``pixscale.open`` of a .zarr output reads through the same rule as a Zarr input."""
    pytest.importorskip("zarr")
    ours, theirs = tmp_path / "ours.zarr", tmp_path / "theirs.zarr"
    np.save(tmp_path / "a.npy", pixels(1))
    np.save(tmp_path / "b.npy", pixels(2))
    assert cli(["convert", tmp_path / "a.npy", "-o", ours]).code == 0
    assert cli(["convert", tmp_path / "b.npy", "-o", theirs]).code == 0
    chunk = next(p for p in (ours / "images").iterdir() if p.name.startswith("c"))
    relink(chunk, str(theirs / "images" / chunk.name))
    with pytest.raises(pixscale.errors.InputError, match="is a link leading outside"):
        pixscale.open(ours)[0]
