"""Inputs that reach code paths where a Python exception escapes as a traceback.

Each case must end in exit 1 and one ``Error:`` line (or, where the input is merely odd rather
than bad, a normal exit 0), with no traceback and nothing left behind.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from .conftest import (
    SAMPLE_IMAGES,
    assert_clean_failure,
    assert_unchanged,
    cli,
    npy_bytes,
    run_child,
    snapshot,
)

# ------------------------------------------------------------------ zero-size images


@pytest.mark.parametrize("shape", [(5, 0, 28), (5, 28, 0), (5, 8, 8, 0), (5, 0)])
@pytest.mark.parametrize("command", ["convert", "info", "fit"])
def test_npy_with_a_zero_size_image_dimension(
    tmp_path: Path, shape: tuple[int, ...], command: str
) -> None:
    path = tmp_path / "flat.npy"
    np.save(path, np.zeros(shape, np.uint8))
    before = snapshot(tmp_path)
    args: list[object] = {
        "convert": ["convert", path, "-o", tmp_path / "x.npy"],
        "info": ["info", path],
        "fit": ["fit", path, "-s", "standardize", "-o", tmp_path / "p.json"],
    }[command]
    result = cli(args)
    reason = f"images of shape {shape[1:]} hold no pixels"
    assert_clean_failure(result, names=[f"{path}: "], reasons=[reason])
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("command", ["convert", "info"])
def test_hdf5_with_a_zero_size_image_dimension(tmp_path: Path, command: str) -> None:
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as handle:
        handle["images"] = np.zeros((5, 0, 28), np.uint8)
    before = snapshot(tmp_path)
    args: list[object] = [command, path] + (
        ["-o", tmp_path / "x.h5"] if command == "convert" else []
    )
    result = cli(args)
    reason = "images of shape (0, 28) hold no pixels"
    assert_clean_failure(result, names=[f"{path}: "], reasons=[reason])
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("command", ["convert", "info"])
def test_npy_header_whose_size_overflows_int64(tmp_path: Path, command: str) -> None:
    """2**40 × 2**40 × 2**40 bytes: the product wraps around in int64 arithmetic."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (2**40, 2**40, 2**40)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    path = tmp_path / "vast.npy"
    path.write_bytes(buffer.getvalue() + bytes(64))
    before = snapshot(tmp_path)
    args: list[object] = [command, path] + (
        ["-o", tmp_path / "x.h5"] if command == "convert" else []
    )
    result = cli(args)
    assert_clean_failure(
        result, names=[f"{path}: "], reasons=["truncated: header promises 1,329,227,995,784,"]
    )
    assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------ npz archives


def write_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def patch_member_headers(path: Path, method: int | None = None, flags: int | None = None) -> None:
    """Rewrite the compression method and/or flag bits of every member, in the local headers
    and in the central directory (what a hand-made or hostile archive could hold)."""
    data = bytearray(path.read_bytes())
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            if method is not None:
                data[at + method_at : at + method_at + 2] = struct.pack("<H", method)
            if flags is not None:
                old = struct.unpack_from("<H", data, at + flag_at)[0]
                data[at + flag_at : at + flag_at + 2] = struct.pack("<H", old | flags)
            start = at + 4
    path.write_bytes(bytes(data))


IMAGES = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)

