"""Placing outputs on an object store, where a name is placed by one upload.

An object store has no links, renames or folders to sync; what it offers instead is a
conditional write: ``If-None-Match: *`` (fsspec's ``mode="create"``) succeeds only where no
object of that name exists, so no-clobber still holds at the moment of placing, whoever
wrote meanwhile. Stores without conditional writes (or fsspec filesystems that ignore the
mode) fall back to a check just before the upload, which a concurrent writer can race.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pixscale.core.location import shown, storage_exceptions, storage_reason
from pixscale.errors import OutputError

if TYPE_CHECKING:
    from upath import UPath


def refresh(target: UPath) -> None:
    """Forget what the filesystem cached about ``target``'s prefix (listings go stale)."""
    target.fs.invalidate_cache(str(target.parent.path))


def remote_kind(target: UPath) -> str | None:
    """``file``, ``directory`` (a prefix holding objects) or None where nothing is."""
    refresh(target)
    try:
        found = target.fs.info(target.path)
    except FileNotFoundError:
        return None
    except storage_exceptions() as exc:
        raise OutputError(f"{shown(target)}: {storage_reason(exc)}") from exc
    return str(found.get("type"))


def check_remote(target: UPath, overwrite: bool) -> None:
    """Refuse a URL target up front: a prefix, or an existing object without ``overwrite``;
    a read-only protocol."""
    if target.protocol in ("http", "https"):
        raise OutputError(f"{shown(target)}: http(s) URLs are read only")
    bucket = target.path.strip("/").split("/")[0]
    if target.protocol != "memory" and bucket and not bucket_exists(target, bucket):
        raise OutputError(f"{shown(target)}: no such bucket")
    kind = remote_kind(target)
    if kind == "directory":
        raise OutputError(f"{shown(target)}: is a prefix holding objects (a folder)")
    if kind is not None and not overwrite:
        raise OutputError(f"{shown(target)}: already exists. Use --overwrite to replace it.")


def bucket_exists(target: UPath, bucket: str) -> bool:
    """Whether the bucket (container) ``target`` would be written to exists."""
    try:
        return bool(target.fs.exists(bucket))
    except storage_exceptions() as exc:
        raise OutputError(f"{shown(target)}: {storage_reason(exc)}") from exc


def upload(temp: Path, target: UPath, overwrite: bool) -> None:
    """Place the local file ``temp`` at ``target`` in one upload: only where nothing is,
    unless ``overwrite``."""
    mode = "overwrite" if overwrite else "create"
    try:
        target.fs.put_file(str(temp), target.path, mode=mode)
    except FileExistsError:
        raise OutputError(
            f"{shown(target)}: already exists. Use --overwrite to replace it."
        ) from None
    except TypeError:  # a filesystem without conditional writes
        if not overwrite:
            check_remote(target, overwrite)
        target.fs.put_file(str(temp), target.path)
    except storage_exceptions() as exc:
        raise OutputError(f"{shown(target)}: cannot upload: {storage_reason(exc)}") from exc
    refresh(target)


def remove_remote(target: UPath) -> None:
    """Remove the object ``target`` (an undo, or a stale companion); gone already is fine."""
    try:
        target.fs.rm_file(target.path)
    except FileNotFoundError:
        pass
    refresh(target)
