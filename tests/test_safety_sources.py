"""Readers facing hostile or odd inputs: only bytes inside the named file are read, sizes
are checked against the bytes present before anything is allocated, and every refusal is
an InputError naming the input."""

from __future__ import annotations

import gzip
import io
import os
import signal
import struct
import threading
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_helpers import run_cli, run_process
from pixscale.core.stats import PixelSums
from pixscale.errors import InputError
from pixscale.sources import open_source
from pixscale.sources.base import MAX_IMAGE_VALUES, MAX_LABELS_BYTES
from pixscale.sources.stdin import SLACK, spooled

SHAPE = (10, 8, 8)


def pixels(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def read_all(path: Path, **options: object) -> np.ndarray:
    source = open_source(path, **options)  # type: ignore[arg-type]
    return np.concatenate(list(source.chunks(7)))


def idx_header(*shape: int) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)


def npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def sparse_npy(path: Path, shape: tuple[int, ...], descr: str = "|u1") -> Path:
    """A .npy of ``shape`` whose data is a hole: large on paper, nothing on the disk."""
    header = npy_header(shape, descr)
    with path.open("wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + int(np.prod(shape)) * np.dtype(descr).itemsize)
    return path


def cli(*args: object, input: bytes | None = None) -> tuple[int, str]:
    result = run_cli(*args, input=input)
    return result.exit_code, result.stderr


def assert_one_line_error(code: int, stderr: str, *texts: str) -> str:
    lines = stderr.splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), stderr
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- HDF5


