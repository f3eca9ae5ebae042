"""The common shape of every reader: uint8 (or uint16) images in chunks along the first
axis."""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, final

import numpy as np
import numpy.typing as npt

from pixscale.core.labels import MAX_LABEL as MAX_LABEL
from pixscale.core.labels import Labels as Labels  # every reader builds them
from pixscale.core.layouts import channel_axis_of
from pixscale.core.location import Location, name_of, open_bytes
from pixscale.core.pixels import MAX_IMAGE_VALUES as MAX_IMAGE_VALUES
from pixscale.errors import InputError

if TYPE_CHECKING:
    from pixscale.sources.resize import Resize

UInt8Array = npt.NDArray[np.uint8]

#: Largest labels array read whole: int64 labels of 32 Mi images, 256 MiB.
MAX_LABELS_BYTES = 256 << 20


@dataclass
class Source(ABC):
    """A uint8 or uint16 image dataset that can be read in chunks, any number of times.

    Chunks are C-ordered arrays of ``dtype`` in native byte order.
    """

    name: str
    format: str
    shape: tuple[int, ...]
    layout: str
    files: tuple[Location, ...]
    labels: Labels | None = field(default=None, kw_only=True)
    #: The pixels' dtype: ``"uint8"`` or ``"uint16"`` (``core.pixels.SOURCE_DTYPES``).
    dtype: str = field(default="uint8", kw_only=True)
    #: How encoded images were brought to one size (``--resize``), or None.
    resize: Resize | None = field(default=None, kw_only=True)
    #: Whether ``window`` reads only its own images, so that windows can be read in parallel.
    random_access: ClassVar[bool] = False

    @final
    def chunks(self, max_images: int) -> Iterator[UInt8Array]:
        """Every image, in consecutive arrays (of ``dtype``) of at most ``max_images`` each.

        What a reader yields is checked here, for every format alike: each chunk holds
        images of the declared shape and dtype, and together exactly ``n_images`` of them;
        a file that holds more or fewer than its header declared is refused naming it.
        """
        return self.checked(self.read_chunks(max_images), 0, self.n_images, max_images)

    @final
    def window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        """Images ``start``…``stop - 1`` in chunks, checked as ``chunks`` are."""
        if not 0 <= start <= stop <= self.n_images:
            raise ValueError(f"window {start}…{stop} outside 0…{self.n_images}")
        return self.checked(self.read_window(start, stop, max_images), start, stop, max_images)

    def checked(
        self, chunks: Iterator[UInt8Array], start: int, stop: int, max_images: int
    ) -> Iterator[UInt8Array]:
        """``chunks`` as they come, refused where they stop matching the declaration."""
        position = start
        expected = np.dtype(self.dtype)
        for chunk in chunks:
            count = int(chunk.shape[0]) if chunk.ndim else 0
            if (
                chunk.dtype != expected
                or tuple(chunk.shape[1:]) != self.image_shape
                or not 0 <= count <= max_images
            ):
                raise InputError(
                    f"{self.file_at(min(position, self.n_images - 1))}: image {position:,} "
                    f"is not a {expected} image of shape {self.image_shape} as declared"
                )
            if position + count > stop:
                where = self.file_at(self.n_images - 1)
                raise InputError(
                    f"{where}: holds more images than the {self.n_images:,} it declares"
                )
            position += count
            yield chunk
        if position != stop:
            where = self.file_at(min(position, self.n_images - 1))
            raise InputError(
                f"{where}: holds fewer images than the {self.n_images:,} it declares "
                f"(image {position:,} is missing)"
            )

    @abstractmethod
    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        """The reader's own stream of chunks (``chunks`` checks it)."""

    def read_window(self, start: int, stop: int, max_images: int) -> Iterator[UInt8Array]:
        """The reader's own window; formats that can seek override this."""
        position = 0
        for chunk in self.chunks(max_images):
            end = position + chunk.shape[0]
            if end > start:
                yield chunk[max(start - position, 0) : min(stop, end) - position]
            if end >= stop:
                return
            position = end

    @property
    def n_images(self) -> int:
        return self.shape[0]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def image_values(self) -> int:
        """Values (pixels × channels) in one image."""
        return math.prod(self.image_shape)

    @property
    def image_bytes(self) -> int:
        return self.image_values * np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        return self.n_images * self.image_bytes

    @property
    def channel_axis(self) -> int | None:
        """Index of the channel axis within one image, or None for single-channel data."""
        return channel_axis_of(self.layout)

    @property
    def n_channels(self) -> int:
        axis = self.channel_axis
        return 1 if axis is None else self.image_shape[axis]

    @property
    def reads(self) -> tuple[Location, ...]:
        """Every file this source reads: its images and a labels file of their own. No
        output of the run may be one of them."""
        labels = self.labels.path if self.labels is not None else None
        return (*self.files, *([labels] if labels is not None else []))

    def sha256(self) -> str:
        """Digest of the source bytes as stored (all files, in order)."""
        return files_sha256(self.files)

    def file_at(self, index: int) -> Location:
        """The input file holding image ``index`` (sources of several files override it)."""
        return self.files[0]

    def details(self) -> dict[str, Any]:
        """What ``info`` shows beyond shape and labels (a table's columns, say)."""
        return {}

    def describe(self, sha256: str | None = None) -> dict[str, object]:
        """Provenance for the parameter record (``sha256`` if already computed)."""
        return {
            "name": self.name,
            "format": self.format,
            "files": [name_of(p) for p in self.files],
            "sha256": sha256 or self.sha256(),
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
            **({"resize": self.resize.record()} if self.resize is not None else {}),
        }


