"""Parameter records are input too: a hand-edited or hostile record is refused, cleanly.

A params JSON (``fit -o``) and the sidecar of a .npy output are edited in every way that
breaks the transform (zero or infinite spans, spans that overflow float32), breaks its
meaning (unknown strategy, scope or zero-std policy, wrong shapes, wrong types) or breaks the
parser (deep nesting). ``convert --params-from``, ``export`` and ``invert`` must all refuse
them with exit 1, one line, and nothing written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import (
    assert_clean_failure,
    assert_refused_option,
    assert_unchanged,
    cli,
    load_json,
    snapshot,
)

INF = "@@1e309@@"  # replaced by the JSON number 1e309, which Python reads as inf
NINF = "@@-1e309@@"
NAN = "@@NaN@@"  # Python's json reads the bare word NaN
INFINITY = "@@Infinity@@"
DEEP = "@@deep@@"
DEPTH = 100_000

Mutation = Callable[[dict[str, Any]], Any]


def setting(field: str, value: Any) -> Mutation:
    def mutate(record: dict[str, Any]) -> dict[str, Any]:
        return {**record, field: value}

    return mutate


def dropping(field: str) -> Mutation:
    def mutate(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k != field}

    return mutate


def render(value: Any) -> str:
    text = json.dumps(value, indent=2)
    text = text.replace(f'"{INF}"', "1e309").replace(f'"{NINF}"', "-1e309")
    text = text.replace(f'"{NAN}"', "NaN").replace(f'"{INFINITY}"', "Infinity")
    return text.replace(f'"{DEEP}"', "[" * DEPTH + "]" * DEPTH)


#: case: (mutation, what the error says after the file's name)
MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "target_span 0": (
        setting("target_span", 0.0),
        "target_span is 0: every output would be the same value",
    ),
    "source_span 0": (
        setting("source_span", 0.0),
        "source_span holds 0: the map would divide by zero",
    ),
    "source_span 1e309 (inf)": (
        setting("source_span", INF),
        "invalid record: source_span is not a finite number",
    ),
    "source_span Infinity": (
        setting("source_span", INFINITY),
        "invalid record: source_span is not a finite number",
    ),
    "source_low -1e309 (-inf)": (
        setting("source_low", NINF),
        "invalid record: source_low is not a finite number",
    ),
    "source_low NaN": (
        setting("source_low", NAN),
        "invalid record: source_low is not a finite number",
    ),
    "target_low 1e309 (inf)": (
        setting("target_low", INF),
        "invalid record: target_low is not a finite number",
    ),
    "target_span 1e309 (inf)": (
        setting("target_span", INF),
        "invalid record: target_span is not a finite number",
    ),
    "target_low NaN": (
        setting("target_low", NAN),
        "invalid record: target_low is not a finite number",
    ),
    "source_span 1e-320 (scale overflows)": (
        setting("source_span", 1e-320),
        "scale or offset is not finite (a source_span too small?)",
    ),
    "target_span 1e308 (float32 overflows)": (
        setting("target_span", 1e308),
        "outputs would reach inf, beyond float32's range",
    ),
    "strategy garbage": (
        setting("strategy", "garbage"),
        "unknown strategy 'garbage'; choose from ('unit', 'range', 'symmetric', 'standardize',",
    ),
    "scope garbage": (
        setting("scope", "garbage"),
        "unknown scope 'garbage'; choose from ('global', 'channel', 'pixel', 'image')",
    ),
    "zero_std garbage": (
        setting("zero_std", "garbage"),
        "invalid record: zero_std must be an object, not a string",
    ),
    "layout garbage": (setting("layout", "garbage"), "unknown layout 'garbage'"),
    "source_low 2x2 for global scope": (
        setting("source_low", [[1.0, 2.0], [3.0, 4.0]]),
        "source_low has shape (2, 2), global scope on images of shape (28, 28) needs ()",
    ),
    "source_span empty list": (
        setting("source_span", []),
        "source_span has shape (0,), global scope on images of shape (28, 28) needs ()",
    ),
    "source_span 3 values for 1 channel": (
        setting("source_span", [60.0, 70.0, 80.0]),
        "source_span has shape (3,), global scope on images of shape (28, 28) needs ()",
    ),
    "image_shape negative": (
        setting("image_shape", [-5, 28]),
        "image_shape must be positive integers, not [-5, 28]",
    ),
    "image_shape string": (
        setting("image_shape", "28x28"),
        "image_shape must be a list of integers, not '28x28'",
    ),
    "channel_axis 7": (
        setting("channel_axis", 7),
        "channel_axis 7 does not fit images of shape [28, 28]",
    ),
    "strategy a number": (setting("strategy", 5), "strategy must be a string, not int"),
    "target_low a string": (setting("target_low", "abc"), "target_low must be a number, not str"),
    "target_low true": (setting("target_low", True), "target_low must be a number, not bool"),
    "source_low null": (
        setting("source_low", None),
        "source_low must hold numbers, found NoneType",
    ),
    "source_low dangling array ref": (
        setting("source_low", {"array": "nope", "shape": [1]}),
        "parameter array 'nope' is referenced but not stored",
    ),
    "clip a string": (setting("clip", "no"), "clip must be true or false, not 'no'"),
    "fitted_on a string": (
        setting("fitted_on", "garbage"),
        "invalid record: fitted_on must be an object, not a string",
    ),
    "stats a list": (
        setting("stats", [1, 2, 3]),
        "invalid record: stats must be an object, not a list",
    ),
    "format missing": (dropping("format"), "not a pixscale.params/1 record (format=None)"),
    "strategy missing": (dropping("strategy"), "parameter record lacks the field 'strategy'"),
    "record is a list": (lambda record: [record], "not a parameter record (a JSON object)"),
    "source_low nested 100000 deep": (
        setting("source_low", DEEP),
        "invalid record: JSON nested too deeply",
    ),
    "whole record nested 100000 deep": (
        lambda record: DEEP,
        "invalid record: JSON nested too deeply",
    ),
}


@pytest.fixture
def digits(tmp_path: Path, sample_arrays: tuple[np.ndarray, np.ndarray]) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "digits.npy"
    np.save(path, sample_arrays[0][:100])
    return path


@pytest.fixture
def fitted(tmp_path: Path, digits: Path) -> Path:
    """A genuine params JSON from ``fit -s standardize``."""
    path = tmp_path / "p.json"
    result = cli(["fit", digits, "-s", "standardize", "-o", path, "-q"])
    assert result.code == 0, result.describe()
    return path


@pytest.fixture
def converted(tmp_path: Path, digits: Path) -> Path:
    """A genuine standardized .npy output with its sidecar."""
    path = tmp_path / "conv" / "s.npy"
    path.parent.mkdir()
    result = cli(["convert", digits, "-o", path, "-s", "standardize", "-q"])
    assert result.code == 0, result.describe()
    return path


def tamper(path: Path, case: str) -> list[str]:
    mutate, says = MUTATIONS[case]
    path.write_text(render(mutate(load_json(path))))
    return [says]


def test_controls_untampered_records_work(
    tmp_path: Path, digits: Path, fitted: Path, converted: Path
) -> None:
    assert cli(["export", fitted]).code == 0
    result = cli(["convert", digits, "-o", tmp_path / "y.npy", "--params-from", fitted, "-q"])
    assert result.code == 0, result.describe()
    result = cli(["invert", converted, "-o", tmp_path / "back.npy"])
    assert result.code == 0, result.describe()
    assert np.array_equal(np.load(tmp_path / "back.npy"), np.load(digits))


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_convert_params_from_refuses(tmp_path: Path, digits: Path, fitted: Path, case: str) -> None:
    reasons = tamper(fitted, case)
    before = snapshot(tmp_path)
    result = cli(["convert", digits, "-o", tmp_path / "y.npy", "--params-from", fitted])
    assert_clean_failure(result, names=[fitted.name], reasons=reasons)
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_export_refuses(fitted: Path, case: str) -> None:
    reasons = tamper(fitted, case)
    result = cli(["export", fitted, "--to", "json"])
    assert_clean_failure(result, names=[fitted.name], reasons=reasons)
    assert result.stdout == b""


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_invert_refuses_a_tampered_sidecar(tmp_path: Path, converted: Path, case: str) -> None:
    reasons = tamper(converted.with_name(converted.name + ".json"), case)
    before = snapshot(tmp_path)
    result = cli(["invert", converted, "-o", tmp_path / "back.npy"])
    assert_clean_failure(result, names=[converted.name], reasons=reasons)
    assert_unchanged(tmp_path, before)


# ------------------------------------------------------------ parameter arrays and companions


@pytest.fixture
def per_image(tmp_path: Path, digits: Path) -> Path:
    """A per-image standardized .npy output: its parameters live in x.params.npz."""
    path = tmp_path / "conv" / "x.npy"
    path.parent.mkdir()
    result = cli(["convert", digits, "-o", path, "-s", "standardize", "--scope", "image", "-q"])
    assert result.code == 0, result.describe()
    assert path.with_name("x.params.npz").is_file()
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.0])
@pytest.mark.parametrize("command", ["invert", "verify", "export", "convert"])
def test_bad_values_in_the_parameter_arrays(
    tmp_path: Path, per_image: Path, digits: Path, value: float, command: str
) -> None:
    """Per-image parameters live in x.params.npz, outside the JSON record's own checks.
    (export and convert --params-from refuse per-image parameters anyway: they must still
    read the damaged arrays without a traceback.)"""
    arrays_path = per_image.with_name("x.params.npz")
    with np.load(arrays_path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["source_span"] = arrays["source_span"].copy()
    arrays["source_span"][3] = value
    np.savez(arrays_path, **arrays)
    before = snapshot(tmp_path)
    args: list[object] = {
        "invert": ["invert", per_image, "-o", tmp_path / "back.npy"],
        "verify": ["verify", per_image],
        "export": ["export", per_image],
        "convert": ["convert", digits, "-o", tmp_path / "y.npy", "--params-from", per_image],
    }[command]
    result = cli(args)
    says = (
        "source_span holds 0: the map would divide by zero"
        if value == 0
        else ("source_span holds non-finite values")
    )
    assert_clean_failure(result, names=[f"{per_image}: "], reasons=[says])
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("command", ["invert", "verify", "info"])
def test_parameter_arrays_of_the_wrong_length(
    tmp_path: Path, per_image: Path, command: str
) -> None:
    arrays_path = per_image.with_name("x.params.npz")
    with np.load(arrays_path) as archive:
        arrays = {name: archive[name][:5] for name in archive.files}
    np.savez(arrays_path, **arrays)
    before = snapshot(tmp_path)
    args = {
        "invert": ["invert", per_image, "-o", tmp_path / "back.npy"],
        "verify": ["verify", per_image],
        "info": ["info", per_image],
    }[command]
    result = cli(args)
    says = "source_low holds 5 per-image values for 100 images (length mismatch)"
    assert_clean_failure(result, names=[f"{per_image}: "], reasons=[says])
    assert_unchanged(tmp_path, before)


COMPANIONS = {
    "arrays outside the folder": ("arrays", "../elsewhere/stolen.npz"),
    "arrays absolute path": ("arrays", "{elsewhere}/stolen.npz"),
    "labels outside the folder": ("labels", "../elsewhere/stolen.npy"),
    "labels absolute path": ("labels", "{elsewhere}/stolen.npy"),
}


@pytest.mark.parametrize("case", sorted(COMPANIONS))
def test_sidecar_pointing_at_files_elsewhere(tmp_path: Path, per_image: Path, case: str) -> None:
    """The sidecar names the companion files: a name that leaves the output's folder is a
    hostile record, not a file to read."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    np.save(elsewhere / "stolen.npy", np.arange(100, dtype=np.int64))
    with np.load(per_image.with_name("x.params.npz")) as archive:
        np.savez(elsewhere / "stolen.npz", **{n: archive[n] for n in archive.files})
    field, value = COMPANIONS[case]
    sidecar = per_image.with_name("x.npy.json")
    record = load_json(sidecar)
    record["output"][field] = value.format(elsewhere=elsewhere)
    sidecar.write_text(json.dumps(record))
    before = snapshot(tmp_path)
    result = cli(["invert", per_image, "-o", tmp_path / "back.npy"])
    says = (
        f"invalid record: output.{field} must name a file beside x.npy, not "
        f"'{record['output'][field]}' (a path outside the output's folder)"
    )
    assert_clean_failure(result, names=[f"{sidecar}: "], reasons=[says])
    assert_unchanged(tmp_path, before)