@pytest.fixture
def elsewhere(tmp_path: Path) -> tuple[Path, Path]:
    """A raw file and an HDF5 file outside the input folder: never to be read."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    raw = folder / "secret.bin"
    raw.write_bytes(pixels().tobytes())
    other = folder / "private.h5"
    with h5py.File(other, "w") as handle:
        handle["data"] = pixels()
        handle["labels"] = np.arange(SHAPE[0]) % 10
        handle["group/data"] = pixels()
    return raw, other


def hdf5(tmp_path: Path, **items: object) -> Path:
    path = tmp_path / "input.h5"
    with h5py.File(path, "w") as handle:
        for name, item in items.items():
            handle[name.replace("__", "/")] = item
    return path


def test_hdf5_external_storage_is_refused(tmp_path: Path, elsewhere: tuple[Path, Path]) -> None:
    raw, _ = elsewhere
    path = tmp_path / "input.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", shape=SHAPE, dtype="u1", external=[(str(raw), 0, 640)])
    for key in (None, "images"):
        with pytest.raises(InputError, match="'images' stores its data in another file"):
            open_source(path, key=key)


def test_hdf5_virtual_dataset_is_refused(tmp_path: Path, elsewhere: tuple[Path, Path]) -> None:
    _, other = elsewhere
    path = tmp_path / "input.h5"
    with h5py.File(path, "w") as handle:
        layout = h5py.VirtualLayout(SHAPE, "u1")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=SHAPE)
        handle.create_virtual_dataset("images", layout)
    with pytest.raises(InputError, match=r"input\.h5: dataset 'images' is a virtual dataset"):
        open_source(path)


@pytest.mark.parametrize(
    "links",
    [
        {"images": ("external", "data")},
        {"images": ("soft", "/hop"), "hop": ("external", "data")},
        {"folder": ("external", "group"), "images": ("soft", "folder/data")},
    ],
    ids=["external link", "soft link to an external link", "through an external group"],
)
def test_hdf5_links_out_of_the_file_are_refused(
    tmp_path: Path, elsewhere: tuple[Path, Path], links: dict[str, tuple[str, str]]
) -> None:
    _, other = elsewhere
    path = tmp_path / "input.h5"
    with h5py.File(path, "w") as handle:
        for name, (kind, target) in links.items():
            made = h5py.ExternalLink(str(other), target) if kind == "external" else None
            handle[name] = made if made is not None else h5py.SoftLink(target)
    with pytest.raises(InputError, match=r"input\.h5: dataset 'images' is an external link"):
        open_source(path, key="images")


def test_hdf5_soft_link_cycle_is_refused(tmp_path: Path) -> None:
    path = hdf5(tmp_path, a=h5py.SoftLink("/b"), b=h5py.SoftLink("/a"))
    with pytest.raises(InputError, match="more than 16 soft links"):
        open_source(path, key="a")


def test_hdf5_soft_links_inside_the_file_are_followed(tmp_path: Path) -> None:
    path = hdf5(
        tmp_path,
        store__x=pixels(),
        store__y=np.arange(SHAPE[0]) % 3,
        images=h5py.SoftLink("/store/x"),
        labels=h5py.SoftLink("store/y"),
    )
    source = open_source(path, key="images")
    assert np.array_equal(read_all(path, key="images"), pixels())
    assert source.labels is not None and source.labels.values.tolist() == [
        0,
        1,
        2,
        0,
        1,
        2,
        0,
        1,
        2,
        0,
    ]


def test_hdf5_labels_through_an_external_link_are_refused(
    tmp_path: Path, elsewhere: tuple[Path, Path]
) -> None:
    _, other = elsewhere
    path = hdf5(tmp_path, images=pixels(), labels=h5py.ExternalLink(str(other), "labels"))
    with pytest.raises(InputError, match="labels 'labels' is an external link"):
        open_source(path)


def test_hdf5_discovery_does_not_follow_external_links(
    tmp_path: Path, elsewhere: tuple[Path, Path]
) -> None:
    _, other = elsewhere
    path = hdf5(tmp_path, images=h5py.ExternalLink(str(other), "data"))
    with pytest.raises(InputError, match=r"none \(external links not followed: images\)"):
        open_source(path)


def test_hdf5_command_line_error_is_one_line(tmp_path: Path, elsewhere: tuple[Path, Path]) -> None:
    _, other = elsewhere
    path = hdf5(tmp_path, images=pixels(), labels=h5py.ExternalLink(str(other), "labels"))
    assert_one_line_error(*cli("info", path), "input.h5", "refusing to read outside the input")


@pytest.mark.parametrize("chunked", [True, False])
def test_hdf5_unallocated_data_is_refused(tmp_path: Path, chunked: bool) -> None:
    """A few KB that would read back as megabytes of fill values."""
    path = tmp_path / "hollow.h5"
    count = 1 << 20
    with h5py.File(path, "w") as handle:
        handle["images"] = np.zeros((count, 1, 1), np.uint8)
        handle.create_dataset(
            "labels", shape=(count,), dtype="i8", chunks=(1 << 16,) if chunked else None
        )
    what = "chunks" if chunked else "bytes"
    with pytest.raises(
        InputError, match=f"labels 'labels' stores 0 of its .* {what}; .*unallocated"
    ):
        open_source(path)


def test_hdf5_unallocated_images_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "hollow.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", shape=(1 << 20, 2, 2), dtype="u1", chunks=(1 << 16, 2, 2))
        handle["images"][:10] = 1
    with pytest.raises(InputError, match="stores 1 of its 16 chunks"):
        open_source(path)


def test_hdf5_chunks_too_large_to_decompress_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "big-chunks.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset(
            "images",
            shape=(64, 4096, 4096),
            dtype="u1",
            chunks=(32, 4096, 4096),
            compression="gzip",
        )
    with pytest.raises(InputError, match="chunks of 536,870,912 bytes, over the limit"):
        open_source(path)


# --------------------------------------------------------------------------- image folders

Image = pytest.importorskip("PIL.Image")


def folder_of(tmp_path: Path, *images: object, name: str = "pictures") -> Path:
    """A folder holding each (file name, PIL image) pair."""
    folder = tmp_path / name
    folder.mkdir()
    for file_name, image in images:  # type: ignore[misc]
        image.save(folder / file_name)
    return folder


def grey(seed: int = 0) -> object:
    return Image.fromarray(pixels((8, 8), seed))


def colour(seed: int = 0) -> object:
    return Image.fromarray(pixels((8, 8, 3), seed))


@pytest.mark.parametrize(
    ("name", "array", "message"),
    [
        ("b.tif", pixels((8, 8)).astype(np.int32) * 65537, r"32-bit integer image \(mode I\)"),
        ("b.tif", pixels((8, 8)).astype(np.float32) / 255, r"32-bit float image \(mode F\)"),
    ],
)
@pytest.mark.parametrize("mode", [None, "L", "RGB"])
def test_wide_images_are_refused(
    tmp_path: Path, name: str, array: np.ndarray, message: str, mode: str | None
) -> None:
    folder = folder_of(tmp_path, ("a.png", grey()), (name, Image.fromarray(array)))
    wanted = f"{name}: {message}: only 8-bit images and 16-bit greyscale images are read"
    with pytest.raises(InputError, match=wanted):
        open_source(folder, mode=mode)


@pytest.mark.parametrize("mode", [None, "L", "RGB"])
def test_16_bit_images_beside_8_bit_ones_or_with_a_mode_are_refused(
    tmp_path: Path, mode: str | None
) -> None:
    wide = Image.fromarray(pixels((8, 8)).astype(np.uint16) * 257)
    folder = folder_of(tmp_path, ("a.png", grey()), ("b.png", wide))
    wanted = (
        r"mixes 16-bit \(b.png\) and 8-bit \(a.png\) images"
        if mode is None
        else "b.png: 16-bit greyscale images are read as they are; --mode would convert them"
    )
    with pytest.raises(InputError, match=wanted):
        open_source(folder, mode=mode)


@pytest.mark.parametrize(
    ("mode", "drop"),
    [("RGBA", "RGB"), ("LA", "L")],
)
def test_alpha_needs_a_mode_that_drops_it(tmp_path: Path, mode: str, drop: str) -> None:
    base = pixels((8, 8, 4))[..., : len(mode)]
    image = Image.fromarray(base, mode)
    folder = folder_of(tmp_path, ("a.png", image))
    with pytest.raises(InputError, match=f"has an alpha channel .*; use --mode {drop} to drop it"):
        open_source(folder)
    assert np.array_equal(read_all(folder, mode=drop)[0], base[..., :-1].squeeze())


def test_palette_transparency_needs_a_mode(tmp_path: Path) -> None:
    image = colour().convert("P")  # type: ignore[attr-defined]
    image.info["transparency"] = 0
    folder = folder_of(tmp_path, ("a.png", image))
    with pytest.raises(InputError, match=r"has transparency \(mode P\); use --mode RGB"):
        open_source(folder)
    assert read_all(folder, mode="RGB").shape == (1, 8, 8, 3)


def test_mixed_greyscale_and_colour_needs_a_mode(tmp_path: Path) -> None:
    folder = folder_of(tmp_path, ("a.png", grey()), ("b.png", colour()))
    with pytest.raises(InputError, match=r"mixes greyscale \(a.png\) and colour \(b.png\)"):
        open_source(folder)
    assert read_all(folder, mode="L").shape == (2, 8, 8)
    assert np.array_equal(read_all(folder, mode="RGB")[1], pixels((8, 8, 3)))


def test_palette_and_bilevel_images_convert(tmp_path: Path) -> None:
    palette = colour().convert("P")  # type: ignore[attr-defined]
    bits = pixels((8, 8)) > 127
    folder = folder_of(tmp_path, ("a.png", Image.fromarray(bits)), name="bits")
    assert np.array_equal(read_all(folder)[0], bits.astype(np.uint8) * 255)
    folder = folder_of(tmp_path, ("a.png", palette), name="palette")
    assert np.array_equal(read_all(folder)[0], np.asarray(palette.convert("RGB")))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def claimed_png(width: int, height: int) -> bytes:
    """A few hundred bytes: an 8-bit greyscale header for width×height and a few rows."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes(4 * (width + 1)), 9)
    signature = b"\x89PNG\r\n\x1a\n"
    return (
        signature + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (9000, r"declares a 9000×9000 image \(81,000,000 pixels\), over the limit"),
        (12000, r"declares an image of 144,000,000 pixels, over the limit"),
        (40000, r"declares an image of 1,600,000,000 pixels, over the limit"),
    ],
    ids=["over pixscale's limit", "Pillow's warning", "Pillow's error"],
)
def test_declared_image_sizes_are_checked_before_decoding(
    tmp_path: Path, side: int, message: str
) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "a.png").write_bytes(claimed_png(side, side))
    with pytest.raises(InputError, match=rf"a\.png: {message}"):
        open_source(folder)


