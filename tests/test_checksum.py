"""The CRC-32 of the record: ISA-L's (the ``fast`` extra) and zlib's are the same function,
so a record written with either verifies with the other."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from pixscale.store.io import checksum


def test_fastest_crc32_is_zlibs_on_any_stream() -> None:
    isal = pytest.importorskip("isal.isal_zlib", reason="the fast extra: pip install isal")
    rng = np.random.default_rng(7)
    for size in (0, 1, 3, 4095, 1 << 16, (1 << 20) + 17):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        start = int(rng.integers(0, 1 << 32))
        assert isal.crc32(data, start) == zlib.crc32(data, start)


def test_checksum_in_pieces_equals_the_whole_with_either(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(3).random((64, 28, 28), dtype=np.float32)
    records = []
    for function in (checksum.fastest_crc32(), zlib.crc32):
        monkeypatch.setattr(checksum, "crc32", function)
        pieces = checksum.Checksum()
        for part in np.array_split(values, 5):
            pieces.update(np.ascontiguousarray(part))
        records.append(pieces.record())
    assert (
        records[0]
        == records[1]
        == {
            "algorithm": "crc32",
            "value": f"{zlib.crc32(values.tobytes()):08x}",
        }
    )
