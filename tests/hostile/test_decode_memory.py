"""Images decoded honestly, and memory bounded by the data, not by the image size.

- An image of several frames (a multi-page TIFF, an animated PNG or GIF) would lose every
  frame but the first: refused, naming the file (or archive member) and the frame count.
- A CMYK JPEG is converted by Pillow when ``--mode`` says so (its values are exactly
  Pillow's ``convert("RGB")``), and refused without ``--mode``, suggesting ``--mode RGB``.
- ``fit`` per dataset or per channel keeps no sums per pixel position: its peak memory
  follows the input, not 18 bytes per position per thread.
- Workers (decoding threads, local cluster processes) are at most the usable cores.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pixscale.core import stats
from pixscale.core.stats import PixelSums

from .conftest import (
    assert_clean_failure,
    assert_unchanged,
    assert_within_memory,
    cli,
    run_child,
    snapshot,
)

Image = pytest.importorskip("PIL.Image")

SIZE = 8
FRAMES = 3


def pixels(seed: int, *channels: int) -> np.ndarray:
    shape = (SIZE, SIZE, *channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def frames(seed: int) -> list[object]:
    return [Image.fromarray(pixels(seed + k)) for k in range(FRAMES)]


def save_frames(path: Path, seed: int) -> None:
    """A ``FRAMES``-frame image at ``path`` (multi-page TIFF, APNG or animated GIF)."""
    first, *rest = frames(seed)
    first.save(path, save_all=True, append_images=rest)  # type: ignore[attr-defined]
    with Image.open(path) as image:
        assert image.n_frames == FRAMES, f"Pillow wrote {image.n_frames} frames"


def cmyk_jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels(seed, 4), "CMYK").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


# --------------------------------------------------------------------------- frames


@pytest.mark.parametrize("suffix", [".tif", ".png"])
@pytest.mark.parametrize("command", ["convert", "info"])
def test_multi_frame_image_in_a_folder_is_refused(
    tmp_path: Path, suffix: str, command: str
) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.fromarray(pixels(0)).save(folder / f"a{suffix}")
    save_frames(folder / f"b{suffix}", 1)
    before = snapshot(tmp_path)
    args = ["info", folder] if command == "info" else ["convert", folder, "-o", tmp_path / "x.npy"]
    line = assert_clean_failure(cli(args), names=[f"b{suffix}"])
    assert f"holds {FRAMES} frames" in line, line
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_multi_frame_member_of_a_zip_is_refused(tmp_path: Path, suffix: str) -> None:
    save_frames(tmp_path / f"many{suffix}", 1)
    single = io.BytesIO()
    Image.fromarray(pixels(0)).save(single, format="PNG" if suffix == ".png" else "TIFF")
    archive = tmp_path / "pictures.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr(f"a{suffix}", single.getvalue())
        handle.write(tmp_path / f"many{suffix}", f"b{suffix}")
    (tmp_path / f"many{suffix}").unlink()
    before = snapshot(tmp_path)
    line = assert_clean_failure(
        cli(["convert", archive, "-o", tmp_path / "x.npy"]), names=[f"pictures.zip:b{suffix}"]
    )
    assert f"holds {FRAMES} frames" in line, line
    assert_unchanged(tmp_path, before)


def test_animated_gif_cell_of_a_parquet_file_is_refused(tmp_path: Path) -> None:
    """Parquet cells are opened by content, so a GIF reaches the decoder too."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    save_frames(tmp_path / "many.gif", 1)
    still = io.BytesIO()
    Image.fromarray(pixels(0)).convert("P").save(still, format="GIF")
    cells = [still.getvalue(), (tmp_path / "many.gif").read_bytes()]
    (tmp_path / "many.gif").unlink()
    table = pa.table({"image": [{"bytes": cell, "path": None} for cell in cells]})
    pq.write_table(table, tmp_path / "train.parquet")
    before = snapshot(tmp_path)
    line = assert_clean_failure(
        cli(["convert", tmp_path / "train.parquet", "-o", tmp_path / "x.npy"]),
        names=["train.parquet"],
    )
    assert f"holds {FRAMES} frames" in line, line
    assert_unchanged(tmp_path, before)


# --------------------------------------------------------------------------- CMYK


def cmyk_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "prints"
    folder.mkdir()
    for index in range(2):
        (folder / f"{index}.jpg").write_bytes(cmyk_jpeg(index))
    with Image.open(folder / "0.jpg") as image:
        assert image.mode == "CMYK"
    return folder


def pillow_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("command", ["convert", "info"])
def test_cmyk_jpeg_without_mode_is_refused_suggesting_mode_rgb(
    tmp_path: Path, command: str
) -> None:
    folder = cmyk_folder(tmp_path)
    before = snapshot(tmp_path)
    args = ["info", folder] if command == "info" else ["convert", folder, "-o", tmp_path / "x.npy"]
    line = assert_clean_failure(cli(args), names=["0.jpg"])
    assert "CMYK image; use --mode RGB" in line, line
    assert_unchanged(tmp_path, before)


def test_cmyk_jpeg_with_mode_rgb_gives_pillows_own_conversion(tmp_path: Path) -> None:
    folder = cmyk_folder(tmp_path)
    out = tmp_path / "x.npy"
    result = cli(["convert", folder, "--mode", "RGB", "-s", "none", "-o", out, "-q"])
    assert result.code == 0, result.describe()
    want = np.stack([pillow_rgb(folder / f"{index}.jpg") for index in range(2)])
    assert np.array_equal(np.load(out), want.astype(np.float32))