def test_decompression_bomb_warning_prints_no_traceback(tmp_path: Path) -> None:
    """Outside pytest the warning is not an error: it must still end as one clean line."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "a.png").write_bytes(claimed_png(12000, 12000))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = run_process(["info", folder], env=env, timeout=60)
    assert_one_line_error(done.returncode, done.stderr, "a.png: declares an image of 144,000,000")


# --------------------------------------------------------------------------- sizes


def test_gzip_idx_claiming_more_than_deflate_can_hold(tmp_path: Path) -> None:
    """59 bytes of gzip claiming 16 GB: refused from the sizes alone, before any read."""
    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_header(1000, 4096, 4096) + bytes(4096), mtime=0))
    assert path.stat().st_size < 100
    with pytest.raises(InputError, match="deflate expands at most 1032:1"):
        open_source(path)


def test_gzip_idx_with_a_forged_trailer_under_4_gib(tmp_path: Path) -> None:
    """The trailer says the 10 MB are there; the compressed size says they cannot be."""
    path = tmp_path / "forged-images-idx3-ubyte.gz"
    declared = len(idx_header(10, 1000, 1000)) + 10 * 1000 * 1000
    data = gzip.compress(idx_header(10, 1000, 1000) + bytes(64), mtime=0)
    path.write_bytes(data[:-4] + struct.pack("<I", declared))
    # Either the sizes or the first read (which meets the forged trailer) refuse it.
    forged = "more than the .* compressed bytes of the file can hold|corrupt or truncated gzip"
    with pytest.raises(InputError, match=forged):
        open_source(path)


def test_idx_labels_count_is_checked_before_reading(tmp_path: Path) -> None:
    images = tmp_path / "x-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(idx_header(*SHAPE) + pixels().tobytes()))
    labels = tmp_path / "x-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_header(2_000_000_000) + bytes(64)))
    with pytest.raises(InputError, match="2000000000 labels for 10 images"):
        open_source(images)


def test_images_over_the_size_limit_are_refused(tmp_path: Path) -> None:
    width = MAX_IMAGE_VALUES // 8192
    fits = sparse_npy(tmp_path / "fits.npy", (2, 8192, width))
    assert open_source(fits).image_bytes == MAX_IMAGE_VALUES
    over = sparse_npy(tmp_path / "over.npy", (2, 8192, width + 1))
    with pytest.raises(InputError, match=r"over\.npy: images of shape \(8192, 8193\) hold"):
        open_source(over)


def test_labels_over_the_size_limit_are_refused_before_reading(tmp_path: Path) -> None:
    count = MAX_LABELS_BYTES // 8 + 1
    images = sparse_npy(tmp_path / "x.npy", (count, 1, 1))
    labels = sparse_npy(tmp_path / "y.npy", (count,), "<i8")
    with pytest.raises(InputError, match="labels of 8 bytes are over the limit"):
        open_source(images, labels=labels)


def zero_pixel_inputs(folder: Path) -> Iterator[Path]:
    shape = (5, 0, 28)
    (folder / "a.idx").write_bytes(idx_header(*shape))
    yield folder / "a.idx"
    np.save(folder / "a.npy", np.zeros(shape, np.uint8))
    yield folder / "a.npy"
    np.savez(folder / "a.npz", x=np.zeros(shape, np.uint8))
    yield folder / "a.npz"
    with h5py.File(folder / "a.h5", "w") as handle:
        handle["x"] = np.zeros(shape, np.uint8)
    yield folder / "a.h5"


def test_images_without_pixels_are_refused(tmp_path: Path) -> None:
    for path in zero_pixel_inputs(tmp_path):
        with pytest.raises(InputError, match=r"images of shape \(0, 28\) hold no pixels"):
            open_source(path)


# --------------------------------------------------------------------------- npz


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def patch_headers(path: Path, offset: int, value: bytes) -> None:
    """Overwrite a field at ``offset`` of every local and central header of the archive."""
    data = bytearray(path.read_bytes())
    for signature, base in ((b"PK\x03\x04", 0), (b"PK\x01\x02", 2)):
        start = data.find(signature)
        while start >= 0:
            at = start + base + offset
            data[at : at + len(value)] = value
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))


def test_npz_members_that_are_not_arrays(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "a.npz", {"x.npy": npy_bytes(pixels()), "notes.txt": b"hello"})
    assert open_source(path).shape == SHAPE  # the only array, whatever else is there
    with pytest.raises(InputError, match=r"no array 'notes.txt'; it holds x$"):
        open_source(path, key="notes.txt")


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"])
def test_npz_bzip2_and_lzma_members_are_refused(tmp_path: Path, method: int) -> None:
    """zipfile decompresses these without bounding one read's output: not read."""
    path = write_zip(tmp_path / "a.npz", {"x.npy": npy_bytes(pixels())}, method)
    name = "bzip2" if method == zipfile.ZIP_BZIP2 else "lzma"
    with pytest.raises(InputError, match=f"'x.npy' is compressed with {name}; only stored"):
        open_source(path)