# ------------------------------------------------------------ option values

OPTION_CASES = {
    # case: (options, words the error may use)
    "--to 0 1e308 overflows float32": (
        ["-s", "range", "--to", "0", "1e308"],
        ("--to", "float32", "overflow", "finite"),
    ),
    "--to 0 nan": (["-s", "range", "--to", "0", "nan"], ("--to", "nan", "finite")),
    "--from 0 inf": (["-s", "range", "--from", "0", "inf"], ("--from", "inf", "finite")),
    "--from 0 1e-320": (
        ["-s", "range", "--from", "0", "1e-320"],
        ("--from", "small", "overflow", "finite"),
    ),
    "--std 1e-320": (
        ["-s", "standardize", "--mean", "0.5", "--std", "1e-320"],
        ("--std", "small", "overflow", "finite"),
    ),
    "--std inf": (["-s", "standardize", "--mean", "0.5", "--std", "inf"], ("--std", "finite")),
    "--mean nan": (["-s", "standardize", "--mean", "nan", "--std", "0.5"], ("--mean", "finite")),
    "--chunk-mb nan": (["--chunk-mb", "nan"], ("--chunk-mb",)),
    "--chunk-mb inf": (["--chunk-mb", "inf"], ("--chunk-mb",)),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
@pytest.mark.parametrize("command", ["convert", "fit"])
def test_option_values_that_break_the_transform(
    tmp_path: Path, digits: Path, case: str, command: str
) -> None:
    options, words = OPTION_CASES[case]
    output = tmp_path / ("y.npy" if command == "convert" else "p.json")
    before = snapshot(tmp_path)
    result = cli([command, digits, "-o", output, *options])
    assert_refused_option(result, words)
    assert_unchanged(tmp_path, before)


# ------------------------------------------------------------ export precision

STD_PATTERNS = {
    "torchvision": r"std=\(([^)]*)\)",
    "albumentations": r"std=\(([^)]*)\)",
    "keras": r"variance=\(([^)]*)\)",
    "dali": r"std=\[([^\]]*)\]",
}


@pytest.mark.parametrize("target", [*sorted(STD_PATTERNS), "json"])
def test_export_digits_0_is_refused(fitted: Path, target: str) -> None:
    """The std of these digits is about 0.3 in [0,1] units: rounded to 0 digits it would
    print 0, and a Normalize with std 0 divides by zero. --digits takes 1 to 17."""
    result = cli(["export", fitted, "--to", target, "--digits", "0"])
    assert_refused_option(result, ("'--digits': 0 is not in the range 1<=x<=17",))
    assert result.code == 2 and result.stdout == b"", result.describe()


@pytest.mark.parametrize("target", [*sorted(STD_PATTERNS), "json"])
def test_export_fewest_digits_never_print_a_zero_std(fitted: Path, target: str) -> None:
    result = cli(["export", fitted, "--to", target, "--digits", "1"])
    assert result.code == 0, result.describe()
    text = result.stdout.decode()
    if target == "json":
        payload = json.loads(text)
        stds = [*payload["std"], *payload["std_unit"]]
    else:
        found = re.search(STD_PATTERNS[target], text)
        assert found, text
        stds = [float(v) for v in found.group(1).split(",") if v.strip()]
    assert stds and all(s != 0 for s in stds), f"export printed a zero std: {text}"