def test_cmyk_member_of_a_zip_with_mode_rgb_gives_pillows_own_conversion(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "prints.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for index in range(2):
            handle.writestr(f"{index}.jpg", cmyk_jpeg(index))
    before = snapshot(tmp_path)
    refused = cli(["convert", archive, "-o", tmp_path / "x.npy"])
    line = assert_clean_failure(refused, names=["prints.zip:0.jpg"])
    assert "CMYK image; use --mode RGB" in line, line
    assert_unchanged(tmp_path, before)
    out = tmp_path / "y.npy"
    result = cli(["convert", archive, "--mode", "RGB", "-s", "none", "-o", out, "-q"])
    assert result.code == 0, result.describe()
    want = []
    for index in range(2):
        with Image.open(io.BytesIO(cmyk_jpeg(index))) as image:
            want.append(np.asarray(image.convert("RGB")))
    assert np.array_equal(np.load(out), np.stack(want).astype(np.float32))


# --------------------------------------------------------------------------- fit memory

#: What a pixscale process takes before any data (interpreter, numpy, h5py, Pillow...),
#: with room to spare.
BASE_RSS = 160 << 20


@pytest.mark.parametrize(
    ("shape", "scope"),
    [((4, 4096, 4096), "global"), ((4, 2048, 2048, 3), "channel")],
)
def test_fit_per_dataset_or_channel_memory_follows_the_input(
    tmp_path: Path, shape: tuple[int, ...], scope: str
) -> None:
    """4 images of 4096×4096 (64 MiB) with --chunk-mb 4 used to peak at 962 MiB: two
    threads each kept 18 bytes per position, and merging them made a third copy. The
    input memory-mapped whole, plus the chunks in flight, stays within twice its size."""
    data = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "big.npy", data)
    out = tmp_path / "p.json"
    args = ["fit", tmp_path / "big.npy", "-s", "standardize", "--scope", scope]
    outcome = run_child([*args, "--chunk-mb", 4, "-o", out], timeout=300)
    assert outcome.code == 0, outcome.describe()
    assert_within_memory(outcome, BASE_RSS + 2 * data.nbytes)
    assert out.exists()


LAYOUTS = [
    ((5, 7), None),
    ((6, 5, 3), 2),
    ((3, 9, 5), 0),
    ((40,), None),
    ((2, 50, 50), 0),
    ((50, 50, 4), 2),
]


@pytest.mark.parametrize(("image_shape", "axis"), LAYOUTS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("block_bytes", [64, 256, 4 << 20])
def test_sums_per_channel_give_the_statistics_of_sums_per_position(
    monkeypatch: pytest.MonkeyPatch,
    image_shape: tuple[int, ...],
    axis: int | None,
    dtype: str,
    block_bytes: int,
) -> None:
    """Whatever blocks of positions the images are summed in (tiny blocks cross channel
    runs and periods), the sums kept per channel give exactly the same statistics."""
    monkeypatch.setattr(stats, "SUM_BLOCK_BYTES", block_bytes)
    top = np.iinfo(dtype).max
    data = np.random.default_rng(1).integers(0, top + 1, (11, *image_shape), dtype=dtype)
    for scope in ("global", "channel"):
        per_position = PixelSums.empty(image_shape, dtype)
        per_group = PixelSums.empty(image_shape, dtype, scope, axis)
        for first in range(0, len(data), 4):
            per_position.add(data[first : first + 4])
            per_group.add(data[first : first + 4])
        want = per_position.reduce(scope, axis)
        got = per_group.reduce(scope, axis)
        for name in ("count", "minimum", "maximum", "mean", "std"):
            expected, actual = getattr(want, name), getattr(got, name)
            assert np.shape(actual) == np.shape(expected), name
            assert np.array_equal(actual, expected), name
        per_channel = scope == "channel" and axis is not None
        assert per_group.s1.size == (image_shape[axis] if per_channel else 1)


def test_sums_per_channel_stay_exact_past_uint64() -> None:
    """Totals per channel are Python integers: 2**21 images of 4096 values of 65535 give
    sums of squares past 2**64, and the statistics are still exact."""
    sums = PixelSums.empty((64, 64), "uint16", "global")
    sums.add(np.full((2, 64, 64), 65535, np.uint16))
    images = 2**21
    sums.count, sums.s1[0], sums.s2[0] = images, 65535 * 4096 * images, 65535**2 * 4096 * images
    assert int(sums.s2[0]) > 2**64
    result = sums.reduce("global", None)
    assert result.mean.item() == 65535.0 and result.std.item() == 0.0


# --------------------------------------------------------------------------- workers


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_decoding_workers_are_the_usable_cores(tmp_path: Path) -> None:
    """A process allowed one core (taskset, a container's cpuset) decodes with one worker,
    and is told that one worker process is all it can use."""
    if usable_cores() < 2:
        pytest.skip("needs two usable cores to narrow them to one")
    core = min(os.sched_getaffinity(0))
    script = (
        f"import os; os.sched_setaffinity(0, {{{core}}})\n"
        "from pixscale.sources import parallel\n"
        "print(parallel.WORKERS, parallel.useful_workers(64), parallel.useful_workers())\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["1", "1", "1"]


def test_a_local_cluster_starts_no_more_workers_than_cores() -> None:
    """``--workers 64`` on a small machine started 64 processes (over 4 GiB between them):
    a local cluster has at most one worker process per usable core."""
    pytest.importorskip("distributed")
    from pixscale.engine.distributed import dask_client

    with dask_client(None, usable_cores() + 2) as client:
        assert len(client.cluster.workers) == usable_cores()
