"""16-bit greyscale images (PNG, TIFF) in folders and archives: read as uint16, exactly;
16-bit colour (which Pillow would read at 8 bits), mixed depths and --mode refused."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import pixscale
from image_datasets import assert_clean_error, cli, write_zip

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def twelve_bit(sample: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Real digits spread over 12 bits, every low bit used."""
    x = sample[0][:24].astype(np.uint16)
    return x * 16 + x % 16


def encode16(image: np.ndarray, fmt: str) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt)
    return buffer.getvalue()


def png16_colour(values: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (colour type 2, depth 16), written by hand: Pillow cannot."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    height, width, _ = values.shape
    rows = b"".join(b"\0" + values[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_a_folder_of_16_bit_images_is_read_exactly_and_inverts_to_uint16(
    tmp_path: Path, twelve_bit: np.ndarray, fmt: str
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, image in enumerate(twelve_bit):
        (folder / f"{i:03d}.{fmt.lower()}").write_bytes(encode16(image, fmt))
    out = tmp_path / "out.h5"
    code, stderr = cli("convert", folder, "-o", out, "--bits", "12", "-s", "standardize")
    assert code == 0, stderr
    with pixscale.open(out) as data:
        x = twelve_bit.astype(np.float64)
        want = ((x - x.mean()) / x.std()).astype(np.float32)
        assert data.record["source"]["dtype"] == "uint16"
        assert np.abs(data[:].astype(np.float64) - want).max() < 1e-6
        # bit for bit against the record's own float64 parameters
        low, span = data.params.source_low, data.params.source_span
        exact = ((x - low) * data.params.target_span / span + data.params.target_low).astype(
            np.float32
        )
        assert np.array_equal(data[:].view(np.uint32), exact.view(np.uint32))
    code, stderr = cli("invert", out, "-o", tmp_path / "back.npy", "--verify", folder)
    assert code == 0, stderr
    back = np.load(tmp_path / "back.npy")
    assert back.dtype == np.uint16 and np.array_equal(back, twelve_bit)


def test_16_bit_images_in_a_zip_are_read_as_uint16(tmp_path: Path, twelve_bit: np.ndarray) -> None:
    members = [(f"scans/{i:03d}.png", encode16(image, "PNG")) for i, image in enumerate(twelve_bit)]
    archive = write_zip(tmp_path / "scans.zip", members)
    out = tmp_path / "zip.npy"
    code, stderr = cli("convert", archive, "-o", out)
    assert code == 0, stderr
    want = (twelve_bit.astype(np.float64) / 65535).astype(np.float32)
    assert np.array_equal(np.load(out).view(np.uint32), want.view(np.uint32))


def test_16_bit_colour_mixed_depths_and_mode_are_refused(
    tmp_path: Path, twelve_bit: np.ndarray
) -> None:
    colour = tmp_path / "colour"
    colour.mkdir()
    rgb = np.stack([twelve_bit[0]] * 3, axis=-1) * 16
    (colour / "a.png").write_bytes(png16_colour(rgb))
    code, stderr = cli("convert", colour, "-o", tmp_path / "c.h5")
    assert_clean_error(code, stderr, "a.png", "16-bit colour image")

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.png").write_bytes(encode16(twelve_bit[0], "PNG"))
    Image.fromarray((twelve_bit[1] // 16).astype(np.uint8)).save(mixed / "b.png")
    code, stderr = cli("convert", mixed, "-o", tmp_path / "m.h5")
    assert_clean_error(code, stderr, "mixes 16-bit (a.png) and 8-bit (b.png)")

    code, stderr = cli("convert", mixed, "-o", tmp_path / "m.h5", "--mode", "L")
    assert_clean_error(code, stderr, "a.png", "--mode would convert them to 8 bits")

    members = [
        ("s/a.png", encode16(twelve_bit[0], "PNG")),
        ("s/b.png", (mixed / "b.png").read_bytes()),
    ]
    archive = write_zip(tmp_path / "mixed.zip", members)
    code, stderr = cli("convert", archive, "-o", tmp_path / "z.h5")
    assert_clean_error(code, stderr, "mixed.zip:s/b.png", "8-bit image, the others are 16-bit")
    for out in ("c.h5", "m.h5", "z.h5"):
        assert not (tmp_path / out).exists()
