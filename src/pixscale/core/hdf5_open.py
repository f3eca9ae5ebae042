"""The one way pixscale looks up an HDF5 dataset it is about to read: whatever the caller
(an input's images or labels, an output's images, labels or ``params/`` arrays), only bytes
of the named file are read.

HDF5 can link a name to an object in another file (external links, user-defined links),
keep a dataset's bytes in raw files of any name (external storage) and map a dataset from
other files (virtual datasets). A file received from elsewhere must not make pixscale read
the user's other files, so all three are refused here, naming the file and the dataset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pixscale.core.location import Location, shown
from pixscale.errors import InputError, PixscaleError

if TYPE_CHECKING:
    import h5py

#: Soft links followed while checking one name (HDF5 allows cycles; its own limit is 16).
MAX_SOFT_LINKS = 16
#: The end of every refusal.
OUTSIDE = "refusing to read outside the input"
#: Exceptions by which h5py reports an object it cannot look at.
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)


def local_object(
    handle: h5py.File,
    path: Location,
    key: str,
    what: str,
    error: type[PixscaleError] = InputError,
) -> Any:
    """The object named ``key`` in ``handle`` (None when there is none), known to live in
    this file.

    Every component of the name is looked at as a link before anything is looked up
    through it; soft links stay inside the file but may lead through an external link, so
    their targets are checked the same way, before the components after them.

    Parameters
    ----------
    handle
        The open file.
    path
        The file or URL, for messages.
    key
        The object's name in the file.
    what
        What the object is to the caller (``"dataset"``, ``"labels"``, …), for messages.
    error
        The exception raised on refusal.

    Raises
    ------
    PixscaleError
        ``error``, when a link on the way leads out of the file.
    """
    if not links_stay_inside(handle, path, key, what, error):
        return None
    try:
        item = handle.get(key)
    except H5_ERRORS:  # e.g. a soft link cycle HDF5 gives up on
        return None
    if item is not None and item.id.fileno != handle.id.fileno:
        raise error(f"{shown(path)}: {what} {key!r} lives in another file; {OUTSIDE}")
    return item


def local_dataset(
    handle: h5py.File,
    path: Location,
    key: str,
    what: str,
    error: type[PixscaleError] = InputError,
    virtual: bool = False,
) -> h5py.Dataset | None:
    """The dataset named ``key`` (None when the name names nothing or no dataset), known to
    hold only bytes of this file.

    Parameters
    ----------
    handle, path, key, what, error
        As for ``local_object``.
    virtual
        Accept a virtual dataset: the caller checks every file its mapping reads.

    Raises
    ------
    PixscaleError
        ``error``, when a link on the way leads out of the file, when the dataset keeps
        its bytes in external raw files, or when it is virtual (unless ``virtual``).
    """
    import h5py  # imported on use: it adds ~30 ms to every start-up

    item = local_object(handle, path, key, what, error)
    if not isinstance(item, h5py.Dataset):
        return None
    if item.is_virtual and not virtual:
        raise error(
            f"{shown(path)}: {what} {key!r} is a virtual dataset (its data is mapped from other "
            f"datasets or files); {OUTSIDE}"
        )
    if item.id.get_create_plist().get_external_count() > 0:
        raise error(
            f"{shown(path)}: {what} {key!r} stores its data in another file (external "
            f"storage); {OUTSIDE}"
        )
    return item


def links_stay_inside(
    handle: h5py.File, path: Location, key: str, what: str, error: type[PixscaleError]
) -> bool:
    """Whether ``key`` names an object, refusing it when a link on its way leads out of the
    file (see ``local_object``)."""
    budget = [MAX_SOFT_LINKS]

    def check(name: str) -> bool:
        import h5py

        prefix = ""
        for part in (p for p in name.split("/") if p):
            prefix = f"{prefix}/{part}"
            try:
                link = handle.get(prefix, getlink=True)
            except H5_ERRORS:  # e.g. a component that is a dataset, not a group
                return False
            if link is None:
                return False
            if isinstance(link, h5py.HardLink):
                continue
            if isinstance(link, h5py.ExternalLink):
                raise error(
                    f"{shown(path)}: {what} {key!r} is an external link to {link.filename}:"
                    f"{link.path}; {OUTSIDE}"
                )
            if not isinstance(link, h5py.SoftLink):
                raise error(f"{shown(path)}: {what} {key!r} is a user-defined link; {OUTSIDE}")
            budget[0] -= 1
            if budget[0] < 0:
                raise error(f"{shown(path)}: {what} {key!r}: more than {MAX_SOFT_LINKS} soft links")
            parent = prefix.rpartition("/")[0]
            if not check(link.path if link.path.startswith("/") else f"{parent}/{link.path}"):
                return False  # a dangling soft link
        return True

    return check(key)
