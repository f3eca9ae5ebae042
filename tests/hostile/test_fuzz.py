"""Random and mutated inputs through the command line: exit 0 or a clean exit 1.

Every format pixscale reads is seeded with a small valid file whose bytes are then edited and
cut short, and fed to ``info`` and ``convert``; parameter records are replaced, edited and
generated at random and fed to ``export`` and ``convert --params-from``. Whatever happens, the
command ends with exit 0, or exit 1 and one ``Error:`` line; never a traceback, a crash or a
hang, and a failed conversion leaves nothing behind.

Readers run in forked children (``isolated_cli_all``), so that a C library crashing on a
damaged HDF5 or PNG fails one example instead of the whole test run. Examples are
derandomized: the same inputs on every run and every machine.
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import (
    SAMPLE_IMAGES,
    Outcome,
    cli,
    idx_bytes,
    isolated_cli_all,
    npy_bytes,
)

FILE_FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PARAMS_FUZZ = settings(FILE_FUZZ, max_examples=60)


# ------------------------------------------------------------------ seeds


def sample_images(count: int) -> np.ndarray:
    data = gzip.decompress(SAMPLE_IMAGES.read_bytes())
    return np.frombuffer(data, np.uint8, offset=16)[: count * 784].reshape(count, 28, 28)


def hdf5_seed() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "seed.h5"
        with h5py.File(path, "w") as handle:
            handle.create_dataset("images", data=sample_images(2)[:, 10:16, 10:16])
            handle.create_dataset("labels", data=np.array([5, 0], np.int64))
        return path.read_bytes()


def npz_seed() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x_train.npy", npy_bytes(sample_images(2)[:, 10:15, 10:15]))
        archive.writestr("y_train.npy", npy_bytes(np.array([5, 0], np.int64)))
    return buffer.getvalue()


def png_seed() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(sample_images(1)[0, 8:16, 8:16]).save(buffer, "PNG")
    return buffer.getvalue()


def cifar_seed() -> bytes:
    rng = np.random.default_rng(1)
    records = rng.integers(0, 256, (2, 3073), dtype=np.uint8)
    records[:, 0] = [3, 7]
    return records.tobytes()


#: format: (file name, seed bytes, options that select the images)
SEEDS: dict[str, tuple[str, bytes, list[str]]] = {
    "idx.gz": (
        "seed-images-idx3-ubyte.gz",
        gzip.compress(idx_bytes(sample_images(3)), mtime=0),
        [],
    ),
    "idx": ("seed-images-idx3-ubyte", idx_bytes(sample_images(2)[:, 8:20, 8:20]), []),
    "npy": ("seed.npy", npy_bytes(np.arange(2 * 5 * 5, dtype=np.uint8).reshape(2, 5, 5)), []),
    "npz": ("seed.npz", npz_seed(), ["--key", "x_train"]),
    "h5": ("seed.h5", hdf5_seed(), []),
    "cifar": ("data_batch_1.bin", cifar_seed(), []),
}


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """Up to 8 bytes overwritten (headers more often than data), then maybe cut short."""
    n = len(seed)
    index = st.one_of(st.integers(0, min(n, 96) - 1), st.integers(0, n - 1))
    edits = st.lists(st.tuples(index, st.integers(0, 255)), min_size=1, max_size=8)
    cut = st.one_of(st.just(n), st.integers(0, n))

    def apply(pair: tuple[list[tuple[int, int]], int]) -> bytes:
        data = bytearray(seed)
        for at, value in pair[0]:
            data[at] = value
        return bytes(data[: pair[1]])

    return st.tuples(edits, cut).map(apply)


@pytest.fixture(scope="module", autouse=True)
def valid_seeds(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every seed converts as it is (so mutations start from valid files). This also loads,
    once in this process, the modules the forked children would otherwise each import."""
    folder = tmp_path_factory.mktemp("seeds")
    for fmt, (name, seed, options) in SEEDS.items():
        path = folder / name
        path.write_bytes(seed)
        out = folder / f"{fmt}.npy"
        for args in (["info", path, *options], ["convert", path, *options, "-o", out, "-q"]):
            result = cli(args)
            assert result.code == 0, result.describe()
    pictures = folder / "pictures"
    pictures.mkdir()
    (pictures / "a.png").write_bytes(png_seed())
    (pictures / "b.png").write_bytes(png_seed())
    result = cli(["convert", pictures, "-o", folder / "png.npy", "-q"])
    assert result.code == 0, result.describe()


# ------------------------------------------------------------------ the invariant


