"""Quoted input patterns: globs in sorted order, and webdataset's brace names in theirs."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pytest

import pixscale
from cli_helpers import run_cli
from pixscale.cli.options import MAX_BRACE_NAMES, expand_braces


def test_numeric_ranges_keep_their_zero_padding() -> None:
    assert expand_braces("shard-{000008..000011}.tar") == [
        "shard-000008.tar",
        "shard-000009.tar",
        "shard-000010.tar",
        "shard-000011.tar",
    ]
    assert expand_braces("p{8..10}.npy") == ["p8.npy", "p9.npy", "p10.npy"]
    assert expand_braces("p{2..0}") == ["p2", "p1", "p0"]


def test_lists_and_several_groups_expand_in_order() -> None:
    assert expand_braces("{a,b}-{0..1}.npy") == ["a-0.npy", "a-1.npy", "b-0.npy", "b-1.npy"]
    assert expand_braces("plain.npy") == ["plain.npy"]
    assert expand_braces("odd{}.npy") == ["odd{}.npy"]


def test_a_range_too_long_is_refused_before_it_is_listed() -> None:
    with pytest.raises(click.BadParameter, match=f"more than {MAX_BRACE_NAMES:,} names"):
        expand_braces("s-{0..999999999999}.tar")
    with pytest.raises(click.BadParameter, match="more than"):
        expand_braces("{0..999}{0..999}")


def shards(tmp_path: Path) -> np.ndarray:
    images = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4) * 3
    for index, part in enumerate(np.array_split(images, 3)):
        np.save(tmp_path / f"part-{index:03d}.npy", part)
    return images


def test_webdataset_style_names_convert_as_one_dataset(tmp_path: Path) -> None:
    images = shards(tmp_path)
    out = tmp_path / "x.npy"
    result = run_cli("convert", tmp_path / "part-{000..002}.npy", "-o", out)
    assert result.exit_code == 0, result.output
    expected = images.astype(np.float32) / np.float32(255)
    assert np.array_equal(np.load(out), expected)
    assert pixscale.open(out).record["source"]["files"] == [
        "part-000.npy",
        "part-001.npy",
        "part-002.npy",
    ]


def test_a_missing_name_of_a_brace_pattern_is_named(tmp_path: Path) -> None:
    shards(tmp_path)
    result = run_cli("convert", tmp_path / "part-{000..003}.npy", "-o", tmp_path / "x.npy")
    assert result.exit_code == 2
    assert "part-003.npy: no such file (from " in result.stderr
    assert not (tmp_path / "x.npy").exists()