def check_images(path: Location, shape: tuple[int, ...]) -> None:
    """Refuse images that hold no pixels, or more values than ``MAX_IMAGE_VALUES``.

    Parameters
    ----------
    path
        The input named in the error.
    shape
        The dataset's shape, images along the first axis.

    Raises
    ------
    InputError
        When one image of ``shape[1:]`` is empty or over the limit.
    """
    image = tuple(shape[1:])
    values = math.prod(image)
    if values == 0:
        raise InputError(f"{path}: images of shape {image} hold no pixels")
    if values > MAX_IMAGE_VALUES:
        raise InputError(
            f"{path}: images of shape {image} hold {values:,} values each, over the limit of "
            f"{MAX_IMAGE_VALUES:,} per image"
        )


def check_labels_size(path: Location, count: int, itemsize: int) -> None:
    """Refuse a labels array larger than ``MAX_LABELS_BYTES`` before it is read whole."""
    if count * itemsize > MAX_LABELS_BYTES:
        raise InputError(
            f"{path}: {count:,} labels of {itemsize} bytes are over the limit of "
            f"{MAX_LABELS_BYTES:,} bytes of labels"
        )


#: Bytes per request of the digest's own read of an object, beside the conversion's.
HASH_BLOCK_BYTES = 16 << 20


def files_sha256(files: tuple[Location, ...]) -> str:
    """sha256 of one file, or of the concatenated bytes of several."""
    digest = hashlib.sha256()
    for path in files:
        # beside the conversion's own read of an object: smaller requests, less memory
        with open_bytes(path, HASH_BLOCK_BYTES) as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


@dataclass
class WindowSource(Source):
    """Images ``start``… of another source: one partition of a distributed conversion."""

    parent: Source | None = None
    start: int = 0

    @property
    def reads(self) -> tuple[Location, ...]:
        return self.parent.reads if self.parent is not None else self.files

    def read_chunks(self, max_images: int) -> Iterator[UInt8Array]:
        assert self.parent is not None
        return self.parent.window(self.start, self.start + self.n_images, max_images)


def window_of(source: Source, start: int, stop: int) -> WindowSource:
    return WindowSource(
        name=source.name,
        format=source.format,
        shape=(stop - start, *source.image_shape),
        layout=source.layout,
        files=source.files,
        parent=source,
        start=start,
        dtype=source.dtype,
    )
