"""The decoding paths for many small images: one bomb guard per batch, batches sent to the
worker processes as two lists, pixels taken from Pillow's packed bytes. Each must give the
pixels ``np.asarray`` gives, and keep every per-image check."""

from __future__ import annotations

import io
import sys
import warnings

import numpy as np
import pytest

from pixscale.errors import InputError
from pixscale.sources import parallel
from pixscale.sources.parallel import decode_batch, decode_chunks, decode_packed, packed
from pixscale.sources.pictures import Encoded, Expect, read_header, to_pixels
from pixscale.sources.resize import Resize

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

RNG = np.random.default_rng(7)
FORKS = sys.platform.startswith("linux")


def png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if mode is not None:
        image = image.convert(mode)
    image.save(buffer, "PNG")
    return buffer.getvalue()


def grey(width: int, height: int) -> np.ndarray:
    return RNG.integers(0, 256, (height, width), dtype=np.uint8)


def colour(width: int, height: int) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def reference(data: bytes, mode: str, resize: Resize | None = None) -> np.ndarray:
    """What a plain Pillow loop gives: ``convert`` then ``np.asarray``."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        image = image.convert(mode)
        if resize is not None:
            image = image.resize(resize.size, Image.Resampling.BILINEAR)
        return np.asarray(image)


@pytest.mark.parametrize(
    ("pixels", "convert", "mode"),
    [
        (grey(5, 3), None, "L"),
        (colour(5, 3), None, "RGB"),
        (colour(5, 3), "P", "RGB"),
        (grey(5, 3), "1", "L"),
        (colour(5, 3), "RGBA", "RGB"),
        (colour(5, 3), "L", "RGB"),
        (grey(5, 3), None, "RGB"),
    ],
)
def test_to_pixels_equals_asarray(pixels: np.ndarray, convert: str | None, mode: str) -> None:
    """Non-square images, so that a height and width swapped in the reshape would show."""
    data = png(pixels, convert)
    with Image.open(io.BytesIO(data)) as image:
        got = to_pixels(image, mode)
    np.testing.assert_array_equal(got, reference(data, mode))
    assert got.dtype == np.uint8


def test_to_pixels_resized_equals_asarray() -> None:
    data = png(colour(9, 6))
    resize = Resize(4, 7)
    with Image.open(io.BytesIO(data)) as image:
        got = to_pixels(image, "RGB", resize)
    assert got.shape == (7, 4, 3)
    np.testing.assert_array_equal(got, reference(data, "RGB", resize))


def items_of(images: list[np.ndarray]) -> list[Encoded]:
    return [Encoded(f"shard.parquet:row {row}", png(image)) for row, image in enumerate(images)]


def test_decode_batch_pixels_and_order() -> None:
    images = [grey(6, 4) for _ in range(7)]
    out = decode_batch(items_of(images), Expect((6, 4), "L", strict=True))
    np.testing.assert_array_equal(out, np.stack(images))


def test_packed_batch_round_trip() -> None:
    """Two lists, in order; a file-backed item keeps its ``None`` data."""
    batch = [Encoded("a.png"), Encoded("shard.parquet:row 1", b"\x89PNG")]
    origins, data = packed(batch)
    assert origins == ["a.png", "shard.parquet:row 1"]
    assert data == [None, b"\x89PNG"]


def test_decode_packed_reads_files_and_bytes(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    first, second = grey(3, 2), grey(3, 2)
    (folder / "a.png").write_bytes(png(first))
    batch = [Encoded(str(folder / "a.png")), Encoded("b", png(second))]
    out = decode_packed(*packed(batch), Expect((3, 2), "L", strict=True))
    np.testing.assert_array_equal(out, np.stack([first, second]))


@pytest.fixture
def small_bomb_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's bomb threshold at 1,000 pixels: a 40×40 image warns, a 50×50 one errors."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)


@pytest.mark.parametrize("side", [40, 50])
@pytest.mark.usefixtures("small_bomb_limit")
def test_bomb_in_a_batch_named_and_filters_restored(side: int) -> None:
    """The guard covers every image of the batch, not only the first, and is gone after."""
    images = [grey(20, 20), grey(20, 20), grey(side, side), grey(20, 20)]
    filters = list(warnings.filters)
    with pytest.raises(InputError, match=r"row 2: declares an image of .* \(decompression bomb"):
        decode_batch(items_of(images), Expect((20, 20), "L", strict=True))
    assert warnings.filters == filters


@pytest.mark.usefixtures("small_bomb_limit")
def test_bomb_warning_outside_a_guard_is_not_an_error() -> None:
    """``read_header`` relies on its caller's guard: without one, Pillow only warns."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_header(Image, io.BytesIO(png(grey(40, 40))), "x.png")
    assert image.size == (40, 40)
    assert any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught)


def two_frames() -> bytes:
    buffer = io.BytesIO()
    frames = [Image.fromarray(grey(20, 20)) for _ in range(2)]
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
@pytest.mark.usefixtures("small_bomb_limit")
def test_first_bad_image_named_by_every_backend(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a chunk of good images, a later chunk's bomb and an earlier chunk's animated PNG:
    the earlier is named, whichever backend decodes them."""
    if backend == "processes" and not FORKS:
        pytest.skip("worker processes are forked on Linux only")
    monkeypatch.setattr(parallel, "WORKERS", 2)
    items = items_of([grey(20, 20) for _ in range(12)])
    items[5] = Encoded("shard.parquet:row 5", two_frames())
    items[9] = Encoded("shard.parquet:row 9", png(grey(50, 50)))
    expect = Expect((20, 20), "L", strict=True)
    with pytest.raises(InputError, match=r"row 5: holds 2 frames"):
        list(decode_chunks(items, expect, 4, backend=backend))


@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
def test_every_backend_gives_the_same_chunks(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "processes" and not FORKS:
        pytest.skip("worker processes are forked on Linux only")
    monkeypatch.setattr(parallel, "WORKERS", 2)
    images = [colour(7, 5) for _ in range(11)]
    items = [Encoded(f"row {n}", png(image)) for n, image in enumerate(images)]
    chunks = list(decode_chunks(items, Expect((7, 5), "RGB", strict=True), 4, backend=backend))
    assert [len(chunk) for chunk in chunks] == [4, 4, 3]
    np.testing.assert_array_equal(np.concatenate(chunks), np.stack(images))
