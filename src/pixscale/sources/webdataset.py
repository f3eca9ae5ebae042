"""WebDataset shards: tar files of samples, ``KEY.jpg`` (or .png, …) beside ``KEY.cls``.

A sample is the consecutive members whose names share a key: the path up to the first dot
of the file name, as WebDataset defines it; the rest is the member's extension. A key that
comes back after other samples, or an extension twice in one sample, is refused: reading
either would lose a member. Each sample gives one image, labelled by the integer written as
ASCII digits in its ``.cls`` member, if the shard has them. Several shards on the command
line are read as one dataset, in the order given; a key that two of them hold is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
import numpy.typing as npt

from pixscale.core.location import Location
from pixscale.errors import InputError
from pixscale.sources.archive import PILLOW_PURPOSE, TarImages, is_hidden, read_tar_member
from pixscale.sources.base import MAX_LABEL, Labels, Source
from pixscale.sources.members import tar_members
from pixscale.sources.pictures import (
    IMAGE_SUFFIXES,
    Encoded,
    first_expect,
    image_fields,
    require_pillow,
)
from pixscale.sources.resize import Resize

#: Extensions of the image members, alone or last (``seg.png``); ``--key`` picks one when a
#: sample holds several.
IMAGE_EXTENSIONS = tuple(s.lstrip(".") for s in IMAGE_SUFFIXES)
LABEL_EXTENSION = "cls"
#: A ``.cls`` member holds one integer as text; anything longer is not a label.
MAX_LABEL_BYTES = 64
#: A label as WebDataset writes it: ASCII digits, perhaps with ASCII white space around them
#: (``echo 3 > KEY.cls`` adds a newline).
LABEL_TEXT = re.compile(rb"[ \t\n\r\v\f]*([0-9]+)[ \t\n\r\v\f]*")


@dataclass
class Sample:
    """The members of one sample seen so far: image extensions and positions, label."""

    key: str
    images: dict[str, int] = field(default_factory=dict)
    label: int | None = None
    extensions: set[str] = field(default_factory=set)


@dataclass
class WebDatasetShard(TarImages):
    """One shard, with the keys of its samples: a key names one sample across all shards."""

    #: Every sample key of the shard, UTF-8 encoded as tar names are.
    keys: npt.NDArray[np.bytes_] = field(default_factory=lambda: np.empty(0, "S1"))

    @staticmethod
    def check_joined(parts: Sequence[Source]) -> None:
        """Refuse shards read as one dataset that share a sample key, naming the key and
        both shards."""
        shards = [part for part in parts if isinstance(part, WebDatasetShard)]
        if len(shards) < 2:
            return
        keys = np.concatenate([shard.keys for shard in shards])
        owners = np.repeat(np.arange(len(shards)), [len(shard.keys) for shard in shards])
        order = np.argsort(keys, kind="stable")  # a key's first shard comes first
        ranked = keys[order]
        repeated = np.flatnonzero(ranked[1:] == ranked[:-1])
        if repeated.size:
            at = int(repeated[0])
            first, again = shards[owners[order[at]]], shards[owners[order[at + 1]]]
            key = bytes(ranked[at]).decode("utf-8", "surrogateescape")
            raise InputError(
                f"{again.files[0]}: sample key {key!r} is also in {first.files[0]}; a key "
                "names one sample across all shards"
            )


def split_name(name: str) -> tuple[str, str]:
    """``train/000123.seg.png`` → (``train/000123``, ``seg.png``)."""
    path = PurePosixPath(name)
    stem, _, extension = path.name.partition(".")
    return str(path.parent / stem), extension.lower()


def parse_label(origin: str, data: bytes) -> int:
    """The label in a ``.cls`` member: ASCII digits only (no sign, underscore, inner space
    or other digits ``int`` would take), within int64; white space around them is allowed."""
    found = LABEL_TEXT.fullmatch(data)
    if found is None:
        text = data[:20].decode("ascii", "replace")
        raise InputError(f"{origin}: label {text!r} is not a whole number in ASCII digits")
    value = int(found.group(1))
    if value > MAX_LABEL:
        raise InputError(f"{origin}: label {value} is beyond int64 ({MAX_LABEL})")
    return value


def next_sample(
    path: Location, samples: dict[str, Sample], current: Sample | None, member: str
) -> Sample:
    """The sample ``member`` belongs to: the current one, or a new one if its key was not
    seen before."""
    stem, extension = split_name(member)
    if current is None or stem != current.key:
        if stem in samples:
            raise InputError(
                f"{path}:{member}: key {stem!r} appears again after other samples; a "
                "sample's members must be consecutive"
            )
        current = samples[stem] = Sample(stem)
    if extension in current.extensions:
        raise InputError(f"{path}:{member}: sample {stem!r} already holds a .{extension} member")
    current.extensions.add(extension)
    return current


def choose_image(path: Location, sample: Sample, key: str | None) -> int:
    """The position of the sample's image member: the one there is, or ``--key``'s."""
    if key is not None:
        if key not in sample.images:
            held = ", ".join(sample.images) or "no image"
            raise InputError(f"{path}:{sample.key}: sample has no .{key} member (it holds {held})")
        return sample.images[key]
    if len(sample.images) != 1:
        held = ", ".join(sample.images) or "no image"
        hint = "; choose one with --key" if sample.images else ""
        raise InputError(f"{path}:{sample.key}: sample holds {held}{hint}")
    return next(iter(sample.images.values()))


def open_webdataset(
    path: Location, key: str | None, mode: str | None, resize: Resize | None = None
) -> WebDatasetShard:
    """One WebDataset shard, read in one pass: samples, labels and the first image."""
    image_module = require_pillow(PILLOW_PURPOSE)
    wanted = key.lower().lstrip(".") if key is not None else None
    samples: dict[str, Sample] = {}
    sample: Sample | None = None
    first: Encoded | None = None
    for position, archive, member in tar_members(path):
        if member.isdir() or is_hidden(member.name):
            continue
        sample = next_sample(path, samples, sample, member.name)
        extension = split_name(member.name)[1]
        origin = f"{path}:{member.name}"
        if extension == LABEL_EXTENSION:
            if member.size > MAX_LABEL_BYTES:
                raise InputError(f"{origin}: {member.size:,} bytes is no label")
            sample.label = parse_label(origin, read_tar_member(archive, origin, member))
        elif extension.rpartition(".")[2] in IMAGE_EXTENSIONS or extension == wanted:
            if first is None and (wanted is None or extension == wanted):
                first = Encoded(origin, read_tar_member(archive, origin, member))
            sample.images[extension] = position
    chosen = [s for s in samples.values() if s.images or s.label is not None]
    if first is None or not chosen:
        raise InputError(f"{path}: holds no WebDataset samples with images")
    # archive order of the images, whatever order the samples' other members came in
    chosen.sort(key=lambda s: choose_image(path, s, wanted))
    members = [choose_image(path, s, wanted) for s in chosen]
    expect = first_expect(image_module, first, mode, resize)
    return WebDatasetShard(
        name=path.name if key is None else f"{path.name}:{key}",
        format="webdataset",
        files=(path,),
        labels=sample_labels(path, chosen),
        members=tuple(members),
        keys=np.array([k.encode("utf-8", "surrogateescape") for k in samples], "S"),
        **image_fields(expect, len(members)),
    )


def sample_labels(path: Location, samples: list[Sample]) -> Labels | None:
    """The ``.cls`` labels: all samples have one, or none do."""
    unlabelled = [s.key for s in samples if s.label is None]
    if len(unlabelled) == len(samples):
        return None
    if unlabelled:
        raise InputError(f"{path}:{unlabelled[0]}: sample has no .cls label, others do")
    return Labels(np.asarray([s.label for s in samples], np.int64), f"{path.name} (.cls)")
