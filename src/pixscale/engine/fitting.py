"""Parameters for a dataset: fitted from its statistics, or reused from elsewhere."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from pixscale.core.kernels import PixelArray
from pixscale.core.location import Location, PathOrUrl
from pixscale.core.params import Params
from pixscale.core.pixels import above_message, check_bits, dtype_bits, first_above, max_value
from pixscale.core.spec import Geometry, Spec, build_params
from pixscale.engine.scan import DEFAULT_CHUNK_MB, Progress, dataset_sums
from pixscale.errors import InputError, ParamsError, ShapeMismatchWarning, TestSplitWarning
from pixscale.sources.base import Source
from pixscale.store.records import load_params


def geometry_of(source: Source) -> Geometry:
    """The image shape, layout, channel axis and pixel dtype that parameters for
    ``source`` must fit."""
    return Geometry(source.image_shape, source.layout, source.channel_axis, source.dtype)


def fit_params(
    source: Source,
    spec: Spec,
    chunk_mb: float = DEFAULT_CHUNK_MB,
    progress: Progress | None = None,
    passes: int = 1,
) -> Params:
    """Parameters for ``spec`` on ``source``; fitted strategies read the data once."""
    if spec.scope == "image":
        raise ParamsError("per-image parameters belong to one dataset; convert it directly")
    bits = source_bits(source, spec)
    stats = None
    if spec.needs_dataset_stats:
        sums = dataset_sums(source, chunk_mb, progress, passes, spec.scope)
        check_range(source, int(sums.maximum.max()), bits)
        stats = sums.reduce(spec.scope, source.channel_axis)
    return build_params(spec, geometry_of(source), stats)


def source_bits(source: Source, spec: Spec) -> int:
    """The bits ``spec`` says ``source``'s pixels use (its dtype's width by default).

    Raises
    ------
    ParamsError
        Naming the input when ``--bits`` is more than its dtype holds.
    """
    if spec.bits is None:
        return dtype_bits(source.dtype)
    try:
        return check_bits(spec.bits, source.dtype)
    except ParamsError as exc:
        raise ParamsError(f"{source.files[0]}: {exc}") from exc


def check_range(source: Source, largest: int, bits: int) -> None:
    """Refuse data whose ``largest`` value is beyond ``bits`` bits, naming the input."""
    if largest > max_value(bits):
        raise InputError(f"{source.files[0]}: {above_message(largest, bits)}")


def check_chunk_range(source: Source, chunk: PixelArray, start: int, bits: int) -> None:
    """Refuse a chunk (images ``start``… of ``source``) holding a value beyond ``bits``
    bits, naming the input file that holds it and the first such value."""
    if bits >= dtype_bits(source.dtype):
        return
    found = first_above(chunk, max_value(bits))
    if found is not None:
        image, value = found
        path = source.file_at(start + image)
        where = f" (image {start + image})"
        raise InputError(f"{path}: {above_message(value, bits, where)}")


def reused_params(params_from: PathOrUrl, source: Source) -> Params:
    """Parameters stored in ``params_from``, checked against ``source`` and set to its
    layout; ``fitted_on`` names the data they were fitted on."""
    params, record = load_params(params_from)
    params = fitted_to(params, geometry_of(source), str(params_from))
    return replace(params, fitted_on=params.fitted_on or record.get("source"))


def check_fits(params: Params, data: Geometry, origin: str) -> None:
    """Reused parameters must match the data's pixel dtype, channels or pixel grid.

    Parameters fitted on uint16 data are refused for uint8 data and the reverse: their
    numbers are in the other dtype's units (a uint16 mean of 30000 means nothing to
    uint8 pixels), so applying them would silently give wrong values.
    """
    if params.source_dtype != data.dtype:
        raise ParamsError(
            f"{origin}: parameters for {params.source_dtype} pixels, data is {data.dtype}"
        )
    if params.scope == "image":
        raise ParamsError(f"{origin}: per-image parameters cannot be applied to other data")
    if params.scope == "pixel" and params.image_shape != data.image_shape:
        raise ParamsError(
            f"{origin}: per-pixel parameters for images of shape {params.image_shape}, "
            f"data has {data.image_shape}"
        )
    if params.scope == "channel" and params.source_low.size > 1:
        if params.source_low.size != data.n_channels:
            raise ParamsError(
                f"{origin}: parameters for {params.source_low.size} channels, "
                f"data has {data.n_channels}"
            )


def fitted_to(params: Params, data: Geometry, origin: str) -> Params:
    """``params`` checked against ``data`` and set to its image shape and layout.

    Statistics of one scope fit any image shape, so parameters fitted on images of another
    size or channel count are applied, with a ``ShapeMismatchWarning`` naming both shapes:
    they are statistics of other data (MNIST's applied to CIFAR, say).
    """
    check_fits(params, data, origin)
    shapes = [
        "×".join(str(n) for axis, n in enumerate(shape) if axis != channel_axis)
        + ("" if channel_axis is None or shape[channel_axis] == 1 else f"×{shape[channel_axis]}")
        for shape, channel_axis in (
            (params.image_shape, params.channel_axis),
            (data.image_shape, data.channel_axis),
        )
    ]
    if params.stats is not None and shapes[0] != shapes[1]:
        warnings.warn(
            f"{origin}: parameters fitted on {shapes[0]} images, applied to {shapes[1]} images "
            f"({params.scope} scope): statistics of other data",
            ShapeMismatchWarning,
            stacklevel=2,
        )
    return replace(
        params, layout=data.layout, image_shape=data.image_shape, channel_axis=data.channel_axis
    )


def prepare_params(
    source: Source,
    spec: Spec,
    reuse: Params | PathOrUrl | None,
    chunk_mb: float,
    progress: Progress | None,
) -> Params:
    """Reused parameters (given, or stored in a file), the per-image placeholder, or
    parameters fitted on ``source``."""
    if isinstance(reuse, Params):
        return reuse
    if reuse is not None:
        return reused_params(reuse, source)
    if spec.scope == "image":
        return image_placeholder(source, spec)
    return fit_params(source, spec, chunk_mb, progress, passes=2)


def image_placeholder(source: Source, spec: Spec) -> Params:
    """Per-image parameters are computed chunk by chunk while writing."""
    empty = np.empty(0, np.float64)
    return Params(
        spec.strategy,
        "image",
        empty,
        empty,
        0.0,
        1.0,
        source.layout,
        source.channel_axis,
        source.image_shape,
        spec.clip,
        source_dtype=source.dtype,
        bits=source_bits(source, spec),
    )


def merge_image_params(template: Params, parts: list[Params], zero_std_policy: str) -> Params:
    """One record of per-image parameters from the records of consecutive chunks."""
    constant = sum(p.zero_std["constant_count"] for p in parts if p.zero_std)
    zero_std = {"policy": zero_std_policy, "constant_count": constant} if constant else None
    base = parts[-1] if parts else template
    return replace(
        base,
        source_low=np.concatenate([p.source_low for p in parts]),
        source_span=np.concatenate([p.source_span for p in parts]),
        zero_std=zero_std,
    )


#: A file name part that marks a test or validation split.
TEST_SPLIT = re.compile(r"(^|[^a-z])(test|t10k|val|valid|validation)([^a-z]|$)", re.IGNORECASE)


def looks_like_test_split(paths: Sequence[Location]) -> bool:
    """True when any of ``paths`` is named like a test or validation split."""
    return any(TEST_SPLIT.search(p.name) for p in paths)


def warn_if_test_split(paths: Sequence[Location]) -> None:
    """Statistics belong to the training set: warn when the inputs look like test data."""
    if looks_like_test_split(paths):
        warnings.warn(
            "fitting on what looks like a test/validation split; "
            "fit on training data and reuse the parameters with --params-from.",
            TestSplitWarning,
            stacklevel=3,
        )
