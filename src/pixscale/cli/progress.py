"""The progress bar: share of the work done, time left, input bytes and rate on stderr, for
runs that last."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from pixscale.engine.scan import Progress

#: Runs shorter than this show no progress bar at all.
PROGRESS_AFTER_SECONDS = 1.0


@dataclass
class Tally:
    """The work a run has reported so far (images read, over every pass)."""

    start: float
    done: int = 0
    total: int = 0
    nbytes: int = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def seconds_left(self) -> float | None:
        """Time left at the rate of the run so far (its start, not the bar's, since the
        bar appears only once the run has lasted), or None before anything is done."""
        if self.done <= 0 or self.done >= self.total:
            return None
        return self.elapsed() * (self.total - self.done) / self.done

    def status(self) -> str:
        """``ETA 00:01:05  94 MiB at 51 MiB/s``: time left, then bytes read and rate."""
        seconds = self.elapsed()
        rate = f" at {format_bytes(self.nbytes / seconds)}/s" if self.nbytes and seconds > 0 else ""
        left = self.seconds_left()
        eta = f"ETA {format_duration(left)}  " if left is not None else ""
        return f"{eta}{format_bytes(self.nbytes)}{rate}"


def progress_bar(quiet: bool, label: str) -> tuple[Progress | None, Callable[[], None]]:
    """A click progress bar on stderr for runs that last over ``PROGRESS_AFTER_SECONDS``;
    none without a terminal or with --quiet.

    Engines report images read out of a total over every pass (a fitted strategy reads
    the data twice), so the bar shows the share of that work, not a count of images, and
    the time left at the rate since the run began.
    """
    if quiet or not sys.stderr.isatty():
        return None, lambda: None
    tally = Tally(time.monotonic())
    bars: list[Any] = []

    def advance(images: int, total: int, nbytes: int) -> None:
        tally.done += images
        tally.nbytes += nbytes
        tally.total = total
        if bars:
            bars[0].length = total  # an engine whose next stage counts anew
            bars[0].update(images)
        elif tally.elapsed() >= PROGRESS_AFTER_SECONDS:
            bar: Any = click.progressbar(
                length=total,
                label=label,
                file=sys.stderr,
                show_eta=False,
                show_percent=True,
                item_show_func=lambda _: tally.status(),
            )
            bar.__enter__()
            bars.append(bar)
            bar.update(tally.done)

    def close() -> None:
        if bars:
            bars[0].__exit__(None, None, None)

    return advance, close


def format_duration(seconds: float) -> str:
    """``65.2`` → ``00:01:06`` (rounded up: time left is never shown as none); days ahead as
    ``1d 02:00:00``."""
    whole = math.ceil(seconds)
    days, whole = divmod(whole, 86400)
    hours, whole = divmod(whole, 3600)
    minutes, whole = divmod(whole, 60)
    clock = f"{hours:02}:{minutes:02}:{whole:02}"
    return f"{days}d {clock}" if days else clock


def format_bytes(count: float) -> str:
    """``1536`` → ``1.5 KiB``: binary units, three significant digits."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            break
        count /= 1024
    return f"{count:.0f} {unit}" if unit == "B" else f"{count:.3g} {unit}"
