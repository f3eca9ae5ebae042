"""pixscale: uint8 image datasets to exact float32 arrays, with the scaling recorded.

>>> import pixscale
>>> scaler = pixscale.Scaler("standardize", scope="channel").fit("train.npy")
>>> pixscale.convert("test.npy", "test.h5", scaler=scaler)
>>> with pixscale.open("test.h5") as data:
...     batch = data[0:256]
"""

import importlib
from typing import TYPE_CHECKING, Any

from pixscale._version import __version__

#: Public names and the modules that define them, imported on first use so that the
#: command line starts without loading what a command does not need.
_EXPORTS = {
    "InputError": "pixscale.errors",
    "OutputError": "pixscale.errors",
    "ParamsError": "pixscale.errors",
    "PixscaleError": "pixscale.errors",
    "PixscaleWarning": "pixscale.errors",
    "Params": "pixscale.core.params",
    "Scaler": "pixscale.engine.scaler",
    "Spec": "pixscale.core.spec",
    "Output": "pixscale.store.output",
    "Dataset": "pixscale.store.reader",
    "open": "pixscale.store.reader",
    "convert": "pixscale.engine.local",
    "fit": "pixscale.engine.local",
    "invert": "pixscale.tasks.invert",
    "verify": "pixscale.tasks.verify",
    "open_source": "pixscale.sources",
}

if TYPE_CHECKING:
    from pixscale.core.params import Params
    from pixscale.core.spec import Spec
    from pixscale.engine.local import convert, fit
    from pixscale.engine.scaler import Scaler
    from pixscale.errors import (
        InputError,
        OutputError,
        ParamsError,
        PixscaleError,
        PixscaleWarning,
    )
    from pixscale.sources import open_source
    from pixscale.store.output import Output
    from pixscale.store.reader import Dataset, open
    from pixscale.tasks.invert import invert
    from pixscale.tasks.verify import verify


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pixscale' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Dataset",
    "InputError",
    "Output",
    "OutputError",
    "Params",
    "ParamsError",
    "PixscaleError",
    "PixscaleWarning",
    "Scaler",
    "Spec",
    "__version__",
    "convert",
    "fit",
    "invert",
    "open",
    "open_source",
    "verify",
]
