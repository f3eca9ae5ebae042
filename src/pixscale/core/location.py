"""Where bytes live: a local path, or a URL that fsspec reaches.

A ``Location`` is a ``pathlib.Path`` for local files and a ``upath.UPath`` for URLs
(``s3://``, ``gs://``, ``az://``/``abfs://``, ``http(s)://``, ``memory://``). Both offer the
path methods readers use (``open``, ``stat``, ``name``, ``parent``, ``/``, ``iterdir``), and a
``UPath`` carries its storage options (credentials, endpoint) to every path derived from it,
so readers take either without knowing which. Only what cannot exist on an object store (links,
inodes, ``realpath``) asks ``is_remote`` first.

Credentials never leave the location: messages and records show ``shown(location)``, the URL
without user information or query string.
"""

from __future__ import annotations

import gc
import io
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeAlias, Union
from urllib.parse import urlsplit, urlunsplit

from pixscale.errors import InputError, PixscaleError

if TYPE_CHECKING:
    from typing_extensions import TypeIs
    from upath import UPath

Location: TypeAlias = "Path | UPath"
PathLike = str | os.PathLike[str]
#: What the library's functions take for a file: a path, a URL, or a ``Location``.
PathOrUrl: TypeAlias = Union[str, os.PathLike[str], "UPath"]  # noqa: UP007 (runtime alias)

#: ``scheme://`` at the start of a URL.
URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: The extra that brings each protocol's fsspec implementation.
EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "adl": "azure",
    "http": "http",
    "https": "http",
}
#: Bytes fetched per request when streaming an object front to back: few large ranged GETs
#: (a 512 MiB object read in 8 MiB requests measured 2.9× the time of 32 MiB ones).
STREAM_BLOCK_BYTES = 32 << 20
#: Bytes fetched per request by a reader that seeks (HDF5 metadata, a Parquet footer and
#: column chunks): it pays for no more than this per miss.
SEEK_BLOCK_BYTES = 4 << 20


def is_url(target: object) -> bool:
    """True for ``scheme://…`` text other than ``file://``, and for remote ``UPath``s."""
    if isinstance(target, str):
        match = URL.match(target)
        return match is not None and match.group(1).lower() != "file"
    return is_remote(target)


def is_remote(location: object) -> TypeIs[UPath]:
    """True for a location that is no local path (a ``UPath`` of a remote protocol); its
    filesystem is not built to tell (that may reach the network)."""
    return not isinstance(location, str | os.PathLike) and type(location).__module__.startswith(
        "upath."
    )


def protocol_of(text: str) -> str:
    """The lower-case scheme of a URL (``s3``), or ``file``."""
    match = URL.match(text)
    return match.group(1).lower() if match else "file"


def locate(
    target: PathOrUrl,
    storage_options: Mapping[str, Any] | None = None,
    error: type[PixscaleError] = InputError,
) -> Location:
    """``target`` as a ``Location``: a ``Path`` for local names (and ``file://`` URLs), a
    ``UPath`` carrying ``storage_options`` for URLs.

    Raises
    ------
    PixscaleError
        ``error``, naming the URL: an unknown protocol, or one whose package is not
        installed (with the ``pip install`` that fixes it).
    """
    if is_remote(target):
        return target
    text = os.fspath(target)
    if not is_url(text):
        return Path(text[len("file://") :] if text.lower().startswith("file://") else text)
    protocol = protocol_of(text)
    text = protocol + text[len(protocol) :]  # S3://… as s3://…
    if urlsplit(text).username is not None:
        raise error(
            f"{shown(text)}: credentials do not belong in a URL; give them in the environment "
            "or with --storage-option (storage_options=)"
        )
    try:
        import fsspec
        from upath import UPath
    except ImportError:
        raise error(f"{shown(text)}: URLs need {install_hint(protocol)}") from None
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise error(f"{shown(text)}: unknown protocol {protocol}://") from None
    except ImportError:
        raise error(f"{shown(text)}: {protocol}:// needs {install_hint(protocol)}") from None
    options = dict(storage_options or {})
    url: UPath = UPath(text, **options)
    # built now: a bad option or a missing account fails here, by name
    try:
        connect = getattr(url.fs, "connect", None)  # s3fs builds its client only here
        if callable(connect):
            connect()
    except Exception as exc:  # each filesystem raises its own kinds
        said = next(iter(str(exc).splitlines()), "") or type(exc).__name__
        raise error(f"{shown(text)}: cannot use {protocol}:// ({hidden(said, options)})") from None
    return url


def hidden(text: str, options: Mapping[str, Any]) -> str:
    """``text`` with every value of ``options`` (nested ones too) shown as ``…``."""
    for value in option_values(options):
        text = text.replace(value, "…")
    return text


def option_values(options: Mapping[str, Any]) -> list[str]:
    """The text of every leaf value of ``options`` (four characters or more)."""
    found: list[str] = []
    for value in options.values():
        if isinstance(value, Mapping):
            found += option_values(value)
        elif len(str(value)) >= 4:
            found.append(str(value))
    return found


