"""Readers fed generated and mutated bytes raise only pixscale's own clean errors."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLE_IMAGES
from pixscale.errors import PixscaleError
from pixscale.sources import open_source

SEED_IDX = gzip.decompress(SAMPLE_IMAGES.read_bytes())[: 16 + 3 * 784]
SEED_IDX = SEED_IDX[:4] + (3).to_bytes(4, "big") + SEED_IDX[8:]
SEED_GZ = gzip.compress(SEED_IDX, mtime=0)
_buffer = io.BytesIO()
np.save(_buffer, np.arange(2 * 5 * 5, dtype=np.uint8).reshape(2, 5, 5))
SEED_NPY = _buffer.getvalue()

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def read_all(path: Path) -> None:
    """Open and read everything; only PixscaleError may escape."""
    try:
        source = open_source(path)
        for chunk in source.chunks(2):
            assert chunk.dtype == np.uint8
        if source.labels is not None:
            assert len(source.labels.values) == source.n_images
    except PixscaleError as exc:
        assert "\n" not in str(exc)


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    edits = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=8)
    cut = st.integers(0, len(seed))

    def apply(pair: tuple[list[tuple[int, int]], int]) -> bytes:
        data = bytearray(seed)
        for index, value in pair[0]:
            data[index] = value
        return bytes(data[: pair[1]])

    return st.tuples(edits, cut).map(apply)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.bin"
    path.write_bytes(data)
    read_all(path)


@FUZZ
@given(mutated(SEED_IDX))
def test_mutated_idx(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "m-images-idx3-ubyte"
    path.write_bytes(data)
    read_all(path)


@FUZZ
@given(mutated(SEED_GZ))
def test_mutated_gzip_idx(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "m-images-idx3-ubyte.gz"
    path.write_bytes(data)
    read_all(path)


@FUZZ
@given(mutated(SEED_NPY))
def test_mutated_npy(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "m.npy"
    path.write_bytes(data)
    read_all(path)
