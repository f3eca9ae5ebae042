"""One rule for every input that is a folder or a store (image folders, Zarr stores): every
file read resolves inside the root the user named.

A link whose target lies inside the root is read like any file of it (a class folder
linking to another class folder, a store linking one chunk to another); a link that leads
out of the root — to an absolute path, up with ``..``, through another link, or dangling
towards a name outside — is refused, naming the link, since a folder received from
elsewhere must not make pixscale read the user's other files. The root itself may be a
link: the user named it. (Archives never follow a link member at all: a link inside an
archive has no file to resolve to without extracting it.)
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from pixscale.core.location import Location, shown, storage_exceptions, storage_reason
from pixscale.errors import InputError

#: The end of every refusal.
OUTSIDE = "refusing to read outside the input"
#: The metadata object of a Zarr v3 node, read without a check of its own.
METADATA = "zarr.json"


@dataclass(frozen=True)
class Root:
    """A folder or store the user named, whose files are read only when they resolve
    inside it.

    Parameters
    ----------
    path
        The root as named (messages name links under it).
    """

    path: Path
    real: str = field(init=False)
    #: Real paths of the folders under the root already resolved, by relative name: a
    #: store of many chunks resolves each folder once, then one ``lstat`` per file.
    folders: dict[str, str] = field(init=False, default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "real", os.path.realpath(self.path))

    def resolve(self, relative: str | PurePath) -> Path:
        """The real path of ``relative`` under the root, links followed.

        Raises
        ------
        InputError
            When it resolves outside the root, naming the first link on the way that leads
            out (or the path itself, for a name that climbs out with ``..``).
        """
        name = relative if isinstance(relative, str) else relative.as_posix()
        if name in ("", "."):
            return Path(self.real)
        if name.startswith("/") or ".." in name.split("/"):
            return self.follow(name)
        folder, _, base = name.rpartition("/")
        candidate = f"{self.folder(folder)}/{base}"
        return self.follow(name) if os.path.islink(candidate) else Path(candidate)

    def folder(self, relative: str) -> str:
        """The real path of the folder ``relative`` (no ``..``), resolved once."""
        if not relative:
            return self.real
        found = self.folders.get(relative)
        if found is None:
            parent, _, base = relative.rpartition("/")
            found = f"{self.folder(parent)}/{base}"
            if os.path.islink(found):
                found = str(self.follow(relative))
            self.folders[relative] = found
        return found

    def follow(self, relative: str) -> Path:
        """``relative`` resolved by ``realpath``, refused when it leaves the root."""
        target = os.path.realpath(os.path.join(self.path, relative))
        if self.holds(target):
            return Path(target)
        raise InputError(self.escape(PurePath(relative), target))

    def holds(self, real: str) -> bool:
        """Whether the real path ``real`` is the root or lies under it."""
        return real == self.real or real.startswith(self.real.rstrip(os.sep) + os.sep)

    def escape(self, relative: PurePath, target: str) -> str:
        """The refusal of ``relative``, which resolves to ``target`` outside the root."""
        where = self.path
        for part in relative.parts:
            where = where / part
            if os.path.islink(where):
                real = os.path.realpath(where)
                if not self.holds(real):
                    return f"{where}: is a link leading outside {self.path} (to {real}); {OUTSIDE}"
        return f"{self.path / relative}: leads outside {self.path} (to {target}); {OUTSIDE}"

    def entries(
        self, folder: str, wanted: Callable[[os.DirEntry[str]], bool]
    ) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """The ``wanted`` entries of the folder ``folder`` under the root (``""``: the root),
        with their names relative to the root; each link among them is checked by
        ``resolve``, an entry that is no link lies where it is listed."""
        with os.scandir(self.resolve(folder)) as listing:
            found = [entry for entry in listing if wanted(entry)]
        for entry in found:
            relative = os.path.join(folder, entry.name)
            if entry.is_symlink():
                self.resolve(relative)
            yield relative, entry


def contained_store(path: Path) -> Any:
    """A read-only zarr-python store of the folder ``path`` that refuses, on every read, a
    key resolving outside ``path`` (``Root.resolve``)."""
    return contained_store_class()(path, read_only=True)


@functools.cache
def contained_store_class() -> type[Any]:
    """``LocalStore`` whose reads are checked by the containment rule (made on first use:
    zarr is an optional dependency)."""
    from zarr.abc.store import ByteRequest
    from zarr.core.buffer import Buffer, BufferPrototype
    from zarr.storage import LocalStore

    class ContainedStore(LocalStore):
        """A local store whose keys must resolve inside its root."""

        def __init__(self, root: Path | str, *, read_only: bool = False) -> None:
            super().__init__(root, read_only=read_only)
            self.contained = Root(Path(root))

        async def get(
            self,
            key: str,
            prototype: BufferPrototype | None = None,
            byte_range: ByteRequest | None = None,
        ) -> Buffer | None:
            self.contained.resolve(key)
            return await super().get(key, prototype, byte_range)

        def get_sync(
            self,
            key: str,
            *,
            prototype: BufferPrototype | None = None,
            byte_range: ByteRequest | None = None,
        ) -> Buffer | None:
            self.contained.resolve(key)
            return super().get_sync(key, prototype=prototype, byte_range=byte_range)

        async def get_partial_values(
            self,
            prototype: BufferPrototype,
            key_ranges: Iterable[tuple[str, ByteRequest | None]],
        ) -> list[Buffer | None]:
            key_ranges = list(key_ranges)
            for key, _ in key_ranges:
                self.contained.resolve(key)
            return await super().get_partial_values(prototype, key_ranges)

        async def exists(self, key: str) -> bool:
            self.contained.resolve(key)
            return await super().exists(key)

        async def getsize(self, key: str) -> int:
            self.contained.resolve(key)
            return await super().getsize(key)

    return ContainedStore


def store_key(root: Location, key: str) -> str:
    """The path in ``root``'s filesystem of the key ``key`` of the remote store ``root``.

    An object store has no links, so containment is the key itself: one that is absolute or
    climbs with ``..`` is refused.

    Raises
    ------
    InputError
        Naming the key, when it would leave the store's prefix.
    """
    parts = key.split("/")
    if key.startswith("/") or ".." in parts or "\\" in key:
        raise InputError(f"{shown(root)}: key {key!r} leads outside the store; {OUTSIDE}")
    base = str(root.path).rstrip("/")  # type: ignore[union-attr]
    return f"{base}/{key}" if key else base


@dataclass
class Held:
    """Bytes of one object read and checked beforehand: pieces by their offset in it."""

    size: int
    pieces: list[tuple[int, bytes]]

    def read(self, start: int | None, end: int | None) -> bytes | None:
        """Bytes ``start``…``end - 1`` (None: the object's start or end), or None when no
        piece holds them all."""
        first = 0 if start is None else start
        last = self.size if end is None else end
        for at, piece in self.pieces:
            if at <= first and last <= at + len(piece):
                return piece[first - at : last - at]
        return None


def remote_store(root: Location) -> Any:
    """A read-only zarr-python store of the remote store ``root``: metadata (``zarr.json``)
    read through its filesystem, every other key served only from the bytes its reader
    placed in ``held`` after checking them, any key refused that leaves the store's prefix
    (``store_key``)."""
    return remote_store_class()(root)


@functools.cache
def remote_store_class() -> type[Any]:
    """The class of ``remote_store`` (made on first use: zarr is an optional dependency)."""
    from zarr.abc.store import (
        ByteRequest,
        OffsetByteRequest,
        RangeByteRequest,
        Store,
        SuffixByteRequest,
    )
    from zarr.core.buffer import Buffer, BufferPrototype

    def limits(held_size: int, request: ByteRequest | None) -> tuple[int | None, int | None]:
        if isinstance(request, RangeByteRequest):
            return request.start, request.end
        if isinstance(request, OffsetByteRequest):
            return request.offset, None
        if isinstance(request, SuffixByteRequest):
            return max(0, held_size - request.suffix), None
        return None, None

    class RemoteStore(Store):
        """Metadata from the filesystem, chunks from ``held`` only."""

        supports_writes = False
        supports_deletes = False
        supports_listing = True

        def __init__(self, root: Location) -> None:
            super().__init__(read_only=True)
            self.root = root
            self.fs = root.fs  # type: ignore[union-attr]
            self.held: dict[str, Held] = {}

        def __eq__(self, other: object) -> bool:
            return isinstance(other, RemoteStore) and shown(other.root) == shown(self.root)

        def metadata(self, key: str) -> bytes | None:
            try:
                return bytes(self.fs.cat_file(store_key(self.root, key)))
            except FileNotFoundError:
                return None
            except storage_exceptions() as exc:
                raise InputError(f"{shown(self.root)}: {key}: {storage_reason(exc)}") from exc

        def read(self, key: str, request: ByteRequest | None) -> bytes | None:
            if key.rpartition("/")[2] == METADATA:
                data = self.metadata(key)
                if data is None:
                    return None
                start, end = limits(len(data), request)
                return data[start:end]
            held = self.held.get(key)
            found = None if held is None else held.read(*limits(held.size, request))
            if found is None:  # never expected: every read is checked first
                raise InputError(f"{shown(self.root)}: {key} was not checked before reading")
            return found

        async def get(
            self,
            key: str,
            prototype: BufferPrototype,
            byte_range: ByteRequest | None = None,
        ) -> Buffer | None:
            data = self.read(key, byte_range)
            return None if data is None else prototype.buffer.from_bytes(data)

        async def get_partial_values(
            self,
            prototype: BufferPrototype,
            key_ranges: Iterable[tuple[str, ByteRequest | None]],
        ) -> list[Buffer | None]:
            return [await self.get(key, prototype, request) for key, request in key_ranges]

        async def exists(self, key: str) -> bool:
            if key in self.held:
                return True
            return bool(self.fs.exists(store_key(self.root, key)))

        async def set(self, key: str, value: Buffer) -> None:
            raise InputError(f"{shown(self.root)}: an input store is not written to")

        async def delete(self, key: str) -> None:
            raise InputError(f"{shown(self.root)}: an input store is not written to")

        async def list(self) -> AsyncIterator[str]:
            for key in self.keys(""):
                yield key

        async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
            for key in self.keys(prefix.rstrip("/")):
                yield key

        async def list_dir(self, prefix: str) -> AsyncIterator[str]:
            folder = store_key(self.root, prefix.rstrip("/"))
            try:
                names = self.fs.ls(folder, detail=False)
            except FileNotFoundError:
                return
            for name in names:
                yield str(name).rstrip("/").rpartition("/")[2]

        def keys(self, prefix: str) -> tuple[str, ...]:
            """Every key under ``prefix``, relative to the store."""
            base = store_key(self.root, "")
            found = self.fs.find(store_key(self.root, prefix))
            return tuple(str(name)[len(base) + 1 :] for name in found)

    return RemoteStore
