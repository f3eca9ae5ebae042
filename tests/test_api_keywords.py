"""The Python API's keywords: what convert and fit accept, and the same defaults."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import pixscale
from pixscale.errors import OutputError

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "mnist-train-1k-images-idx3-ubyte.gz"


@pytest.mark.parametrize("verb", ["convert", "fit"])
def test_an_unknown_keyword_is_a_type_error_naming_it(tmp_path: Path, verb: str) -> None:
    call = getattr(pixscale, verb)
    with pytest.raises(
        TypeError, match=rf"{verb}\(\) got an unexpected keyword argument 'ovewrite'"
    ):
        call(SAMPLE, tmp_path / "x.h5", ovewrite=True)
    assert list(tmp_path.iterdir()) == []


def test_convert_takes_overwrite_as_fit_does(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    pixscale.convert(SAMPLE, out)
    with pytest.raises(OutputError, match="already exists. Use --overwrite"):
        pixscale.convert(SAMPLE, out, pixscale.Spec(strategy="symmetric"))
    pixscale.convert(SAMPLE, out, pixscale.Spec(strategy="symmetric"), overwrite=True)
    with h5py.File(out, "r") as handle:
        assert handle.attrs["strategy"] == "symmetric"
        assert float(np.min(handle["images"])) == -1.0


def test_fit_needs_no_spec_as_convert_does() -> None:
    record = pixscale.fit(SAMPLE)
    assert record["strategy"] == "unit"
    assert record["scale"] == pytest.approx(1 / 255)
