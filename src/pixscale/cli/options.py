"""Every option shared by several commands, declared once so that a letter means the same
thing everywhere: the input options, the strategy options, -q, --overwrite, --chunk-mb."""

from __future__ import annotations

import functools
import glob
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from pixscale.core.layouts import INPUT_LAYOUTS
from pixscale.core.location import (
    Location,
    at_path,
    is_remote,
    locate,
    shown,
    storage_exceptions,
    storage_reason,
)
from pixscale.core.params import SCOPES, STRATEGIES, ZERO_STD_POLICIES
from pixscale.core.spec import Spec
from pixscale.engine.scan import DEFAULT_CHUNK_MB
from pixscale.errors import PixscaleError
from pixscale.sources.folder import MODES
from pixscale.sources.resize import FILTERS, FITS, Resize, parse_size

F = TypeVar("F", bound=Callable[..., Any])

#: The input options: click parameter name → keyword of ``open_source``.
READING = {"key": "key", "mode": "mode", "input_layout": "layout", "labels": "labels"}


def apply(command: F, options: Sequence[Callable[[F], F]]) -> F:
    for option in reversed(options):
        command = option(command)
    return command


def resize_of(size: str | None, fit: str | None, filter_name: str | None, draft: bool) -> Any:
    """The ``Resize`` that --resize, --fit, --filter and --no-jpeg-draft describe, or None."""
    if size is None:
        if fit is not None or filter_name is not None or not draft:
            raise click.UsageError("--fit, --filter and --no-jpeg-draft need --resize WxH")
        return None
    try:
        width, height = parse_size(size)
        return Resize(width, height, fit or "stretch", filter_name or "bilinear", draft)
    except PixscaleError as exc:
        raise click.BadParameter(str(exc), param_hint="--resize") from exc