def check(outcome: Outcome) -> None:
    """Exit 0, or exit 1 with one ``Error:`` line; no traceback, crash or hang."""
    detail = outcome.describe()
    assert not outcome.note, detail
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), detail
    assert outcome.code in (0, 1), detail
    assert "Traceback" not in outcome.stderr, detail
    if outcome.code == 1:
        lines = outcome.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), detail


def read_and_convert(root: Path, path: Path, options: tuple[str, ...] = ()) -> None:
    """``info`` and ``convert`` of ``path``; a failed convert leaves ``out`` empty."""
    out = root / "out"
    out.mkdir()
    info, convert = isolated_cli_all(
        [["info", path, *options], ["convert", path, *options, "-o", out / "x.npy", "-q"]],
        timeout=60,
    )
    check(info)
    check(convert)
    produced = sorted(p.name for p in out.iterdir())
    if convert.code == 0:
        assert "x.npy" in produced and "x.npy.json" in produced, produced
    else:
        assert produced == [], f"a failed conversion left {produced}"


# ------------------------------------------------------------------ files


@pytest.mark.parametrize("fmt", sorted(SEEDS))
@FILE_FUZZ
@given(data=st.data())
def test_mutated_file(fmt: str, data: st.DataObject) -> None:
    name, seed, options = SEEDS[fmt]
    content = data.draw(mutated(seed), label="content")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = root / name
        path.write_bytes(content)
        read_and_convert(root, path, tuple(options))


@FILE_FUZZ
@given(content=mutated(png_seed()))
def test_mutated_png_in_a_folder(content: bytes) -> None:
    pytest.importorskip("PIL")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        pictures = root / "pictures"
        pictures.mkdir()
        (pictures / "a.png").write_bytes(png_seed())
        (pictures / "b.png").write_bytes(content)
        read_and_convert(root, pictures)


NAMES = ["random.bin", "random.npy", "random.npz", "random.h5", "x-images-idx3-ubyte", "plain"]


@FILE_FUZZ
@given(content=st.binary(min_size=1, max_size=400), name=st.sampled_from(NAMES))
def test_random_bytes(content: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = root / name
        path.write_bytes(content)
        read_and_convert(root, path)


# ------------------------------------------------------------------ parameter records

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def params_seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Digits to convert and a genuine fitted record to damage."""
    folder = tmp_path_factory.mktemp("params-seed")
    digits = folder / "digits.npy"
    np.save(digits, sample_images(50))
    record_path = folder / "p.json"
    result = cli(["fit", digits, "-s", "standardize", "--scope", "channel", "-o", record_path])
    assert result.code == 0, result.describe()
    return digits, json.loads(record_path.read_text())


def damaged_records(record: dict[str, Any]) -> st.SearchStrategy[str]:
    """A field replaced by a random value, a field removed, the text edited, or anything."""
    fields = sorted(record)
    replaced = st.tuples(st.sampled_from(fields), JSON_VALUES).map(
        lambda pair: json.dumps({**record, pair[0]: pair[1]})
    )
    removed = st.sampled_from(fields).map(
        lambda field: json.dumps({k: v for k, v in record.items() if k != field})
    )
    text = json.dumps(record, indent=2).encode()
    edited = mutated(text).map(lambda data: data.decode("latin-1"))
    anything = JSON_VALUES.map(json.dumps)
    return st.one_of(replaced, removed, edited, anything)


def params_outcomes(digits: Path, text: str) -> list[Outcome]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = root / "p.json"
        path.write_text(text, encoding="latin-1")
        export = cli(["export", path, "--to", "json"])
        out = root / "y.npy"
        convert = cli(["convert", digits, "-o", out, "--params-from", path, "-q"])
        if convert.code != 0:
            produced = sorted(p.name for p in root.iterdir() if p.name != "p.json")
            assert produced == [], f"a failed conversion left {produced}"
        return [export, convert]


@PARAMS_FUZZ
@given(data=st.data())
def test_damaged_params_records(
    params_seed: tuple[Path, dict[str, Any]], data: st.DataObject
) -> None:
    digits, record = params_seed
    text = data.draw(damaged_records(record), label="record")
    for outcome in params_outcomes(digits, text):
        check(outcome)


@PARAMS_FUZZ
@given(text=st.text(max_size=200))
def test_random_params_text(params_seed: tuple[Path, dict[str, Any]], text: str) -> None:
    digits, _ = params_seed
    for outcome in params_outcomes(digits, text.encode("utf-8").decode("latin-1")):
        check(outcome)
