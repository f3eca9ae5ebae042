"""The progress bar: images, input bytes and rate on stderr, for runs that last."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click

from pixscale.engine.scan import Progress

#: Runs shorter than this show no progress bar at all.
PROGRESS_AFTER_SECONDS = 1.0


def progress_bar(quiet: bool, label: str) -> tuple[Progress | None, Callable[[], None]]:
    """A click progress bar on stderr (images, input bytes and rate) for runs that last
    over ``PROGRESS_AFTER_SECONDS``; none without a terminal or with --quiet."""
    if quiet or not sys.stderr.isatty():
        return None, lambda: None
    state: dict[str, Any] = {"start": time.monotonic(), "images": 0, "bytes": 0}

    def throughput(done: int | None) -> str:
        seconds = time.monotonic() - state["start"]
        rate = f" at {format_bytes(done / seconds)}/s" if done and seconds > 0 else ""
        return f"{format_bytes(done or 0)}{rate}"

    def advance(images: int, total: int, nbytes: int) -> None:
        state["images"] += images
        state["bytes"] += nbytes
        if "bar" in state:
            state["bar"].update(images, state["bytes"])
        elif time.monotonic() - state["start"] >= PROGRESS_AFTER_SECONDS:
            state["bar"] = click.progressbar(
                length=total,
                label=f"{label} (images)",
                file=sys.stderr,
                show_pos=True,
                item_show_func=throughput,
            )
            state["bar"].__enter__()
            state["bar"].update(state["images"], state["bytes"])

    def close() -> None:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)

    return advance, close


def format_bytes(count: float) -> str:
    """``1536`` → ``1.5 KiB``: binary units, three significant digits."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            break
        count /= 1024
    return f"{count:.0f} {unit}" if unit == "B" else f"{count:.3g} {unit}"