def test_npz_unknown_compression_method_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "a.npz", {"x.npy": npy_bytes(pixels())})
    patch_headers(path, 8, struct.pack("<H", 99))
    with pytest.raises(InputError, match="'x.npy' is compressed with method 99"):
        open_source(path)


def test_npz_encrypted_member_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "a.npz", {"x.npy": npy_bytes(pixels())})
    patch_headers(path, 6, struct.pack("<H", 0x1))
    with pytest.raises(InputError, match="'x.npy' is encrypted"):
        open_source(path)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([object()] * SHAPE[0], dtype=object), "labels must be a 1-D integer array"),
        (np.linspace(0, 1, SHAPE[0]), "labels must be a 1-D integer array, got float64"),
        (np.arange(SHAPE[0] + 1), "11 labels for 10 images"),
    ],
    ids=["pickled objects", "floats", "wrong count"],
)
def test_npz_labels_are_checked_from_their_header(
    tmp_path: Path, labels: np.ndarray, message: str
) -> None:
    path = write_zip(tmp_path / "a.npz", {"x.npy": npy_bytes(pixels()), "y.npy": npy_bytes(labels)})
    with pytest.raises(InputError, match=message):
        open_source(path, key="x")


def test_npz_member_shorter_than_its_header_promises(tmp_path: Path) -> None:
    member = npy_header((1000, 8, 8)) + pixels().tobytes()
    path = write_zip(tmp_path / "a.npz", {"x.npy": member}, zipfile.ZIP_DEFLATED)
    with pytest.raises(InputError, match="truncated: member 'x.npy' holds 768 bytes"):
        open_source(path)