NPZ_CASES = {
    # case: (builder, key, what the error says)
    "member is not .npy (text)": (
        lambda p: write_zip(p, {"notes.txt": b"hello"}),
        None,
        "holds no .npy arrays; choose one with --key",
    ),
    "x_train member holds garbage": (
        lambda p: write_zip(p, {"x_train.npy": b"garbage" * 20}),
        "x_train",
        "not a valid .npy file (damaged header)",
    ),
    "labels member holds garbage": (
        lambda p: write_zip(p, {"x_train.npy": npy_bytes(IMAGES), "y_train.npy": b"junk" * 30}),
        "x_train",
        "not a valid .npy file (damaged header)",
    ),
    "labels member is a pickled object array": (
        lambda p: write_zip(
            p,
            {
                "x_train.npy": npy_bytes(IMAGES),
                "y_train.npy": npy_bytes(np.array([{}, 1, "a", None], object), True),
            },
        ),
        "x_train",
        "labels must be a 1-D integer array, got object(4,)",
    ),
    "labels member is 2-D floats": (
        lambda p: write_zip(
            p,
            {"x_train.npy": npy_bytes(IMAGES), "y_train.npy": npy_bytes(np.zeros((4, 3)))},
        ),
        "x_train",
        "labels must be a 1-D integer array, got float64(4, 3)",
    ),
    "unknown compression method (PPMd, 98)": (
        lambda p: (
            write_zip(p, {"x_train.npy": npy_bytes(IMAGES)}),
            patch_member_headers(p, method=98),
        ),
        "x_train",
        "member 'x_train.npy' is compressed with method 98; only stored and deflate members",
    ),
    "encrypted member": (
        lambda p: (
            write_zip(p, {"x_train.npy": npy_bytes(IMAGES)}),
            patch_member_headers(p, flags=0x1),
        ),
        "x_train",
        "member 'x_train.npy' is encrypted",
    ),
}


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
@pytest.mark.parametrize("command", ["convert", "info"])
def test_bad_npz(tmp_path: Path, case: str, command: str) -> None:
    build, key, reason = NPZ_CASES[case]
    path = tmp_path / "arrays.npz"
    build(path)
    before = snapshot(tmp_path)
    args: list[object] = [command, path] + (["--key", key] if key else [])
    if command == "convert":
        args += ["-o", tmp_path / "x.npy"]
    result = cli(args)
    assert_clean_failure(result, names=[f"{path}: "], reasons=[reason])
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize(
    ("method", "name"), [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "lzma")]
)
def test_npz_with_bzip2_or_lzma_members_is_refused(tmp_path: Path, method: int, name: str) -> None:
    """Only stored and deflate members (what numpy writes) are read (docs/safety.md)."""
    path = tmp_path / "arrays.npz"
    labels = np.arange(4, dtype=np.int64)
    write_zip(path, {"x_train.npy": npy_bytes(IMAGES), "y_train.npy": npy_bytes(labels)}, method)
    before = snapshot(tmp_path)
    result = cli(["convert", path, "--key", "x_train", "-o", tmp_path / "x.npy", "-q"])
    assert_clean_failure(
        result,
        names=[f"{path.name}: member 'x_train.npy'"],
        reasons=(f"is compressed with {name}; only stored and deflate members",),
    )
    assert_unchanged(tmp_path, before)


# ------------------------------------------------------------------ odd outputs and shapes


@pytest.fixture
def poisoned(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A genuine output of the sample with one inf and one NaN written into it."""
    suffix = request.param
    out = tmp_path / "out" / f"x{suffix}"
    out.parent.mkdir()
    result = cli(["convert", SAMPLE_IMAGES, "-o", out, "-q"])
    assert result.code == 0, result.describe()
    if suffix == ".npy":
        data = np.load(out, mmap_mode="r+")
        data[0, 0, 0], data[1, 0, 0] = np.inf, np.nan
        data.flush()
        del data
    else:
        with h5py.File(out, "r+") as handle:
            handle["images"][0, 0, 0] = np.inf
            handle["images"][1, 0, 0] = np.nan
    return out


#: What info and preview say about an output holding inf or NaN.
DAMAGED = "holds inf or NaN values (damaged output)"


@pytest.mark.parametrize("poisoned", [".npy", ".h5"], indirect=True)
@pytest.mark.parametrize("mode", ["text", "json"])
def test_info_of_an_output_holding_inf_and_nan_is_refused(poisoned: Path, mode: str) -> None:
    result = cli(["info", poisoned] + (["--json"] if mode == "json" else []))
    assert_clean_failure(result, names=[poisoned.name], reasons=(DAMAGED,))
    assert result.stdout == b""


@pytest.mark.parametrize("poisoned", [".npy", ".h5"], indirect=True)
def test_preview_of_an_output_holding_inf_and_nan_is_refused(
    tmp_path: Path, poisoned: Path
) -> None:
    before = snapshot(tmp_path)
    result = cli(["preview", poisoned, "-o", tmp_path / "p.png"])
    assert_clean_failure(result, names=[poisoned.name], reasons=(DAMAGED,))
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("channels", [2, 5])
def test_preview_of_an_unusual_channel_count_draws_it(tmp_path: Path, channels: int) -> None:
    pytest.importorskip("PIL")
    path = tmp_path / "bands.npy"
    rng = np.random.default_rng(5)
    np.save(path, rng.integers(0, 256, (4, 8, 8, channels), dtype=np.uint8))
    result = cli(["preview", path, "-o", tmp_path / "p.png"])
    assert result.code == 0 and result.exception is None and not result.note, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bands.npy", "p.png"]


# ------------------------------------------------------------------ standard output closed


def test_output_to_a_closed_stdout(tmp_path: Path, small_npy: Path) -> None:
    before = snapshot(tmp_path)
    result = run_child(
        ["convert", small_npy, "-o", "-", "--params-out", tmp_path / "p.json"],
        close_stdout=True,
    )
    assert_clean_failure(result, reasons=["-o -: standard output is closed"])
    assert_unchanged(tmp_path, before)
