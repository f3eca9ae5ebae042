"""Plain 8-bit PNGs decoded by libpng (imagecodecs) give Pillow's pixels exactly; every
other PNG, and a file libpng refuses, is decoded by Pillow as before."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from image_datasets import cli, hub_parquet, unit
from pixscale.sources import plain_png
from pixscale.sources.pictures import to_pixels

Image = pytest.importorskip("PIL.Image")
PngImagePlugin = pytest.importorskip("PIL.PngImagePlugin")
pytest.importorskip("imagecodecs")

RNG = np.random.default_rng(7)
LIMIT = 1 << 20


def png(image: object, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)  # type: ignore[attr-defined]
    return buffer.getvalue()


def with_chunk(data: bytes, kind: bytes, body: bytes) -> bytes:
    """``data`` with a chunk inserted right after IHDR (8 + 25 bytes)."""
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return data[:33] + chunk + data[33:]


def pillow_pixels(data: bytes, mode: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert(mode))


GREY = Image.fromarray(RNG.integers(0, 256, (23, 31), dtype=np.uint8))
COLOUR = Image.fromarray(RNG.integers(0, 256, (23, 31, 3), dtype=np.uint8))
TEXT = PngImagePlugin.PngInfo()
TEXT.add_text("Comment", "made by a test")

PLAIN = {
    "grey": (png(GREY), "L"),
    "colour": (png(COLOUR), "RGB"),
    "grey, stored": (png(GREY, compress_level=0), "L"),
    "colour, optimized": (png(COLOUR, optimize=True), "RGB"),
    "grey with text": (png(GREY, pnginfo=TEXT), "L"),
    "colour with gamma 0.2": (with_chunk(png(COLOUR), b"gAMA", struct.pack(">I", 20000)), "RGB"),
    "colour with sRGB": (with_chunk(png(COLOUR), b"sRGB", b"\x00"), "RGB"),
    "grey with gamma 1.0": (with_chunk(png(GREY), b"gAMA", struct.pack(">I", 100000)), "L"),
}
NOT_PLAIN = {
    "palette": (png(GREY.convert("P")), "L"),
    "1-bit": (png(GREY.convert("1")), "L"),
    "grey with alpha": (png(GREY.convert("LA")), "L"),
    "colour with alpha": (png(COLOUR.convert("RGBA")), "RGB"),
    "grey with a transparent value": (png(GREY, transparency=3), "L"),
    "colour with a transparent value": (png(COLOUR, transparency=(1, 2, 3)), "RGB"),
    "grey read as colour": (png(GREY), "RGB"),
    "colour read as grey": (png(COLOUR), "L"),
}


@pytest.mark.parametrize("name", PLAIN)
def test_a_plain_png_is_decoded_by_libpng_to_pillows_pixels(name: str) -> None:
    data, mode = PLAIN[name]
    with Image.open(io.BytesIO(data)) as image:
        pixels = plain_png.plain_png_pixels(image, mode, LIMIT)
    assert pixels is not None, "libpng was not used"
    assert pixels.dtype == np.uint8
    assert np.array_equal(pixels, pillow_pixels(data, mode))


@pytest.mark.parametrize("name", NOT_PLAIN)
def test_any_other_png_is_left_to_pillow(name: str) -> None:
    data, mode = NOT_PLAIN[name]
    with Image.open(io.BytesIO(data)) as image:
        assert plain_png.plain_png_pixels(image, mode, LIMIT) is None


def test_a_png_libpng_refuses_is_decoded_by_pillow_as_before() -> None:
    data = bytearray(png(GREY))
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    data[idat + 4 + length] ^= 1  # IDAT's CRC: libpng refuses it, Pillow does not check it
    with Image.open(io.BytesIO(bytes(data))) as image:
        assert plain_png.plain_png_pixels(image, "L", LIMIT) is None
        assert np.array_equal(to_pixels(image, "L"), np.asarray(GREY))


def test_a_png_over_the_size_limit_is_left_to_pillow() -> None:
    data = PLAIN["grey"][0]
    with Image.open(io.BytesIO(data)) as image:
        assert plain_png.plain_png_pixels(image, "L", len(data) - 1) is None
        assert np.array_equal(to_pixels(image, "L"), np.asarray(GREY))
    with Image.open(io.BytesIO(data)) as image:
        assert plain_png.plain_png_pixels(image, "L", len(data)) is not None


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


ROWS = b"".join(b"\x01" + bytes((x * 7 + y * 13) * 31 % 256 for x in range(8)) for y in range(6))


def grey_png(before: bytes = b"", after: bytes = b"", data: bytes | None = None) -> bytes:
    """An 8×6 greyscale PNG with chunks ``before`` and ``after`` its image data."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 6, 8, 0, 0, 0, 0))
    image = chunk(b"IDAT", zlib.compress(ROWS) if data is None else data)
    return b"\x89PNG\r\n\x1a\n" + header + before + image + after + chunk(b"IEND", b"")


