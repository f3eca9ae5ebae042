"""The one conversion pipeline, plan → fit → write → record → commit, written once; an
``Executor`` runs its data passes (this machine's threads, or a Dask cluster).

Whatever executes them, a conversion checks its targets before reading any input, protects
every file it reads from its outputs, proves float16 and packed outputs before writing,
builds the one record, and commits only what it sealed: exactly the declared images with
their checksum (``StagedOutputs``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pixscale.core.layouts import output_shape
from pixscale.core.location import Location, PathOrUrl, is_remote, locate
from pixscale.core.params import Params, dumps
from pixscale.core.spec import Spec
from pixscale.core.storage import PACKED_UINT16, Packing
from pixscale.core.transform import Transform
from pixscale.engine.fitting import fitted_to, geometry_of, warn_if_test_split
from pixscale.engine.record import build_record
from pixscale.engine.scan import Progress
from pixscale.errors import ParamsError
from pixscale.sources import Source, open_source
from pixscale.store.backends import all_companions
from pixscale.store.base import Writer
from pixscale.store.io.atomic import StagedOutputs, staged_outputs
from pixscale.store.naming import STREAM
from pixscale.store.output import Output, check_targets

if TYPE_CHECKING:
    from pixscale.engine.scaler import Scaler

#: Niceness of the hashing thread (Linux applies it per thread).
HASH_NICENESS = 10
#: The input options ``convert`` and ``fit`` take as keywords (``open_source``'s).
READING_OPTIONS = ("key", "mode", "layout", "labels", "resize", "storage_options")

PathLike = PathOrUrl
Inputs = PathLike | Sequence[PathLike] | Source


@dataclass
class Written:
    """What an executor's write pass did: the parameters (per-image ones merged), the
    images handed to the output, and fields it adds to the record's ``output``."""

    params: Params
    images: int
    output: dict[str, Any] = field(default_factory=dict)


class Executor(ABC):
    """Runs the pipeline's data passes for one conversion."""

    @abstractmethod
    def check(self, output: Output) -> None:
        """Refuse outputs this executor cannot write, before anything is read."""

    @abstractmethod
    def open(self, output: Output, shape: tuple[int, ...], staged: StagedOutputs) -> Writer:
        """The output's writer (targets checked, room confirmed)."""

    @abstractmethod
    def fit(
        self,
        source: Source,
        spec: Spec,
        reused: Params | PathLike | None,
        chunk_mb: float,
        progress: Progress | None,
    ) -> Params:
        """The parameters: reused, fixed, or fitted on the whole source."""

    @abstractmethod
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
        """The apply pass into ``writer`` (or its regions)."""


def run_conversion(
    executor: Executor,
    inputs: Inputs,
    output: Output,
    spec: Spec,
    *,
    params_from: PathLike | None = None,
    scaler: Scaler | None = None,
    chunk_mb: float,
    progress: Progress | None = None,
    reading: dict[str, Any] | None = None,
    extra_inputs: Sequence[Location] = (),
) -> dict[str, Any]:
    """Convert ``inputs`` into ``output`` with ``executor`` (see the module notes);
    returns the record as written."""
    reading = reading or {}
    executor.check(output)
    named = [*named_inputs(inputs, reading, params_from), *extra_inputs]
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        staged_outputs(output.overwrite, named) as staged,
    ):
        check_targets(output, staged)  # before any input is read (stdin, say)
        source = as_source(inputs, reading)
        staged.protect(source.reads)
        reused: Params | PathLike | None = params_from
        if scaler is not None:
            spec, reused = scaler_params(scaler, source)
        if spec.needs_dataset_stats and reused is None:
            warn_if_test_split(source.files)
        output = replace(output, layout=output.layout or source.layout)
        assert output.layout is not None
        shape = output_shape(source.shape, source.layout, output.layout)
        writer = executor.open(output, shape, staged)
        try:
            params = executor.fit(source, spec, reused, chunk_mb, progress)
            check_storage(params, output)  # float16 range, packed exactness: before writing
            # Hashing releases the GIL and overlaps the write pass, which waits on the disk;
            # during a statistics pass it would only take CPU from the statistics.
            digest = pool.submit(hash_quietly, source)
            written = executor.write(source, params, spec, writer, output, chunk_mb, progress)
            params = written.params
            fitted_here = spec.needs_stats and reused is None and params.scope != "image"
            record = build_record(
                params, source, digest.result(), fitted_here, output.layout, output.dtype
            )
            record["output"].update(written.output)
            arrays = params.external_arrays()
            if output.store == "uint8":
                packing = Transform(params).packing()
                record["output"].update(store="uint8", packing=packing_record(params, packing))
                arrays.update(packing_arrays(params, packing))
            record["output"] = writer.finish(record, arrays, source.labels)
            if not output.to_stdout:
                staged.seal(written.images, record)
            if output.params_out is not None:
                staged.stage(output.params_out).write_text(dumps(record))
        finally:
            writer.close()
    return record


def hash_quietly(source: Source) -> str:
    """sha256 of the source at low priority, so it fills idle time beside the main work."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICENESS)
    return source.sha256()


def check_reading(verb: str, reading: dict[str, Any]) -> None:
    """Refuse, as Python does, a keyword that is no input option of ``verb``."""
    for name in reading:
        if name not in READING_OPTIONS:
            raise TypeError(
                f"{verb}() got an unexpected keyword argument {name!r}; its input options "
                f"are {', '.join(READING_OPTIONS)}"
            )


def as_source(inputs: Inputs, reading: dict[str, Any] | None = None) -> Source:
    """``inputs`` opened with the input options in ``reading`` (key, mode, layout, labels)."""
    if isinstance(inputs, Source):
        return inputs
    return open_source(inputs, **(reading or {}))


def named_inputs(
    inputs: Inputs, reading: dict[str, Any], params_from: object = None
) -> list[Location]:
    """The files a run names before any is opened: its inputs, a ``labels`` file, and the
    ``params_from`` file with the record companions it may have come with. None of them
    may be an output; what the source finds beside them is added once it is open
    (``StagedOutputs.protect``)."""
    options = reading.get("storage_options")
    named: list[Location]
    if isinstance(inputs, Source):
        named = list(inputs.reads)
    elif isinstance(inputs, str | os.PathLike) or is_remote(inputs):
        named = [locate(inputs, options)]
    else:
        named = [locate(p, options) for p in inputs]
    labels = reading.get("labels")
    if labels is not None:
        named.append(locate(labels, options))
    if isinstance(params_from, str | os.PathLike) or is_remote(params_from):
        reused = locate(params_from, options)
        named += [reused, *all_companions(reused)]
    return [p for p in named if str(p) != STREAM]


def check_reuse(spec: Spec | None, params_from: object) -> Spec:
    """Reused parameters replace every strategy option but the zero-std policy."""
    spec = spec or Spec()
    if params_from is not None and spec != Spec(zero_std=spec.zero_std):
        raise ParamsError("--params-from replaces the strategy options; give one or the other")
    return spec


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