def input_options(command: F) -> F:
    """--key, --mode, --input-layout, --labels and --resize (with --fit, --filter,
    --no-jpeg-draft), handed to the command as ``reading``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        reading = {name: kwargs.pop(option) for option, name in READING.items()}
        reading["resize"] = resize_of(
            kwargs.pop("resize"), kwargs.pop("fit"), kwargs.pop("filter"), kwargs.pop("jpeg_draft")
        )
        return command(*args, reading={k: v for k, v in reading.items() if v is not None}, **kwargs)

    return apply(
        cast(F, wrapper),
        [
            click.option(
                "--key",
                help="Array of an .npz (x_train), dataset of an HDF5 input (images/train), "
                "image column of a Parquet file, members of an archive (a folder or pattern), "
                "image extension of WebDataset samples (png).",
            ),
            click.option(
                "--mode",
                type=click.Choice(MODES),
                help="Images (folders, archives, Parquet): convert to greyscale (L) or RGB "
                "(default: as found).",
            ),
            click.option(
                "--input-layout",
                type=click.Choice(INPUT_LAYOUTS),
                help="Layout of array inputs (default: NHW for 3-D, NHWC for 4-D).",
            ),
            click.option(
                "--labels",
                metavar="FILE|COLUMN",
                type=click.Path(path_type=str),  # kept as typed: ./none is a file, none not
                help="Labels file (IDX or .npy); for Parquet, the label column when no such "
                "file exists (coarse_label); none: no labels (./none for a file so named); "
                "default: found beside the images (Parquet: label or fine_label, which info "
                "shows).",
            ),
            click.option(
                "--resize",
                metavar="WxH",
                help="Images (folders, archives, Parquet): bring every image to this size.",
            ),
            click.option(
                "--fit",
                type=click.Choice(FITS),
                help="With --resize: stretch (default), crop (centre, keeps the aspect) or "
                "pad (black borders, keeps the aspect).",
            ),
            click.option(
                "--filter",
                type=click.Choice(FILTERS),
                help="With --resize: the resampling filter (default: bilinear).",
            ),
            click.option(
                "--jpeg-draft/--no-jpeg-draft",
                default=True,
                help="With --resize: decode JPEGs at reduced size where the resize allows it "
                "(default: on).",
            ),
        ],
    )


def floats(text: str | None) -> tuple[float, ...] | None:
    """``0.485,0.456,0.406`` → a tuple of floats."""
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from exc


STRATEGY_NAMES = (
    "strategy",
    "scope",
    "source_range",
    "target_range",
    "from_data",
    "clip",
    "mean",
    "std",
    "zero_std",
    "bits",
)


def make_spec(options: dict[str, Any]) -> Spec:
    """The ``Spec`` the strategy options describe."""
    return Spec(
        strategy=options["strategy"],
        scope=options["scope"],
        source_range=options["source_range"] or None,
        target_range=options["target_range"] or None,
        from_data=options["from_data"],
        mean=floats(options["mean"]),
        std=floats(options["std"]),
        clip=options["clip"],
        zero_std=options["zero_std"],
        bits=options["bits"],
    )


def strategy_options(command: F) -> F:
    """The options that describe a strategy, handed to the command as ``spec``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        options = {name: kwargs.pop(name) for name in STRATEGY_NAMES}
        try:
            spec = make_spec(options)
        except PixscaleError as exc:
            raise click.ClickException(str(exc)) from exc
        return command(*args, spec=spec, **kwargs)

    return apply(
        cast(F, wrapper),
        [
            click.option(
                "-s",
                "--strategy",
                type=click.Choice(STRATEGIES),
                default="unit",
                show_default=True,
                help="unit: x/255 → [0,1]; symmetric: → [-1,1]; range: --from → --to; "
                "standardize: (x - mean)/std; none: cast only.",
            ),
            click.option(
                "--scope",
                type=click.Choice(SCOPES),
                default="global",
                show_default=True,
                help="One statistic for the dataset, per channel, per pixel position or per image.",
            ),
            click.option(
                "--from",
                "source_range",
                type=float,
                nargs=2,
                metavar="LO HI",
                help="range: source range (default 0 255).",
            ),
            click.option(
                "--to",
                "target_range",
                type=float,
                nargs=2,
                metavar="A B",
                help="range: target range (default 0 1).",
            ),
            click.option(
                "--from-data",
                is_flag=True,
                help="range: take the source range (min, max) from the data.",
            ),
            click.option("--clip", is_flag=True, help="Clamp outputs to the target range."),
            click.option(
                "--mean",
                metavar="M[,M…]",
                help="standardize: given mean(s) in [0,1] units, e.g. 0.485,0.456,0.406.",
            ),
            click.option(
                "--std",
                metavar="S[,S…]",
                help="standardize: given std(s) in [0,1] units, e.g. 0.229,0.224,0.225.",
            ),
            click.option(
                "--zero-std",
                type=click.Choice(ZERO_STD_POLICIES),
                default="unit",
                show_default=True,
                help="Constant channels/pixels: centre only (std taken as 1), or fail.",
            ),
            click.option(
                "--bits",
                type=click.IntRange(1, 16),
                metavar="N",
                help="Bits the pixels use (default: the dtype's, 8 or 16), e.g. 12 for 0..4095: "
                "unit, symmetric and range map from 0..2^N-1; larger values are an error.",
            ),
        ],
    )


STORAGE_HINT = "--storage-option"


def parse_storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as fsspec's storage options: ``true``/``false`` and numbers as
    such, a dotted key as nested options (``client_kwargs.region_name=eu-west-1``)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(
                f"{key or pair!r}: give KEY=VALUE", param_hint="--storage-option"
            )
        value: Any = text
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        elif re.fullmatch(r"-?\d+", text):
            value = int(text)
        *parents, last = key.split(".")
        level = options
        for name in parents:
            level = level.setdefault(name, {})
            if not isinstance(level, dict):
                raise click.BadParameter(
                    f"{key}: {name} is given twice", param_hint="--storage-option"
                )
        level[last] = value
    return options


