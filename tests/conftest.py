"""Real data for the tests: the original MNIST files, the bundled slice, a real photograph.

MNIST is looked for in ``$PIXSCALE_TEST_DATA/mnist`` (default ``../shared/data/mnist``);
tests that need it skip with a reason where it is absent.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = ROOT / "sample_data" / "mnist-train-1k-images-idx3-ubyte.gz"
SAMPLE_LABELS = ROOT / "sample_data" / "mnist-train-1k-labels-idx1-ubyte.gz"
TEST_DATA = Path(os.environ.get("PIXSCALE_TEST_DATA", ROOT.parent / "shared" / "data"))
MNIST = TEST_DATA / "mnist"

# The same generated examples on every run and every machine: a property test that fails
# fails always, with the example in the report.
settings.register_profile("pixscale", derandomize=True)
settings.load_profile("pixscale")


def read_idx_gz(path: Path) -> np.ndarray:
    """Independent IDX decoding with numpy, to check the readers against."""
    data = gzip.open(path).read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"original MNIST files not found in {MNIST} (set PIXSCALE_TEST_DATA)")
    return MNIST


@pytest.fixture(scope="session")
def mnist_train(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return (
        read_idx_gz(mnist_dir / "train-images-idx3-ubyte.gz"),
        read_idx_gz(mnist_dir / "train-labels-idx1-ubyte.gz"),
    )


@pytest.fixture(scope="session")
def sample() -> tuple[np.ndarray, np.ndarray]:
    return read_idx_gz(SAMPLE_IMAGES), read_idx_gz(SAMPLE_LABELS)


@pytest.fixture(scope="session")
def photo_tiles() -> np.ndarray:
    """64×64 RGB tiles of a real photograph (Grace Hopper, shipped with matplotlib)."""
    pytest.importorskip("PIL")
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        pixels = np.asarray(image.convert("RGB"))
    rows, cols = pixels.shape[0] // 64, pixels.shape[1] // 64
    tiles = pixels[: rows * 64, : cols * 64].reshape(rows, 64, cols, 64, 3).swapaxes(1, 2)
    return np.ascontiguousarray(tiles.reshape(-1, 64, 64, 3))


@pytest.fixture
def sample_npy(tmp_path: Path, sample: tuple[np.ndarray, np.ndarray]) -> Path:
    path = tmp_path / "sample.npy"
    np.save(path, sample[0])
    return path


@pytest.fixture
def photo_npy(tmp_path: Path, photo_tiles: np.ndarray) -> Path:
    path = tmp_path / "photos.npy"
    np.save(path, photo_tiles)
    return path
