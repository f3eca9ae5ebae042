"""The one builder of the parameter record that every engine writes."""

from __future__ import annotations

from typing import Any

from pixscale.core.params import Params
from pixscale.core.transform import Transform
from pixscale.sources.base import Source


def source_record(source: Source, sha256: str) -> dict[str, Any]:
    """Provenance of ``source``: names, digest, shape, format, and where its labels came from."""
    described = source.describe(sha256)
    if source.labels is not None:
        described["labels"] = source.labels.origin
    return described


def build_record(
    params: Params,
    source: Source,
    sha256: str,
    fitted_here: bool,
    layout: str,
    dtype: str = "float32",
) -> dict[str, Any]:
    """The record of a conversion, before the writer adds where it put things.

    ``fitted_here`` says the parameters were fitted on this very source (not reused, not
    per image), so that ``fitted_on`` names it.
    """
    record = params.to_record(arrays_external=True)
    record["source"] = source_record(source, sha256)
    if fitted_here:
        record["fitted_on"] = record["source"]
    record["kernel"] = Transform(params, dtype).kernel_name
    record["output"] = {"layout": layout}
    return record