def test_npz_member_claiming_more_than_deflate_can_hold(tmp_path: Path) -> None:
    member = npy_header((1000, 2048, 2048)) + bytes(4096)
    path = write_zip(tmp_path / "a.npz", {"x.npy": member}, zipfile.ZIP_DEFLATED)
    patch_headers(path, 22, struct.pack("<I", 0xFFFFFFF0))  # uncompressed size
    with pytest.raises(InputError, match="compressed bytes of the member 'x.npy' can hold"):
        open_source(path)


# --------------------------------------------------------------------------- special files


def test_fifo_is_not_read(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"pipe\.npy: not a regular file \(a FIFO\)"):
        open_source(fifo)
    np.save(tmp_path / "x.npy", pixels())
    with pytest.raises(InputError, match=r"pipe\.npy: not a regular file"):
        open_source(tmp_path / "x.npy", labels=fifo)


def test_character_device_is_not_read(tmp_path: Path) -> None:
    if not Path(os.devnull).is_char_device():
        pytest.skip(f"{os.devnull} is not a character device here")
    assert_one_line_error(*cli("info", os.devnull), "not a regular file (a character device)")


def test_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", pixels())
    (tmp_path / "link.npy").symlink_to(tmp_path / "x.npy")
    assert np.array_equal(read_all(tmp_path / "link.npy"), pixels())


