"""Outputs appear whole or not at all: write to temporary files, rename on success."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pixscale.errors import OutputError


class StagedOutputs:
    """Temporary files beside their targets, renamed into place by ``commit``."""

    def __init__(self, overwrite: bool, inputs: Iterable[Path] = ()) -> None:
        self.overwrite = overwrite
        self.inputs = [p.resolve() for p in inputs]
        self.staged: dict[Path, Path] = {}

    def check(self, target: Path) -> None:
        """Refuse a target up front: missing folder, existing file, or an input."""
        folder = target.parent if str(target.parent) else Path(".")
        if not folder.is_dir():
            raise OutputError(f"{target}: output folder {folder} does not exist")
        if target.resolve() in self.inputs:
            raise OutputError(f"{target}: refusing to overwrite an input file")
        if target.is_dir():
            raise OutputError(f"{target}: is a folder")
        if target.exists() and not self.overwrite:
            raise OutputError(f"{target}: already exists. Use --overwrite to replace it.")

    def stage(self, target: Path) -> Path:
        """A fresh temporary path in the target's folder (same file system, so rename is atomic)."""
        self.check(target)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        temp = Path(name)
        self.staged[target] = temp
        return temp

    def commit(self) -> None:
        for target, temp in self.staged.items():
            os.chmod(temp, 0o666 & ~current_umask())
            os.replace(temp, target)
        self.staged.clear()

    def discard(self) -> None:
        for temp in self.staged.values():
            temp.unlink(missing_ok=True)
        self.staged.clear()


def current_umask() -> int:
    """The process umask (reading it means setting it; it is restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def staged_outputs(overwrite: bool, inputs: Iterable[Path] = ()) -> Iterator[StagedOutputs]:
    """Commit every staged output if the block succeeds; remove them all otherwise."""
    outputs = StagedOutputs(overwrite, inputs)
    try:
        yield outputs
    except BaseException:
        outputs.discard()
        raise
    try:
        outputs.commit()
    finally:
        outputs.discard()
