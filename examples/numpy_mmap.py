"""Use a pixscale .npy output without loading it: memory-mapped, with its record.

python examples/numpy_mmap.py train.npy
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

path = Path(sys.argv[1])
images = np.load(path, mmap_mode="r")  # pages are read only when touched
record = json.loads(path.with_name(path.name + ".json").read_text())
labels_file = record["output"].get("labels")
labels = np.load(path.with_name(labels_file)) if labels_file else None

batch = np.asarray(images[:64])  # one batch in memory
print(
    record["strategy"], images.shape, batch.dtype, None if labels is None else labels[:8].tolist()
)
