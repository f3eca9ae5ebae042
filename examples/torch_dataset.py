"""A PyTorch Dataset over a pixscale HDF5 output.

The HDF5 file is opened lazily, once in each DataLoader worker: an h5py handle opened in the
parent process does not survive being copied into worker processes (``num_workers > 0``).

    python examples/torch_dataset.py train.h5
"""

from __future__ import annotations

import json
import sys
from typing import Any

import h5py
import torch
from torch.utils.data import DataLoader, Dataset


class PixscaleH5(Dataset):  # type: ignore[type-arg]
    """(image, label) pairs from ``images`` and ``labels`` of a pixscale .h5 file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file: h5py.File | None = None  # opened in the worker that first reads
        with h5py.File(path, "r") as handle:
            self.length = len(handle["images"])
            self.has_labels = "labels" in handle
            self.record = json.loads(handle.attrs["pixscale_params"])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        if self.file is None:
            self.file = h5py.File(self.path, "r")
        image = torch.from_numpy(self.file["images"][index])
        label = int(self.file["labels"][index]) if self.has_labels else -1
        return image, label


if __name__ == "__main__":
    dataset = PixscaleH5(sys.argv[1])
    loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=2)
    images, labels = next(iter(loader))
    print(dataset.record["strategy"], tuple(images.shape), images.dtype, labels[:8].tolist())
