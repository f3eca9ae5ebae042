"""The ``pixscale`` command: a thin click layer over the library.

``app`` holds the group, ``options`` every shared option, ``errors`` the one-line error
form and ``progress`` the progress bar; each command has a module of its own.
"""

from __future__ import annotations

from pixscale.cli import convert, export, fit, info, invert, preview, verify
from pixscale.cli.app import main

__all__ = ["convert", "export", "fit", "info", "invert", "main", "preview", "verify"]
