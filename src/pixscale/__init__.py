"""pixscale: uint8 image datasets to exact float32 arrays, with the scaling recorded.

from pathlib import Path
from pixscale import Spec, convert, fit, invert

fit(Path("train-images-idx3-ubyte.gz"), Path("mnist.params.json"), Spec("standardize"))
convert(Path("t10k-images-idx3-ubyte.gz"), Path("test.h5"),
        params_from=Path("mnist.params.json"))
invert(Path("test.h5"), Path("back.npy"))
"""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

#: Public names and the modules that define them, imported on first use so that the
#: command line starts without loading what a command does not need.
_EXPORTS = {
    "PixscaleError": "pixscale.errors",
    "invert": "pixscale.inverse",
    "verify": "pixscale.inverse",
    "Output": "pixscale.pipeline",
    "convert": "pixscale.pipeline",
    "fit": "pixscale.pipeline",
    "open_source": "pixscale.sources",
    "Spec": "pixscale.strategies",
}

if TYPE_CHECKING:
    from pixscale.errors import PixscaleError
    from pixscale.inverse import invert, verify
    from pixscale.pipeline import Output, convert, fit
    from pixscale.sources import open_source
    from pixscale.strategies import Spec


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pixscale' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