def identity(location: Location) -> str:
    """What names the same object whatever the spelling: the filesystem's own protocol
    (``s3a://`` is ``s3://``) and path; a local path's real path."""
    if not is_remote(location):
        return os.path.realpath(location)
    protocol = type(location.fs).protocol
    canonical = protocol[0] if isinstance(protocol, tuple | list) else protocol
    return f"{canonical}://{location.path.strip('/')}"


def open_bytes(location: Location, block_size: int = STREAM_BLOCK_BYTES) -> BinaryIO:
    """``location`` opened for binary reading, seekable; an object on a store is fetched
    ``block_size`` bytes per request, read ahead (``SEEK_BLOCK_BYTES`` for readers that
    seek).

    ``memory://`` files are copied: fsspec hands out one shared file object per path, and
    a reader may open the same file twice at once (a header check beside the data).
    """
    if is_remote(location):
        if location.protocol == "memory":
            return io.BytesIO(location.fs.cat_file(location.path))
        opened: BinaryIO = location.fs.open(
            location.path, "rb", block_size=block_size, cache_type="readahead"
        )
        return opened
    return location.open("rb")


def readable(location: Location) -> str | BinaryIO:
    """What a library that opens paths or file objects (h5py, numpy) is given to read
    ``location``: a local path as text, a URL as a seekable file object."""
    return open_bytes(location, SEEK_BLOCK_BYTES) if is_remote(location) else os.fspath(location)


@contextmanager
def collection_paused(location: Location) -> Iterator[None]:
    """Inside, for a URL: no garbage collection. h5py holds its lock while it calls a file
    object's ``read``, and a store's read waits on fsspec's I/O thread; a collection started
    there could run an h5py finalizer, which waits for that lock, and neither would go on.
    (Objects are still freed as their last reference goes; only cycles wait.)"""
    paused = is_remote(location) and gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def size_of(location: Location) -> int:
    """The size in bytes of the file or object at ``location``."""
    return int(location.stat().st_size)


def at_path(location: UPath, inner: str) -> UPath:
    """The location ``inner`` (a path inside ``location``'s filesystem, as listings give
    them) with ``location``'s protocol and storage options."""
    from upath import UPath

    protocol = location.protocol
    protocol = protocol[0] if isinstance(protocol, tuple | list) else protocol
    inside: UPath = UPath(f"{protocol}://{inner.lstrip('/')}", **location.storage_options)
    return inside


def install_hint(protocol: str) -> str:
    """The ``pip install`` that brings ``protocol``."""
    return f"pip install 'pixscale[{EXTRAS.get(protocol, 'remote')}]'"


def shown(location: object) -> str:
    """How messages and records name ``location``: a local path as given, a URL without
    its user information and query string (where credentials and signatures travel)."""
    text = str(location)
    if not is_url(text):
        return text
    parts = urlsplit(text)
    host = parts.netloc.rpartition("@")[2]  # without user information
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def name_of(location: Location) -> str:
    """What a record keeps of an input: a local file's name, a URL whole (``shown``)."""
    return shown(location) if is_remote(location) else location.name


@contextmanager
def storage_errors(location: Location, error: type[PixscaleError] = InputError) -> Iterator[None]:
    """Inside: a failed storage call becomes ``error``, one line naming ``location`` (as
    ``shown``) and the reason (``storage_reason``)."""
    try:
        yield
    except storage_exceptions() as exc:
        raise error(f"{shown(location)}: {storage_reason(exc)}") from exc


def storage_reason(exc: BaseException) -> str:
    """A short reason for a failed storage call, from fsspec's, botocore's or aiohttp's
    exceptions, holding no credential (their messages name codes and keys, not secrets).
    A local file's error keeps its own words."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return exc.strerror
    if isinstance(exc, FileNotFoundError):
        return "no such bucket" if "bucket does not exist" in str(exc) else "no such object"
    if isinstance(exc, PermissionError):
        return "access denied (check the credentials and the bucket's permissions)"
    if isinstance(exc, IsADirectoryError):
        return "is a folder (a prefix), not an object"
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"):
        return "no credentials found (set them in the environment or with --storage-option)"
    if name in ("EndpointConnectionError", "ClientConnectorError", "ConnectionError"):
        return "cannot reach the storage endpoint"
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden"):
        return f"access denied: {code} (check the credentials)"
    if code == "NoSuchBucket":
        return "no such bucket"
    # the storage library's own words may hold what it was given (an endpoint, a region):
    # its kind and code only
    return f"storage error: {name}" + (f" {code}" if code else "")


def storage_exceptions() -> tuple[type[BaseException], ...]:
    """``OSError`` and the storage libraries' own exceptions, as far as they are installed."""
    found: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        found += [BotoCoreError, ClientError]
    except ImportError:
        pass
    try:
        from aiohttp import ClientError as HttpError

        found.append(HttpError)
    except ImportError:
        pass
    return tuple(found)