def located(*names: str) -> Callable[[F], F]:
    """Add ``--storage-option KEY=VALUE`` and hand the parameters ``names`` (paths or URLs,
    single or several) to the command as ``Location``s carrying those options; the options
    also reach the input options (``reading``), for URL labels files."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            options = parse_storage_options(kwargs.pop("storage_option"))
            for name in names:
                value = kwargs.get(name)
                if isinstance(value, tuple):
                    kwargs[name] = tuple(locate(v, options) for v in value)
                elif value is not None:
                    kwargs[name] = locate(value, options)
            if options and "reading" in kwargs:
                kwargs["reading"] = {**kwargs["reading"], "storage_options": options}
            return command(*args, **kwargs)

        return click.option(
            "--storage-option",
            multiple=True,
            metavar="KEY=VALUE",
            help="An option of the object store's filesystem for URLs (s3://, gs://, az://), "
            "e.g. endpoint_url=http://localhost:9000 or anon=true; repeatable. Credentials "
            "come from the usual places (AWS_* variables, profiles) without it.",
        )(cast(F, wrapper))

    return decorate


quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar, report or notes on stderr."
)
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace an existing output (atomically)."
)


def finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


chunk_mb_option = click.option(
    "--chunk-mb",
    type=click.FloatRange(min=0.01, max=1 << 20),
    callback=finite,
    default=DEFAULT_CHUNK_MB,
    show_default=True,
    help="Input megabytes processed at a time (sets peak memory).",
)


#: Most names one quoted brace pattern may stand for.
MAX_BRACE_NAMES = 1 << 16
#: ``{0..99}`` or ``{000000..000099}`` (a numeric range), or ``{a,b}`` (a list).
BRACES = re.compile(r"\{(?:(\d+)\.\.(\d+)|([^{}]*,[^{}]*))\}")


def expand_braces(text: str) -> list[str]:
    """The names a quoted brace pattern stands for, as webdataset and the shell expand
    them: ``shard-{000000..000099}.tar`` (zero-padded to the wider bound), ``x.{npy,h5}``.

    Written here rather than taken from a package: the two forms webdataset's names use
    fit in a few lines, and a bound on the count keeps ``{0..999999999}`` from a bomb.
    """
    match = BRACES.search(text)
    if match is None:
        return [text]
    head, tail = text[: match.start()], text[match.end() :]
    low, high, listed = match.groups()
    if listed is not None:
        parts = listed.split(",")
    else:
        first, last = int(low), int(high)
        width = max(len(low), len(high)) if low.startswith("0") or high.startswith("0") else 0
        step = 1 if last >= first else -1
        if abs(last - first) >= MAX_BRACE_NAMES:
            raise click.BadParameter(f"{text}: stands for more than {MAX_BRACE_NAMES:,} names")
        parts = [str(n).zfill(width) for n in range(first, last + step, step)]
    names = [name for part in parts for name in expand_braces(head + part + tail)]
    if len(names) > MAX_BRACE_NAMES:
        raise click.BadParameter(f"{text}: stands for more than {MAX_BRACE_NAMES:,} names")
    return names


def expand_globs(inputs: Sequence[Location]) -> list[Location]:
    """Quoted patterns expand here: ``'shards/*.npy'`` in sorted order, and webdataset's
    ``'shard-{000000..000099}.tar'`` in the order it names (each of those must exist);
    URLs alike, by the object store's listing."""
    expanded: list[Location] = []
    for path in inputs:
        if is_remote(path):
            expanded += expand_remote(path)
            continue
        text = str(path)
        if path.exists():
            expanded.append(path)
            continue
        for name in expand_braces(text):
            if any(c in name for c in "*?["):
                matches = sorted(Path(p) for p in glob.glob(name))
                if not matches:
                    raise click.BadParameter(f"{name}: no file matches")
                expanded += matches
            elif name != text and not os.path.lexists(name):
                raise click.BadParameter(f"{name}: no such file (from {text})")
            else:
                expanded.append(Path(name))
    return expanded


def expand_remote(location: Location) -> list[Location]:
    """A URL pattern's matches (``s3://b/shard-*.tar``, braces too), or the URL itself."""
    text = shown(location)
    if not any(c in text for c in "*?[{") or location.exists():  # a name like a pattern
        return [location]
    head = text[: text.index("://") + 3]
    found: list[Location] = []
    for name in expand_braces(text):
        if not any(c in name for c in "*?["):
            found.append(at_path(location, name[len(head) :]))  # type: ignore[arg-type]
            continue
        try:
            matches = sorted(location.fs.glob(name[len(head) :]))  # type: ignore[union-attr]
        except storage_exceptions() as exc:
            raise click.BadParameter(f"{name}: {storage_reason(exc)}") from exc
        if not matches:
            raise click.BadParameter(f"{name}: no object matches")
        found += [at_path(location, match) for match in matches]  # type: ignore[arg-type]
    return found
