"""Several inputs of one format and image shape read as one dataset (shards, batches)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pixscale.core.location import Location
from pixscale.errors import InputError
from pixscale.sources.base import Labels, Source, UInt8Array


@dataclass
class ConcatSource(Source):
    """Several sources of one image shape, read one after another."""

    parts: tuple[Source, ...] = ()

    @property
    def reads(self) -> tuple[Location, ...]:
        return tuple(dict.fromkeys(f for part in self.parts for f in part.reads))

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        for part in self.parts:
            yield from part.chunks(max_images)

    def file_at(self, index: int) -> Location:
        """The input file holding image ``index``."""
        for part in self.parts:
            if index < part.n_images:
                return part.file_at(index)
            index -= part.n_images
        return self.files[-1]


def concat(parts: list[Source]) -> Source:
    first = parts[0]
    for part in parts[1:]:
        if part.format != first.format:
            raise InputError(
                f"{part.files[0]}: is {part.format}, {first.files[0]} is {first.format}; "
                "several inputs must share one format"
            )
        if part.dtype != first.dtype:
            raise InputError(
                f"{part.files[0]}: holds {part.dtype} pixels, {first.files[0]} {first.dtype}; "
                "several inputs must share one dtype"
            )
        if part.image_shape != first.image_shape or part.layout != first.layout:
            raise InputError(
                f"{part.files[0]}: images of shape {part.image_shape} do not match "
                f"{first.files[0]} ({first.image_shape})"
            )
    # what only the inputs together show, a format may refuse (a WebDataset key in two shards)
    check_joined = getattr(type(first), "check_joined", None)
    if check_joined is not None:
        check_joined(parts)
    labelled = [p.labels for p in parts if p.labels is not None]
    labels = None
    if len(labelled) == len(parts):
        for part in parts[1:]:
            assert part.labels is not None
            if part.labels.class_names != labelled[0].class_names:
                raise InputError(
                    f"{part.files[0]}: its class names differ from those of {first.files[0]}; "
                    "labels of several inputs must name the same classes"
                )
        labels = Labels(
            np.concatenate([lab.values for lab in labelled]),
            ", ".join(lab.origin for lab in labelled),
            labelled[0].class_names,
        )
    return ConcatSource(
        name=" + ".join(p.name for p in parts),
        format=first.format,
        shape=(sum(p.n_images for p in parts), *first.image_shape),
        layout=first.layout,
        files=tuple(f for p in parts for f in p.files),
        labels=labels,
        parts=tuple(parts),
        dtype=first.dtype,
        resize=first.resize,
    )
