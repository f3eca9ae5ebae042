"""What every output writer offers the convert pipeline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.sources.base import Labels

Float32Array = npt.NDArray[np.float32]


class Writer(ABC):
    """Receives float32 chunks in order, then the record, labels and parameter arrays."""

    target: Path
    shape: tuple[int, ...]

    @abstractmethod
    def write(self, chunk: Float32Array) -> None:
        """Append the next chunk of images."""

    @abstractmethod
    def finish(
        self, record: dict[str, Any], arrays: dict[str, npt.NDArray[Any]], labels: Labels | None
    ) -> dict[str, Any]:
        """Store the record and companions; return the record's ``output`` section."""

    @abstractmethod
    def close(self) -> None:
        """Release file handles (also after a failure)."""
