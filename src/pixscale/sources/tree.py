"""One rule for trees of images, whether a folder or the archive of it: which images are
the dataset's, and which folders name their classes.

Images sit flat, or one folder per class (labels index the sorted class names, as
torchvision's ``ImageFolder`` does); folders that every image shares (``photos/train/``)
are looked through. A class folder that holds no image keeps its place among the class
names, so that each class keeps its index in every split. Hidden files and folders, and
the ones archivers add beside the data (``__MACOSX``), are not part of the tree. Images at
mixed depths are refused, naming one of each: which of them would be the classes is
something only the user knows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pixscale.core.location import Location
from pixscale.errors import InputError
from pixscale.sources.base import Labels

#: Folders that archivers add beside the data (macOS resource forks).
SYSTEM_FOLDERS = ("__MACOSX",)


def parts_of(name: str) -> tuple[str, ...]:
    """The parts of a relative ``/``-separated name (``./a//b.png``: ``a``, ``b.png``), as
    ``PurePosixPath`` gives them, without its cost per name."""
    return tuple(part for part in name.split("/") if part not in ("", "."))


def is_hidden_part(part: str) -> bool:
    """A hidden file or folder, or one that archivers add."""
    return part.startswith(".") or part in SYSTEM_FOLDERS


def is_hidden(name: str) -> bool:
    """Whether any part of ``name`` is hidden (``is_hidden_part``)."""
    return any(map(is_hidden_part, parts_of(name)))


@dataclass(frozen=True)
class Plan:
    """Labels of the images of a tree, in the order given, with the class names; both
    None for flat images."""

    labels: list[int] | None = None
    classes: list[str] | None = None


def shared_depth(parts: Sequence[tuple[str, ...]]) -> int:
    """How many leading folders every image shares (and are looked through)."""
    depth = 0
    while all(len(p) > depth + 1 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    return depth


def plan_tree(
    path: Location, images: Sequence[str], folders: Iterable[str] = (), hint: str = ""
) -> Plan:
    """Labels and class names for ``images`` (relative ``/``-separated names under
    ``path``, none hidden), given the ``folders`` of the tree (relative names, those
    without images included).

    Parameters
    ----------
    path
        The folder or archive, named in errors.
    images
        The images' names, in the order they are read.
    folders
        Every folder of the tree; those beside the class folders that hold no image are
        classes too.
    hint
        How the user picks one folder of a tree whose images lie at mixed depths.

    Raises
    ------
    InputError
        When images lie at different depths below the shared folders.
    """
    parts = [parts_of(name) for name in images]
    depth = shared_depth(parts)
    below = [p[depth:] for p in parts]
    depths = {len(p) for p in below}
    if depths == {1}:
        return Plan()
    if depths != {2}:
        raise mixed_depths(path, images, below, hint)
    prefix = parts[0][:depth]
    empty = {
        found[depth]
        for found in map(parts_of, folders)
        if len(found) == depth + 1 and found[:depth] == prefix and not is_hidden_part(found[depth])
    }
    classes = sorted({p[0] for p in below} | empty)
    index = {name: number for number, name in enumerate(classes)}
    return Plan([index[p[0]] for p in below], classes)


def mixed_depths(
    path: Location, images: Sequence[str], below: list[tuple[str, ...]], hint: str
) -> InputError:
    """The refusal of a tree whose images are neither flat nor one folder per class."""
    depths = [len(p) for p in below]
    shallow = images[depths.index(min(depths))]
    deep = images[depths.index(max(depths))]
    picks = f" ({hint})" if hint else ""
    if min(depths) == max(depths):
        return InputError(
            f"{path}: images {max(depths) - 1} folders deep ({deep}); expected flat images or "
            f"one folder of images per class{picks}"
        )
    return InputError(
        f"{path}: images at different depths ({shallow}, {deep}); expected flat images or "
        f"one folder of images per class{picks}"
    )


def parents(names: Iterable[str]) -> set[str]:
    """Every folder that holds one of ``names`` (``a/b/c.png``: ``a`` and ``a/b``)."""
    found: set[str] = set()
    for name in names:
        parts = parts_of(name)
        found.update("/".join(parts[:end]) for end in range(1, len(parts)))
    return found


def labels_of(plan: Plan, path: Location) -> Labels | None:
    """The labels a plan gives, named after the folder or archive."""
    if plan.labels is None:
        return None
    return Labels(np.asarray(plan.labels, np.int64), f"{path.name} (class folders)", plan.classes)
