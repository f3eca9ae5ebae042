"""A Zarr output on an object store: written in place, committed by its group metadata.

An object store has no folders to rename, so the store is written where it will stay:
the ``images`` array's metadata first, then its chunks (by this process, or by Dask workers
that share no disk with it), and at the commit the labels and parameter arrays, and last
the group's ``zarr.json``, which holds the record. Until that object exists the prefix is
no Zarr group and no pixscale output (``pixscale.open``, ``info`` and zarr-python refuse
it); a failed or interrupted run removes what it wrote. The group's ``zarr.json`` is
placed by a conditional write (``If-None-Match``), so a store committed meanwhile by
another run is never replaced.

``--overwrite`` replaces only pixscale's own store holding nothing foreign; its objects
are removed before the new ones are written (an object store cannot swap a prefix), so an
overwrite that fails leaves neither the old store nor the new.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pixscale.core.location import shown, storage_exceptions, storage_reason
from pixscale.errors import OutputError
from pixscale.store.backends.zarr.detect import OWN_KEY, ZARR_JSON, is_zarr_output
from pixscale.store.io.remote import check_remote, refresh, remote_kind, upload

if TYPE_CHECKING:
    from upath import UPath


def stored_keys(target: UPath) -> list[str]:
    """Every object under the store's prefix, relative to it."""
    refresh(target)
    try:
        found = target.fs.find(target.path)
    except storage_exceptions() as exc:
        raise OutputError(f"{shown(target)}: {storage_reason(exc)}") from exc
    prefix = target.path.rstrip("/") + "/"
    return [key[len(prefix) :] for key in found if key.startswith(prefix)]


def check_remote_store(target: UPath, overwrite: bool) -> None:
    """Refuse a store target up front: an object of that name; an existing prefix
    without ``overwrite``; with it, anything but pixscale's own store."""
    if target.protocol in ("http", "https"):
        raise OutputError(f"{shown(target)}: http(s) URLs are read only")
    keys = stored_keys(target)
    if not keys:
        if remote_kind(target) == "file":
            raise OutputError(
                f"{shown(target)}: is an object, not a Zarr store; refusing to replace it"
            )
        check_remote(target, overwrite=False)  # the bucket, the protocol
        return
    if not overwrite:
        raise OutputError(f"{shown(target)}: already exists. Use --overwrite to replace it.")
    if not is_zarr_output(target):
        raise OutputError(
            f"{shown(target)}: holds objects but no pixscale Zarr output; refusing to replace it"
        )
    foreign = next((key for key in keys if not OWN_KEY.match(key)), None)
    if foreign is not None:
        raise OutputError(
            f"{shown(target)}/{foreign}: is not part of pixscale's output; refusing to "
            f"replace {shown(target)}"
        )


def clear_store(target: UPath) -> None:
    """Remove a store found replaceable by ``check_remote_store`` (``--overwrite``)."""
    if stored_keys(target):
        remove_store(target)


def remove_store(target: UPath) -> None:
    """Remove every object under the store's prefix (a discarded or replaced store)."""
    try:
        target.fs.rm(target.path, recursive=True)
    except FileNotFoundError:
        pass
    refresh(target)


def publish_store(built: Path, target: UPath) -> None:
    """Upload the metadata, labels and parameter arrays built locally in ``built``, the
    group's ``zarr.json`` last and only where none exists: the store's commit."""
    files = sorted(p for p in built.rglob("*") if p.is_file() and p != built / ZARR_JSON)
    try:
        for path in files:
            key = path.relative_to(built).as_posix()
            target.fs.put_file(str(path), f"{target.path}/{key}")
    except storage_exceptions() as exc:
        raise OutputError(f"{shown(target)}: cannot upload: {storage_reason(exc)}") from exc
    upload(built / ZARR_JSON, target / ZARR_JSON, overwrite=False)


def upload_array_metadata(built: Path, target: UPath, key: str) -> None:
    """Upload the ``zarr.json`` of the array ``key``, so that writers of its chunks find
    its layout (the group around it comes at the commit)."""
    try:
        target.fs.put_file(str(built / key / ZARR_JSON), f"{target.path}/{key}/{ZARR_JSON}")
    except storage_exceptions() as exc:
        raise OutputError(f"{shown(target)}: cannot upload: {storage_reason(exc)}") from exc


def missing_objects(target: UPath, keys: dict[str, int | None]) -> int:
    """How many of ``keys`` (relative key → expected size, None for any) are not stored,
    by one listing."""
    refresh(target)
    try:
        found = target.fs.find(target.path, detail=True)
    except storage_exceptions() as exc:
        raise OutputError(f"{shown(target)}: {storage_reason(exc)}") from exc
    prefix = target.path.rstrip("/") + "/"
    sizes = {name[len(prefix) :]: info.get("size") for name, info in found.items()}
    return sum(
        key not in sizes or size is not None and sizes[key] != size for key, size in keys.items()
    )
