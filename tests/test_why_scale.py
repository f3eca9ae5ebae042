"""examples/why_scale.py: the table in docs/ and the README is what a fresh run gives."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import ROOT

EXAMPLE = ROOT / "examples" / "why_scale.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("why_scale", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fresh_run(
    tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path
) -> tuple[ModuleType, dict[str, Any], Path]:
    """The example run once with its defaults, writing into a temporary folder."""
    pytest.importorskip("matplotlib")
    example = load_example()
    out = tmp_path_factory.mktemp("why_scale")
    return example, example.main(["--out", str(out)]), out


def test_why_scale_numbers_in_the_readme_match_a_fresh_run(
    fresh_run: tuple[ModuleType, dict[str, Any], Path],
) -> None:
    _, _, out = fresh_run
    fresh = (out / "why_scale.md").read_text()
    assert fresh == (ROOT / "docs" / "why_scale.md").read_text()
    assert fresh in (ROOT / "README.md").read_text()
    header = (out / "why_scale.png").read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24])[0] > 800


def test_why_scale_verdicts_are_far_from_their_thresholds(
    fresh_run: tuple[ModuleType, dict[str, Any], Path],
) -> None:
    """No verdict in the table may hinge on the last bits of the arithmetic.

    The losses of the unstable rates move by a few percent when the summation order changes
    (another BLAS, another CPU); the verdicts must not.
    """
    example, results, _ = fresh_run
    for name, result in results.items():
        losses = sorted(result.losses.values())
        assert losses[1] - losses[0] > 0.05, name
        for rate, loss in result.losses.items():
            assert not example.DIVERGED / 1.5 < loss < example.DIVERGED * 1.5, (name, rate, loss)
