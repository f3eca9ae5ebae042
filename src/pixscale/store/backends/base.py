"""What an output format offers the rest of pixscale: one ``Backend`` per format.

A backend owns everything a format means: its names (``--format`` choice, suffixes,
companion files), how its target is checked and placed (a file or a folder), its writers
(the whole run here, and regions written by Dask workers), how it stores the record,
labels and parameter arrays, and how an output of it is read back (``pixscale.open``,
``verify``, ``invert``). Nothing above ``store/`` names a format: it asks the registry
(``pixscale.store.backends``) for the backend of a path or a ``--format``.

Adding a format is one module with a ``Backend`` subclass and one line in the registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from pixscale.core.location import Location
from pixscale.errors import OutputError

if TYPE_CHECKING:
    from pixscale.store.base import Writer
    from pixscale.store.io.atomic import StagedOutputs
    from pixscale.store.output import Output
    from pixscale.store.pixels import PixelWriter

#: What ``read_record`` returns: the record and its parameter arrays stored apart.
Record = tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]
#: What ``read_data`` returns: the stored images' shape and dtype, and the labels.
StoredData = tuple[tuple[int, ...], np.dtype[Any], npt.NDArray[Any] | None]


class Backend(ABC):
    """One output format (see the module notes)."""

    #: The ``--format`` choice and the record's ``output.format``.
    name: ClassVar[str]
    #: How messages name the format.
    title: ClassVar[str]
    #: File name endings that select this format, lower case, the first the usual one.
    suffixes: ClassVar[tuple[str, ...]]
    #: Whether an output is a folder (a store) rather than a file.
    folder: ClassVar[bool] = False
    #: ``--compression`` choices.
    compressions: ClassVar[tuple[str, ...]] = ("none",)
    #: Storage variants it writes: (``--dtype``, ``--store``) pairs.
    variants: ClassVar[tuple[tuple[str, str], ...]] = (("float32", "float"),)
    #: Whether its reading library raises exceptions of any kind on damaged data (which
    #: ``verify`` then reports as a failed check rather than as a fault).
    damage_raises_any: ClassVar[bool] = False

    def companions(self, target: Location) -> list[Location]:
        """Files an output at ``target`` may write beside itself (record, labels, arrays)."""
        return []

    @abstractmethod
    def holds(self, path: Location) -> bool:
        """True when ``path`` is, by its content, an output of this format."""

    def check_options(self, output: Output) -> None:
        """Refuse writing options this format cannot honour, naming the output."""
        if output.compression not in self.compressions:
            raise OutputError(
                f"{output.path}: {output.compression} compression is not for {self.title} "
                f"outputs; choose from {', '.join(self.compressions)}"
            )
        if (output.dtype, output.store) not in self.variants:
            raise OutputError(
                f"{output.path}: --dtype {output.dtype} --store {output.store} is not written "
                f"as {self.title}"
            )

    def raw(self, output: Output) -> bool:
        """Whether the data is one run of raw bytes (written directly, by byte ranges)."""
        return False

    def check_target(self, output: Output, staged: StagedOutputs) -> None:
        """Refuse the data target up front (see ``StagedOutputs.check``)."""
        staged.check(output.path)

    @abstractmethod
    def open_writer(
        self, output: Output, shape: tuple[int, ...], staged: StagedOutputs, direct: bool
    ) -> Writer:
        """The writer of a whole run on this machine."""

    def open_parallel(
        self, output: Output, shape: tuple[int, ...], staged: StagedOutputs, direct: bool
    ) -> tuple[Writer, Any, int]:
        """The client's writer, the sink Dask tasks write their regions into (its
        ``region(start, count)`` is a ``Writer``), and the images per region boundary."""
        raise OutputError(f"{output.path}: the dask engine cannot write {self.title} outputs")

    def open_pixel_writer(
        self, target: Location, shape: tuple[int, ...], staged: StagedOutputs, dtype: str
    ) -> PixelWriter:
        """A writer of source pixels (``invert``: ``"uint8"`` or ``"uint16"``) to
        ``target``, a storage variant beside the float writers."""
        raise OutputError(f"{target}: {self.title} outputs do not hold source pixels")

    @abstractmethod
    def read_record(self, path: Location) -> Record:
        """The record and its parameter arrays, from an output of this format."""

    @abstractmethod
    def read_data(self, path: Location, output: dict[str, Any]) -> StoredData:
        """Shape and dtype of the stored images and the labels (``output``: the record's
        ``output`` section)."""

    def attribute_checks(self, converted: Any) -> list[tuple[str, bool, str]]:
        """``verify``'s checks of what the format stores beside the record (name, passed,
        detail): attributes readers of the format use."""
        return []

    def packing_differing(self, converted: Any, packing: Any) -> list[str]:
        """Where the format's own copies of a packed output's CF pairs differ from the
        ``packing`` proven exact (``verify``)."""
        return []


def same_numbers(value: Any, expected: npt.NDArray[np.float64]) -> bool:
    """``value`` holds exactly the float64 numbers of ``expected``, in its shape."""
    if value is None or isinstance(value, str | bytes):
        return False
    try:
        found = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        return False
    return found.shape == expected.shape and bool(np.array_equal(found, expected))
