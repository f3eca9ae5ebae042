"""Checking a Zarr store target up front, and placing the finished store by one rename."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path

from pixscale.errors import OutputError
from pixscale.store.backends.zarr.detect import OWN_KEY, is_zarr_output, is_zarr_store
from pixscale.store.io.atomic import (
    already_exists,
    current_umask,
    folder_lock,
    folder_of,
)


def check_store_target(target: Path, overwrite: bool, inputs: list[Path] | None = None) -> None:
    """Refuse a store target up front: missing folder, an input, or an existing path
    (without ``overwrite``); with it, anything but a Zarr store or a regular file."""
    folder = folder_of(target)
    if not folder.is_dir():
        raise OutputError(f"{target}: output folder {folder} does not exist")
    real = Path(os.path.realpath(target))
    for given in inputs or []:
        given = Path(os.path.realpath(given))
        if real == given or given.is_relative_to(real):
            raise OutputError(f"{target}: refusing to overwrite an input")
    if not os.path.lexists(target):
        return
    if not overwrite:
        raise already_exists(target)
    refuse_unreplaceable(target)


def refuse_unreplaceable(target: Path) -> None:
    """``--overwrite`` replaces pixscale's own Zarr store or a regular file, never another
    folder, nor a store that holds anything pixscale did not write."""
    if target.is_symlink():
        raise OutputError(f"{target}: is a symbolic link; refusing to replace it")
    if target.is_dir():
        if not is_zarr_store(target):
            raise OutputError(f"{target}: is a folder but not a Zarr store; refusing to replace it")
        if not is_zarr_output(target):
            raise OutputError(
                f"{target}: is a Zarr store pixscale did not write; refusing to replace it"
            )
        foreign = foreign_entry(target)
        if foreign is not None:
            raise OutputError(
                f"{foreign}: is not part of pixscale's output; refusing to replace {target}"
            )
    elif not target.is_file():
        raise OutputError(f"{target}: not a regular file; refusing to replace it")


def foreign_entry(store: Path) -> Path | None:
    """The first entry of ``store`` that a pixscale output does not hold, or None: its
    files are the keys pixscale writes (``OWN_KEY``: the group's and arrays' ``zarr.json``,
    ``images``, ``labels`` and ``params/`` chunks), and no links."""
    for folder, subfolders, files in os.walk(store):
        here = Path(folder)
        for name in [*subfolders, *files]:
            if (here / name).is_symlink():
                return here / name
        for name in files:
            if not OWN_KEY.match((here / name).relative_to(store).as_posix()):
                return here / name
    return None


def rename_noreplace(temp: Path, target: Path) -> None:
    """Rename ``temp`` to ``target`` only if nothing is there, atomically where the kernel
    offers ``renameat2(RENAME_NOREPLACE)``, else checked just before under the folder lock."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, noreplace = -100, 1
        done = renameat2(at_fdcwd, os.fsencode(temp), at_fdcwd, os.fsencode(target), noreplace)
        if done == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise already_exists(target)
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(target))
    if os.path.lexists(target):
        raise already_exists(target)
    os.rename(temp, target)


def commit_store(temp: Path, target: Path, overwrite: bool) -> None:
    """Put the finished store ``temp`` under the name ``target`` in one rename; a replaced
    older store is moved aside first and removed only after the new one is in place."""
    mode = 0o777 & ~current_umask()
    os.chmod(temp, mode)
    with folder_lock([folder_of(target)]):
        if not os.path.lexists(target):
            rename_noreplace(temp, target)
            return
        if not overwrite:
            raise already_exists(target)
        refuse_unreplaceable(target)
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / "store")
        try:
            os.rename(temp, target)
        except BaseException:
            os.replace(old / "store", target)  # the older store back where it was
            shutil.rmtree(old, ignore_errors=True)
            raise
    shutil.rmtree(old, ignore_errors=True)


def make_store_folder(temp: Path) -> None:
    """The temporary folder ``temp`` (a name already recorded for removal)."""
    os.mkdir(temp, 0o700)
