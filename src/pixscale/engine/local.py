"""convert and fit on this machine: the pipeline's passes run by threads here (chunks read,
scaled and written in the background, statistics on every core)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pixscale.core.layouts import convert_layout
from pixscale.core.location import PathOrUrl, locate
from pixscale.core.params import Params, dumps
from pixscale.core.spec import Spec, build_params
from pixscale.core.stats import image_stats
from pixscale.core.transform import Transform
from pixscale.engine.fitting import (
    check_chunk_range,
    fit_params,
    geometry_of,
    merge_image_params,
    prepare_params,
    warn_if_test_split,
)
from pixscale.engine.pipeline import (
    Executor,
    Written,
    as_source,
    check_reading,
    check_reuse,
    named_inputs,
    run_conversion,
)
from pixscale.engine.scan import DEFAULT_CHUNK_MB, Progress, aligned_chunk_images
from pixscale.errors import OutputError, ParamsError
from pixscale.sources import Source
from pixscale.store.base import Writer
from pixscale.store.io.atomic import StagedOutputs, staged_outputs
from pixscale.store.io.background import BackgroundWriter
from pixscale.store.output import Output, open_writer

if TYPE_CHECKING:
    from pixscale.engine.scaler import Scaler

PathLike = PathOrUrl


class LocalExecutor(Executor):
    """The passes on this machine: statistics on every core, the write pass with the
    writing done by a background thread."""

    def check(self, output: Output) -> None:
        """Every output kind is written here."""

    def open(self, output: Output, shape: tuple[int, ...], staged: StagedOutputs) -> Writer:
        return open_writer(output, shape, staged)

    def fit(
        self,
        source: Source,
        spec: Spec,
        reused: Params | PathLike | None,
        chunk_mb: float,
        progress: Progress | None,
    ) -> Params:
        return prepare_params(source, spec, reused, chunk_mb, progress)

    def write(
        self,
        source: Source,
        params: Params,
        spec: Spec,
        writer: Writer,
        output: Output,
        chunk_mb: float,
        progress: Progress | None,
    ) -> Written:
        params, images = write_images(
            source, params, spec, writer, chunk_mb, progress, output.layout, output.dtype,
            output.store,
        )  # fmt: skip
        return Written(params, images)


def convert(
    inputs: PathLike | Sequence[PathLike] | Source,
    output: PathLike | Output,
    spec: Spec | None = None,
    *,
    params_from: PathLike | None = None,
    scaler: Scaler | None = None,
    overwrite: bool = False,
    chunk_mb: float = DEFAULT_CHUNK_MB,
    progress: Progress | None = None,
    **reading: Any,
) -> dict[str, Any]:
    """Convert uint8 (or uint16) images to float32 and record the parameters.

    Parameters
    ----------
    inputs
        One input file or folder, several of one format (converted as one dataset), or
        an open ``Source``.
    output
        The output file (``.h5``/``.npy``) or an ``Output`` with the writing options.
    spec
        The strategy; the default is ``unit`` (x / 255).
    params_from
        A params JSON or earlier output whose parameters are applied unchanged.
    scaler
        A fitted ``Scaler`` whose parameters are applied unchanged (or, for per-image
        scope, whose strategy is applied).
    overwrite
        Replace an existing output (atomically; never an input). With an ``Output``,
        either this or its own ``overwrite`` allows it.
    chunk_mb
        Input megabytes processed at a time (sets peak memory).
    progress
        Called after every chunk with (images, total images × passes, input bytes).
    **reading
        Input options: ``key``, ``mode``, ``layout``, ``labels``, ``resize``; any other
        keyword is a ``TypeError``.

    Returns
    -------
    dict
        The parameter record, as written beside the data.
    """
    check_reading("convert", reading)
    spec = check_reuse(spec, params_from if scaler is None else scaler)
    if scaler is not None and params_from is not None:
        raise ParamsError("give params_from or scaler, not both")
    if not isinstance(output, Output):
        output = Output(locate(output, reading.get("storage_options"), OutputError))
    if overwrite and not output.overwrite:
        output = replace(output, overwrite=True)
    return run_conversion(
        LocalExecutor(),
        inputs,
        output,
        spec,
        params_from=params_from,
        scaler=scaler,
        chunk_mb=chunk_mb,
        progress=progress,
        reading=reading,
    )


def write_images(
    source: Source,
    params: Params,
    spec: Spec,
    writer: Writer,
    chunk_mb: float,
    progress: Progress | None,
    layout: str | None = None,
    dtype: str = "float32",
    store: str = "float",
) -> tuple[Params, int]:
    """The apply pass; for per-image scope the parameters are fitted per chunk here.
    Returns the parameters and the number of images handed to ``writer``.

    ``dtype`` float16 writes each value as the float16 nearest the exact result; ``store``
    uint8 writes the pixels themselves (packed), once each chunk's parameters are proven
    to decode them exactly.
    """
    layout = layout or source.layout
    packed = store == "uint8"
    rows = min(aligned_chunk_images(source, chunk_mb), source.n_images)
    passes = 2 if spec.needs_dataset_stats and params.fitted_on is None else 1
    total = source.n_images * passes
    per_image = params.scope == "image"
    transform = None if per_image or packed else Transform(params, dtype)
    geometry = geometry_of(source)
    chunk_params: list[Params] = []
    start = 0
    kind = "u1" if packed else dtype
    with BackgroundWriter(writer, (rows, *source.image_shape), dtype=kind) as background:
        for chunk in source.chunks(rows):
            out = background.buffer(chunk.shape[0])
            check_chunk_range(source, chunk, start, params.bits)
            if per_image:
                fitted = build_params(spec, geometry, image_stats(chunk))
                chunk_params.append(fitted)
            if packed:
                if per_image:
                    Transform(fitted).packing()  # refuse before this chunk is written
                out[...] = chunk
            elif transform is not None:
                transform.apply(chunk, start, out)
            else:
                Transform(fitted, dtype).apply(chunk, 0, out)
            background.write(convert_layout(out, source.layout, layout))
            start += chunk.shape[0]
            if progress:
                progress(chunk.shape[0], total, chunk.nbytes)
    if not per_image:
        return params, start
    return merge_image_params(params, chunk_params, spec.zero_std), start


def fit(
    inputs: PathLike | Sequence[PathLike] | Source,
    output: PathLike | None = None,
    spec: Spec | None = None,
    *,
    overwrite: bool = False,
    chunk_mb: float = DEFAULT_CHUNK_MB,
    progress: Progress | None = None,
    **reading: Any,
) -> dict[str, Any]:
    """Fit parameters on the inputs (as one dataset) and write them as a params JSON.

    Parameters
    ----------
    inputs
        One input, several of one format (fitted as one dataset), or an open ``Source``.
    output
        Where to write the params JSON; None writes nothing.
    spec
        The strategy to fit; the default is ``unit`` (x / 255), as for ``convert``.
    overwrite
        Replace an existing ``output``.
    chunk_mb, progress
        As for ``convert``.
    **reading
        Input options: ``key``, ``mode``, ``layout``, ``labels``, ``resize``, and
        ``storage_options`` for URLs (inputs and ``output``); any other keyword is a
        ``TypeError``.

    Returns
    -------
    dict
        The params record (``pixscale.params/1``).
    """
    check_reading("fit", reading)
    spec = spec or Spec()
    target = None if output is None else locate(output, reading.get("storage_options"))
    with staged_outputs(overwrite, named_inputs(inputs, reading)) as staged:
        if target is not None:
            staged.check(target)  # before any input is read (stdin, say)
        source = as_source(inputs, reading)
        staged.protect(source.reads)
        if spec.needs_stats:
            warn_if_test_split(source.files)
        params = fit_params(source, spec, chunk_mb, progress)
        record = params.to_record()
        record["fitted_on"] = source.describe()
        if target is not None:
            staged.stage(target).write_text(dumps(record))
    return record
