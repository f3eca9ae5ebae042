"""pixscale: uint8 image datasets to exact float32 arrays, with the scaling recorded.

from pathlib import Path
from pixscale import Spec, convert, fit, invert

fit(Path("train-images-idx3-ubyte.gz"), Path("mnist.params.json"), Spec("standardize"))
convert(Path("t10k-images-idx3-ubyte.gz"), Path("test.h5"),
        params_from=Path("mnist.params.json"))
invert(Path("test.h5"), Path("back.npy"))
"""

__version__ = "0.1.0"

from pixscale.errors import PixscaleError  # noqa: E402
from pixscale.inverse import invert, verify  # noqa: E402
from pixscale.pipeline import Output, convert, fit  # noqa: E402
from pixscale.sources import open_source  # noqa: E402
from pixscale.strategies import Spec  # noqa: E402

__all__ = [
    "Output",
    "PixscaleError",
    "Spec",
    "__version__",
    "convert",
    "fit",
    "invert",
    "open_source",
    "verify",
]