# --------------------------------------------------------------------------- standard input


class Trickle(io.RawIOBase):
    """A stream of ``head`` then ``filler`` forever, counting what was read from it."""

    def __init__(self, head: bytes, filler: bytes = b"\x00" * 4096) -> None:
        self.head, self.filler, self.served = head, filler, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        view = memoryview(buffer)  # type: ignore[arg-type]
        data = self.head or self.filler
        self.head = b""
        size = min(len(view), len(data))
        view[:size] = data[:size]
        self.served += size
        if self.served > 64 << 20:
            raise AssertionError("read 64 MiB from a stream that should have been refused")
        return size


def test_stdin_of_another_format_is_refused_at_once() -> None:
    stream = Trickle(b"GIF89a not an array")
    with pytest.raises(InputError, match=r"^<stdin>: not an IDX or \.npy stream"):
        with spooled(io.BufferedReader(stream)):
            pass
    assert stream.served < 1 << 20


def test_stdin_declaring_more_than_the_disk_holds_is_refused_at_once() -> None:
    stream = Trickle(npy_header((1 << 20, 1 << 20, 1 << 20)))
    with pytest.raises(
        InputError, match=r"^<stdin>: header declares 1,152,921,504,606,847,104 bytes"
    ):
        with spooled(io.BufferedReader(stream)):
            pass
    assert stream.served < 1 << 20


def test_stdin_sending_more_than_declared_stops_spooling() -> None:
    stream = Trickle(npy_header(SHAPE))
    with pytest.raises(InputError, match=r"^<stdin>: more data than its header declares"):
        with spooled(io.BufferedReader(stream)):
            pass
    assert stream.served < len(npy_header(SHAPE)) + 640 + SLACK + (2 << 20)


def test_stdin_errors_name_stdin_not_the_temporary_file() -> None:
    truncated = npy_header((1000, 8, 8)) + pixels().tobytes()
    with pytest.raises(InputError) as caught:
        with spooled(io.BytesIO(truncated)) as path:
            open_source(path)
    assert str(caught.value).startswith("<stdin>: truncated") and "pixscale-stdin" not in str(
        caught.value
    )


class Stop(Exception):
    pass


def raise_stop(signum: int, frame: object) -> None:
    raise Stop


#: Kernel functions a thread sleeps in while it waits on a pipe (``/proc/…/wchan``).
PIPE_WAITS = ("poll_schedule_timeout", "do_select", "do_sys_poll", "pipe_read", "pipe_wait")


