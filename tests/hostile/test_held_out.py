"""Variations found by trying pixscale as an attacker would, beyond the catalogued cases:
folders that hide a class or an image, records whose numbers are not numbers or not the
strategy's, and run leftovers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_process

from .conftest import SAMPLE_IMAGES, assert_clean_failure, assert_unchanged, cli, snapshot


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """Two classes of two 8×8 PNGs."""
    image = pytest.importorskip("PIL.Image")
    root = tmp_path / "pics"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for index in range(2):
            image.fromarray(np.full((8, 8), index, np.uint8)).save(root / name / f"{index}.png")
    return root


@pytest.mark.parametrize(
    "where, target, reason",
    [
        ("a/x.png", "missing.png", "is a link to nothing (dangling)"),
        ("c", "missing", "is a link to nothing (dangling)"),  # a class that would vanish
        ("c", "../elsewhere", "is a link leading outside"),
    ],
)
def test_a_folder_link_to_nothing_is_refused_not_skipped(
    tmp_path: Path, pictures: Path, where: str, target: str, reason: str
) -> None:
    os.symlink(target, pictures / where)
    before = snapshot(tmp_path)
    outcome = cli(["convert", pictures, "-o", tmp_path / "o.h5"])
    assert_clean_failure(outcome, names=[str(pictures / where)], reasons=[reason])
    assert_unchanged(tmp_path, before)


def test_a_fifo_named_as_an_image_is_refused_not_skipped(tmp_path: Path, pictures: Path) -> None:
    os.mkfifo(pictures / "b" / "f.png")
    outcome = cli(["convert", pictures, "-o", tmp_path / "o.h5"])
    assert_clean_failure(outcome, names=["f.png"], reasons=["not a regular file"])
    assert not (tmp_path / "o.h5").exists()


@pytest.fixture
def params(tmp_path: Path) -> Path:
    path = tmp_path / "p.json"
    assert cli(["fit", SAMPLE_IMAGES, "-o", path]).code == 0
    return path


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("source_span", ["255"], "source_span must hold numbers, found text"),
        ("source_low", [True], "source_low must hold numbers, found true/false"),
        ("source_span", [None], "source_span must hold numbers, found nulls or mixed values"),
        ("source_span", [[1, 2], [3]], "source_span must hold numbers in a regular array"),
    ],
)
def test_record_numbers_must_be_numbers(
    tmp_path: Path, params: Path, field: str, value: object, reason: str
) -> None:
    record = json.loads(params.read_text())
    record[field] = value
    params.write_text(json.dumps(record))
    outcome = cli(["convert", SAMPLE_IMAGES, "-o", tmp_path / "o.h5", "--params-from", params])
    assert_clean_failure(outcome, names=[str(params)], reasons=[reason])
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("strategy", ["none", "symmetric"])
def test_a_fixed_strategy_holds_its_own_numbers(
    tmp_path: Path, params: Path, strategy: str
) -> None:
    """unit's numbers under another fixed strategy's name would record the values wrongly."""
    record = json.loads(params.read_text())
    record["strategy"] = strategy
    params.write_text(json.dumps(record))
    outcome = cli(["convert", SAMPLE_IMAGES, "-o", tmp_path / "o.h5", "--params-from", params])
    assert_clean_failure(
        outcome, names=[str(params)], reasons=[f"strategy {strategy} maps with source_low"]
    )


@pytest.mark.parametrize("kind", ["fifo", "folder", "missing"])
def test_params_from_that_is_no_file_says_what_it_is(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "p.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    reason = {"fifo": "not a regular file", "folder": "is a folder", "missing": "no such file"}
    outcome = cli(["convert", SAMPLE_IMAGES, "-o", tmp_path / "o.h5", "--params-from", path])
    assert_clean_failure(outcome, names=[str(path)], reasons=[reason[kind]])


def test_a_local_cluster_leaves_nothing_in_tmpdir(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = run_process(
        [
            "convert",
            SAMPLE_IMAGES,
            "-o",
            tmp_path / "o.zarr",
            "--engine",
            "dask",
            "--workers",
            1,
            "-q",
        ],
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(scratch)) == []