def frame_control(width: int, height: int, x: int, y: int) -> bytes:
    return chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, width, height, x, y, 1, 10, 0, 0))


def zlib_bomb() -> bytes:
    packer = zlib.compressobj(9)
    zeros = b"".join(packer.compress(bytes(1 << 20)) for _ in range(64))
    return packer.compress(ROWS) + zeros + packer.flush()


HOSTILE = {
    # Pillow places the image one row down: its pixels, not libpng's
    "frame control moving the image": grey_png(before=frame_control(8, 5, 0, 1)),
    "animation of one smaller frame": grey_png(
        before=chunk(b"acTL", struct.pack(">II", 1, 0)) + frame_control(4, 3, 0, 0)
    ),
    # Pillow reads the chunks after the image data, and refuses these
    "truncated gAMA after the image": grey_png(after=chunk(b"gAMA", b"\0")),
    "zTXt of an unknown method after the image": grey_png(
        after=chunk(b"zTXt", b"k\0\x01" + zlib.compress(b"v"))
    ),
    "text after the image": grey_png(after=chunk(b"tEXt", b"k\0v")),
    # 64 MiB of zeros inflated after the rows: more data than any 8×6 image needs
    "zlib bomb in the image data": grey_png(data=zlib_bomb()),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_png_libpng_could_read_otherwise_than_pillow_is_left_to_pillow(name: str) -> None:
    data = HOSTILE[name]
    with Image.open(io.BytesIO(data)) as image:
        assert plain_png.plain_png_pixels(image, "L", LIMIT) is None


def test_the_file_is_read_up_to_iend_only() -> None:
    data = grey_png() + bytes(1 << 20)  # a megabyte after IEND
    with Image.open(io.BytesIO(data)) as image:
        pixels = plain_png.plain_png_pixels(image, "L", len(grey_png()))
    assert pixels is not None
    assert np.array_equal(pixels, pillow_pixels(grey_png(), "L"))


def test_the_cli_gives_pillows_verdicts_and_no_libpng_warning(tmp_path: Path) -> None:
    folder = tmp_path / "pngs"
    folder.mkdir()
    (folder / "a.png").write_bytes(grey_png(before=chunk(b"PLTE", bytes(range(12)))))
    (folder / "b.png").write_bytes(grey_png(before=frame_control(8, 5, 0, 1)))
    code, stderr = cli("convert", folder, "-o", tmp_path / "out.h5", "-q")
    assert (code, stderr) == (0, "")
    with h5py.File(tmp_path / "out.h5") as out:
        images = out["images"][:]
    assert np.array_equal(images[0], unit(pillow_pixels(grey_png(), "L")))
    moved = HOSTILE["frame control moving the image"]
    assert np.array_equal(images[1], unit(pillow_pixels(moved, "L")))
    (folder / "c.png").write_bytes(HOSTILE["truncated gAMA after the image"])
    code, stderr = cli("convert", folder, "-o", tmp_path / "refused.h5", "-q")
    assert code == 1 and "c.png: cannot decode image (Truncated gAMA chunk)" in stderr
    assert not (tmp_path / "refused.h5").exists()


def test_without_imagecodecs_pillow_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plain_png, "png_decoder", lambda: None)
    with Image.open(io.BytesIO(PLAIN["grey"][0])) as image:
        assert plain_png.plain_png_pixels(image, "L", LIMIT) is None
        assert np.array_equal(to_pixels(image, "L"), np.asarray(GREY))


def test_mnist_as_png_decodes_the_same_by_libpng_and_pillow(
    mnist_train: tuple[np.ndarray, np.ndarray],
) -> None:
    images = mnist_train[0][:3000]
    for image in images:
        data = png(Image.fromarray(image))
        with Image.open(io.BytesIO(data)) as opened:
            pixels = plain_png.plain_png_pixels(opened, "L", LIMIT)
        assert pixels is not None and np.array_equal(pixels, image)


def test_a_parquet_converts_byte_identically_with_and_without_libpng(
    tmp_path: Path, sample: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = sample
    source = hub_parquet(tmp_path / "train.parquet", images, labels)
    assert cli("convert", source, "-o", tmp_path / "libpng.h5", "-q")[0] == 0
    monkeypatch.setattr(plain_png, "png_decoder", lambda: None)
    assert cli("convert", source, "-o", tmp_path / "pillow.h5", "-q")[0] == 0
    with h5py.File(tmp_path / "libpng.h5") as fast, h5py.File(tmp_path / "pillow.h5") as slow:
        assert np.array_equal(fast["images"][:], slow["images"][:])
        assert np.array_equal(fast["images"][:], unit(images))