def waiting_on_a_drained_pipe(tid: int, fd: int) -> bool:
    """Whether thread ``tid`` sleeps in the kernel on a pipe and ``fd`` holds no bytes."""
    import fcntl
    import termios

    pending = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
    task = Path(f"/proc/self/task/{tid}")
    state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    wchan = (task / "wchan").read_text()
    return pending == 0 and state == "S" and wchan.startswith(PIPE_WAITS)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
@pytest.mark.skipif(
    not Path(f"/proc/self/task/{threading.get_native_id()}/wchan").exists(),
    reason="needs /proc to see that the main thread is waiting",
)
def test_stdin_spooling_handles_a_signal_sent_to_another_thread() -> None:
    """SIGTERM may land on any thread (numpy's among them); a read blocked on a quiet pipe
    in the main thread must not hold the handler back until more bytes arrive."""
    read_end, write_end = os.pipe()
    os.write(write_end, npy_header((1000, 8, 8)))
    main_thread = threading.get_native_id()

    done = threading.Event()
    blocked = threading.Event()  # set once the main thread was seen waiting for bytes
    forced = threading.Event()  # set when only closing the pipe ended the read

    def other_thread() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not done.is_set():
            if waiting_on_a_drained_pipe(main_thread, read_end):
                blocked.set()
                break
            time.sleep(0.001)
        if blocked.is_set():  # the signal lands on this thread, not on the waiting one
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            if not done.wait(30):
                forced.set()
        os.close(write_end)  # ends a read that missed the signal: the test fails, not hangs

    previous = signal.signal(signal.SIGUSR1, raise_stop)
    helper = threading.Thread(target=other_thread)
    try:
        helper.start()
        with os.fdopen(read_end, "rb") as stream, pytest.raises(Stop), spooled(stream):
            pass
        done.set()
    finally:
        done.set()
        helper.join()
        signal.signal(signal.SIGUSR1, previous)
    assert blocked.is_set(), "the main thread was never seen waiting on the drained pipe"
    assert not forced.is_set(), "the signal was handled only once the pipe closed"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "<stdin>: no data on standard input"),
        (npy_header((1000, 8, 8)) + bytes(64), "<stdin>: truncated"),
        (gzip.compress(npy_header(SHAPE) + pixels().tobytes()), "<stdin>: is a gzip-compressed"),
        (npy_header(SHAPE)[:20], "<stdin>: truncated: the stream ends inside its header"),
    ],
    ids=["empty", "truncated", "gzip npy", "header cut short"],
)
def test_stdin_errors_on_the_command_line(tmp_path: Path, data: bytes, message: str) -> None:
    code, stderr = cli("convert", "-", "-o", tmp_path / "x.npy", input=data)
    assert_one_line_error(code, stderr, message)
    assert not (tmp_path / "x.npy").exists()


def test_gzip_idx_on_stdin_still_converts(tmp_path: Path) -> None:
    data = gzip.compress(idx_header(*SHAPE) + pixels().tobytes())
    code, stderr = cli("convert", "-", "-o", tmp_path / "x.npy", "-q", input=data)
    assert code == 0, stderr
    assert np.array_equal(np.load(tmp_path / "x.npy"), (pixels() / 255.0).astype(np.float32))


# --------------------------------------------------------------------------- statistics


def test_statistics_temporaries_do_not_grow_with_the_image() -> None:
    """The sums take 18 bytes per position; what add() allocates besides is a few MiB."""
    positions = 1 << 23
    chunk = pixels((2, positions))
    sums = PixelSums.empty((positions,))
    tracemalloc.start()
    try:
        sums.add(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"add() allocated {peak >> 20} MiB for {positions >> 20} Mi positions"
    wide = chunk.astype(np.uint64)
    assert np.array_equal(sums.s1, wide.sum(axis=0))
    assert np.array_equal(sums.s2, (wide * wide).sum(axis=0))
    assert np.array_equal(sums.minimum, chunk.min(axis=0))
    assert np.array_equal(sums.maximum, chunk.max(axis=0))
