"""convert and fit on this machine: read in chunks, fit if needed, scale, write atomically."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixscale.core.layouts import convert_layout, output_shape
from pixscale.core.params import Params, dumps
from pixscale.core.spec import Spec, build_params
from pixscale.core.stats import image_stats
from pixscale.core.storage import PACKED_UINT16, Packing
from pixscale.core.transform import Transform
from pixscale.engine.fitting import (
    check_chunk_range,
    fit_params,
    fitted_to,
    geometry_of,
    merge_image_params,
    prepare_params,
    warn_if_test_split,
)
from pixscale.engine.record import build_record
from pixscale.engine.scan import DEFAULT_CHUNK_MB, Progress, aligned_chunk_images
from pixscale.errors import ParamsError
from pixscale.sources import Source, open_source
from pixscale.store.backends import all_companions
from pixscale.store.base import Writer
from pixscale.store.io.atomic import staged_outputs
from pixscale.store.io.background import BackgroundWriter
from pixscale.store.naming import STREAM
from pixscale.store.output import Output, check_targets, open_writer

if TYPE_CHECKING:
    from pixscale.engine.scaler import Scaler

#: Niceness of the hashing thread (Linux applies it per thread).
HASH_NICENESS = 10

PathLike = str | os.PathLike[str]


def hash_quietly(source: Source) -> str:
    """sha256 of the source at low priority, so it fills idle time beside the main work."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICENESS)
    return source.sha256()


#: The input options ``convert`` and ``fit`` take as keywords (``open_source``'s).
READING_OPTIONS = ("key", "mode", "layout", "labels", "resize")


def check_reading(verb: str, reading: dict[str, Any]) -> None:
    """Refuse, as Python does, a keyword that is no input option of ``verb``."""
    for name in reading:
        if name not in READING_OPTIONS:
            raise TypeError(
                f"{verb}() got an unexpected keyword argument {name!r}; its input options "
                f"are {', '.join(READING_OPTIONS)}"
            )


def as_source(
    inputs: PathLike | Sequence[PathLike] | Source, reading: dict[str, Any] | None = None
) -> Source:
    """``inputs`` opened with the input options in ``reading`` (key, mode, layout, labels)."""
    if isinstance(inputs, Source):
        return inputs
    return open_source(inputs, **(reading or {}))


def named_inputs(
    inputs: PathLike | Sequence[PathLike] | Source,
    reading: dict[str, Any],
    params_from: object = None,
) -> list[Path]:
    """The files a run names before any is opened: its inputs, a ``labels`` file, and the
    ``params_from`` file with the record companions it may have come with. None of them
    may be an output; what the source finds beside them is added once it is open
    (``StagedOutputs.protect``)."""
    if isinstance(inputs, Source):
        named = list(inputs.reads)
    elif isinstance(inputs, str | os.PathLike):
        named = [Path(inputs)]
    else:
        named = [Path(p) for p in inputs]
    labels = reading.get("labels")
    if labels is not None:
        named.append(Path(labels))
    if isinstance(params_from, str | os.PathLike):
        reused = Path(params_from)
        named += [reused, *all_companions(reused)]
    return [p for p in named if str(p) != STREAM]


