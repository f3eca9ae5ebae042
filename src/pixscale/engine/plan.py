"""--dry-run: what a conversion would read, write and need, without doing it."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pixscale.core.kernels import FLOAT64_BLOCK
from pixscale.core.layouts import output_shape
from pixscale.core.location import is_remote
from pixscale.core.spec import Spec
from pixscale.engine.scan import DEFAULT_CHUNK_MB, chunk_images
from pixscale.sources.base import Source
from pixscale.store.io.background import QUEUE_DEPTH
from pixscale.store.io.space import SLACK_BYTES
from pixscale.store.output import Output, write_mode

#: Resident memory of the interpreter with numpy, h5py and click loaded (measured ~50 MiB).
BASE_MEMORY = 60 << 20


def plan(
    source: Source,
    output: Output,
    spec: Spec,
    chunk_mb: float = DEFAULT_CHUNK_MB,
    reuse_params: bool = False,
) -> dict[str, Any]:
    """What a conversion would read, write and need, without doing it (``--dry-run``)."""
    layout = output.layout or source.layout
    shape = output_shape(source.shape, source.layout, layout)
    rows = min(chunk_images(source, chunk_mb), source.n_images)
    chunk_bytes = rows * source.image_bytes
    values = rows * source.image_values
    # the chunk + float32 buffers (queue + one being filled) + squares for statistics
    squares = 2 if source.dtype == "uint8" else 8
    working = chunk_bytes + values * (4 * (QUEUE_DEPTH + 1) + squares) + 8 * FLOAT64_BLOCK
    output_bytes = output.item_bytes * math.prod(shape)
    folder = Path(os.curdir) if output.to_stdout else output.path.parent
    if is_remote(output.path):
        folder = Path(tempfile.gettempdir())  # where its upload is staged
    free = shutil.disk_usage(folder if folder.is_dir() else Path(os.curdir)).free  # type: ignore[arg-type]
    passes = 2 if spec.needs_dataset_stats and not reuse_params else 1
    return {
        "inputs": [str(p) for p in source.files[:5]] + (["…"] if len(source.files) > 5 else []),
        "input_files": len(source.files),
        "input_bytes_on_disk": sum(p.stat().st_size for p in source.files),
        "images": source.n_images,
        "input_shape": list(source.shape),
        "output": str(output.path),
        "output_shape": list(shape),
        "output_bytes": output_bytes,
        "output_dtype": "uint8 packed" if output.store == "uint8" else output.dtype,
        "passes": passes,
        "chunk_images": rows,
        "peak_memory_bytes": BASE_MEMORY + working,
        "free_disk_bytes": free,
        "fits": output.to_stdout or output_bytes + SLACK_BYTES <= free,
        "writes": write_mode(output, output_bytes),
    }
