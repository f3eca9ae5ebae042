"""PyTorch over pixscale outputs: ``ImageDataset(path)`` gives (image tensor, label) pairs.

Every output kind reads the same way, through ``pixscale.open``: float32 and float16
outputs as stored, packed uint8 outputs decoded to the float32 values a float32 convert
writes. The file is opened on first use in each process, so one ``ImageDataset`` serves
``DataLoader(num_workers=N)`` with fork or spawn workers.

    from torch.utils.data import DataLoader
    from pixscale.torch import ImageDataset

    loader = DataLoader(ImageDataset("train.h5", layout="nchw"), batch_size=256,
                        shuffle=True, num_workers=2)

Needs the optional extra: ``pip install 'pixscale[torch]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

try:
    import torch
    from torch.utils.data import Dataset as _TorchDataset
except ImportError as exc:  # pragma: no cover - exercised where torch is absent
    raise ImportError("pixscale.torch needs PyTorch: pip install 'pixscale[torch]'") from exc

from pixscale.core.layouts import OUTPUT_LAYOUTS
from pixscale.errors import ParamsError
from pixscale.store.reader import Dataset, open

#: What a sample's label is when the output has none.
NO_LABEL = -1
Sample = tuple[torch.Tensor, Any]


class ImageDataset(_TorchDataset):  # type: ignore[type-arg]
    """A map-style torch ``Dataset`` over a pixscale output (.h5, or .npy with its sidecar).

    Parameters
    ----------
    path
        The output file: float32, float16 or packed uint8.
    layout
        ``"nchw"`` for channel-first tensors (what ``torch.nn.Conv2d`` takes; greyscale
        gains a channel axis of 1), ``"nhwc"`` for channels last; None keeps the stored
        layout.
    dtype
        ``"float32"`` to widen float16 outputs; None returns values as stored (packed
        outputs are always float32).
    transform, target_transform
        Applied to each image tensor / label, as in torchvision.

    ``ds[i]`` is ``(image, label)``; the label is an ``int`` (``NO_LABEL`` when the output
    has no labels). DataLoader fetches a whole batch with one read (``__getitems__``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        layout: str | None = None,
        dtype: str | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if layout is not None and layout not in OUTPUT_LAYOUTS:
            raise ParamsError(f"unknown layout {layout!r}; choose from {OUTPUT_LAYOUTS}")
        if dtype not in (None, "float32"):
            raise ParamsError(f"dtype must be None or 'float32', not {dtype!r}")
        self.path = os.fspath(path)
        self.layout = layout
        self.dtype = dtype
        self.transform = transform
        self.target_transform = target_transform
        self._data: Dataset | None = open(self.path)
        self.stored_layout = str(self._data.record.get("output", {}).get("layout", "nhw"))
        self.labels: npt.NDArray[Any] | None = self._data.labels
        self.record: dict[str, Any] = self._data.record
        self._length = len(self._data)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} is out of range for {self._length} images")
        index %= self._length
        images = self._read(np.asarray([index]))
        return self._sample(images[0], index)

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        """A batch in one read: sorted, unique positions, then back in the asked order."""
        wanted = np.asarray(indices, np.int64) % max(self._length, 1)
        images = self._read(wanted)
        return [self._sample(image, int(i)) for image, i in zip(images, wanted, strict=True)]

    def _read(self, wanted: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        unique, where = np.unique(wanted, return_inverse=True)
        data = self._dataset()
        if len(unique) == 1:
            block = np.asarray(data[int(unique[0]) : int(unique[0]) + 1])
        elif unique[-1] - unique[0] + 1 == len(unique):
            block = np.asarray(data[int(unique[0]) : int(unique[-1]) + 1])
        else:
            block = np.asarray(data[unique])
        images = block[where.reshape(-1)]
        if self.dtype == "float32" and images.dtype != np.float32:
            images = images.astype(np.float32)
        return self._in_layout(images)

    def _in_layout(self, images: npt.NDArray[Any]) -> npt.NDArray[Any]:
        source, target = self.stored_layout, self.layout
        if target is None or target == source:
            return images
        if source == "nhw":
            return images[:, None] if target == "nchw" else images[..., None]
        if source in ("nhwc", "nchw") and images.ndim == 4:
            order = (0, 3, 1, 2) if target == "nchw" else (0, 2, 3, 1)
            return np.ascontiguousarray(images.transpose(order))
        raise ParamsError(f"cannot give layout {target} from stored layout {source}")

    def _sample(self, image: npt.NDArray[Any], index: int) -> Sample:
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        label: Any = NO_LABEL if self.labels is None else int(self.labels[index])
        if self.transform is not None:
            tensor = self.transform(tensor)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return tensor, label

    def _dataset(self) -> Dataset:
        if self._data is None:
            self._data = open(self.path)
        return self._data

    def __getstate__(self) -> dict[str, Any]:
        # Spawned workers get the path, not the parent's open file; they reopen it.
        state = dict(self.__dict__)
        state["_data"] = None
        return state

    def close(self) -> None:
        """Close the data file (it reopens on the next access)."""
        if self._data is not None:
            self._data.close()


__all__ = ["NO_LABEL", "ImageDataset"]