def check_reuse(spec: Spec | None, params_from: object) -> Spec:
    """Reused parameters replace every strategy option but the zero-std policy."""
    spec = spec or Spec()
    if params_from is not None and spec != Spec(zero_std=spec.zero_std):
        raise ParamsError("--params-from replaces the strategy options; give one or the other")
    return spec


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
    output = output if isinstance(output, Output) else Output(Path(output))
    if overwrite and not output.overwrite:
        output = replace(output, overwrite=True)
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        staged_outputs(output.overwrite, named_inputs(inputs, reading, params_from)) as staged,
    ):
        check_targets(output, staged)  # before any input is read (stdin, say)
        source = as_source(inputs, reading)
        staged.protect(source.reads)
        reused: Params | PathLike | None = params_from
        if scaler is not None:
            spec, reused = scaler_params(scaler, source)
        if spec.needs_dataset_stats and reused is None:
            warn_if_test_split(source.files)
        layout = output.layout or source.layout
        shape = output_shape(source.shape, source.layout, layout)
        writer = open_writer(replace(output, layout=layout), shape, staged)
        try:
            params = prepare_params(source, spec, reused, chunk_mb, progress)
            check_storage(params, output)  # float16 range, packed exactness: before writing
            # Hashing releases the GIL and overlaps the transform pass, which waits on the
            # disk; during a statistics pass it would only take CPU from the two threads.
            digest = pool.submit(hash_quietly, source)
            params, written = write_images(
                source, params, spec, writer, chunk_mb, progress, layout, output.dtype, output.store
            )
            fitted_here = spec.needs_stats and reused is None and params.scope != "image"
            record = build_record(
                params, source, digest.result(), fitted_here, layout, output.dtype
            )
            arrays = params.external_arrays()
            if output.store == "uint8":
                packing = Transform(params).packing()
                record["output"].update(store="uint8", packing=packing_record(params, packing))
                arrays.update(packing_arrays(params, packing))
            record["output"] = writer.finish(record, arrays, source.labels)
            if not output.to_stdout:
                staged.seal(written, record)
            if output.params_out is not None:
                staged.stage(output.params_out).write_text(dumps(record))
        finally:
            writer.close()
    return record


def check_storage(params: Params, output: Output) -> None:
    """Refuse, before any data is written, a float16 output that would overflow and a
    packed output that would not decode exactly (both proven on every input), or whose
    pixels do not fit uint8."""
    if output.store == "uint8" and params.source_dtype != "uint8":
        raise ParamsError(PACKED_UINT16)
    if output.store == "uint8" and params.scope != "image":
        Transform(params).packing()
    elif output.dtype == "float16":
        Transform(params, "float16")  # per-image scope: checked on a bound


def packing_record(params: Params, packing: Packing) -> dict[str, Any]:
    """The record's ``output.packing``: the CF pair per scope element, and how it decodes."""

    def encode(name: str, values: Any) -> Any:
        if params.stored_apart(values):
            return {"array": name, "shape": list(values.shape)}
        return values.tolist()

    return {
        "decode": "float32(float64(x) * scale_factor + add_offset)",
        "scale_factor": encode("scale_factor", packing.scale_factor),
        "add_offset": encode("add_offset", packing.add_offset),
        "nudged": packing.nudged,
    }


def packing_arrays(params: Params, packing: Packing) -> dict[str, Any]:
    """The CF pairs too large for the record (per pixel, per image), stored beside it."""
    pairs = {"scale_factor": packing.scale_factor, "add_offset": packing.add_offset}
    return {name: values for name, values in pairs.items() if params.stored_apart(values)}


def scaler_params(scaler: Scaler, source: Source) -> tuple[Spec, Params | None]:
    """What ``scaler`` contributes to a conversion: its strategy, and its fitted parameters
    checked against ``source`` (none for per-image scope, fitted per chunk as usual)."""
    if scaler.spec.scope == "image" and (scaler.params_ is None or scaler.params_.scope == "image"):
        return scaler.spec, None
    params = fitted_to(scaler.fitted(), geometry_of(source), "scaler")
    return Spec(zero_std=scaler.spec.zero_std), replace(params, fitted_on=scaler.fitted_on)


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
        Input options: ``key``, ``mode``, ``layout``, ``labels``, ``resize``; any other
        keyword is a ``TypeError``.

    Returns
    -------
    dict
        The params record (``pixscale.params/1``).
    """
    check_reading("fit", reading)
    spec = spec or Spec()
    with staged_outputs(overwrite, named_inputs(inputs, reading)) as staged:
        if output is not None:
            staged.check(Path(output))  # before any input is read (stdin, say)
        source = as_source(inputs, reading)
        staged.protect(source.reads)
        if spec.needs_stats:
            warn_if_test_split(source.files)
        params = fit_params(source, spec, chunk_mb, progress)
        record = params.to_record()
        record["fitted_on"] = source.describe()
        if output is not None:
            staged.stage(Path(output)).write_text(dumps(record))
    return record
