"""Outputs appear whole or not at all: write to temporary files, commit them in one step.

Every output is written to a temporary file beside its target. ``commit`` first makes the
temporary files durable (``fsync``), then places all of a run's files under an exclusive lock
on their folders, so two runs never mix their files, and finally makes the placing durable
(``fsync`` of the folders): after a power cut a committed name holds the whole file.

- without ``overwrite`` each file is placed with ``os.link`` (which fails if the target
  exists, whoever created it and whenever), so no-clobber is a property of the commit
  itself, not of an earlier ``exists()``; a failure removes the files this run already
  linked (those whose inode is still this run's) and nothing else;
- with ``overwrite`` each file is placed with ``os.replace``, but only over a regular file
  (or nothing): FIFOs, devices, sockets, folders and links to them are refused, when the
  target is checked and again under the lock;
- companions come first and the main data file last, so that whoever finds the main file
  finds the companions of the same run beside it; companions an earlier output had and this
  run does not write (a stale ``<stem>.labels.npy``) are removed in the same commit.

Readers that want a consistent set of files take the same lock shared (``folder_lock``).

The commit is the run's one decision point, and it holds three invariants for every engine:

- **protected inputs**: no target is a file the run reads, compared by device and inode
  (so neither another spelling, a symlink nor a hard link of an input can be replaced);
- **sealed data**: a run that writes images commits only once ``seal`` confirmed that the
  writer received exactly the declared number of images and that the record carries their
  checksum;
- **interrupts**: a signal reported before the decision places nothing; one that arrives
  while files are being placed lets the placing finish, then stops the run, which reports
  that its outputs were written (``PLACED``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from pixscale.core.location import Location, identity, is_remote, shown
from pixscale.errors import OutputError
from pixscale.store.io.remote import check_remote, remote_kind, remove_remote, upload

#: Set by a signal handler when the run is to stop. A handler's exception can be swallowed
#: (Python ignores exceptions raised inside finalizers and weakref callbacks), so the
#: commit checks this too: an interrupted run never places its outputs.
INTERRUPTED = threading.Event()

#: Set while a commit places its outputs: a signal then waits for the placing to end.
COMMITTING = threading.Event()

#: The main output of each commit that placed its files, for what an interrupted run reports.
PLACED: list[Location] = []

#: ``os.link`` failures meaning "this file system has no hard links", not "target exists".
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}


def temporary_name(target: Path) -> Path:
    """A fresh hidden name beside ``target`` (same folder, so same file system)."""
    return folder_of(target) / f".{target.name}.{secrets.token_hex(8)}.tmp"


def folder_of(target: Path) -> Path:
    """The folder ``target`` is (or would be) in."""
    return target.parent if str(target.parent) else Path(os.curdir)


FileId = tuple[int, int]


def file_id(path: Path) -> FileId | None:
    """(device, inode) of what ``path`` names, following links; None where nothing is."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return info.st_dev, info.st_ino


def exists(target: Location) -> bool:
    """Whether anything (a link included) is at ``target``, a path or a URL."""
    if is_remote(target):
        return remote_kind(target) is not None
    return os.path.lexists(target)


def already_exists(target: Path) -> OutputError:
    """The no-clobber refusal."""
    return OutputError(f"{target}: already exists. Use --overwrite to replace it.")


def refuse_special(target: Path) -> None:
    """Refuse replacing anything but a regular file (a symlink is judged by what it names)."""
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return  # nothing there, or a dangling symlink: replacing it writes into nothing
    if stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{target}: is a folder")
    if not stat.S_ISREG(info.st_mode):
        raise OutputError(f"{target}: not a regular file; refusing to replace it")


@contextmanager
def folder_lock(folders: Iterable[Path], shared: bool = False) -> Iterator[None]:
    """``flock`` on each folder (exclusive, or ``shared`` for readers), in a fixed order.

    File systems without ``flock`` (some network mounts) go unlocked: no-clobber does not
    depend on the lock, only the ordering of concurrent ``--overwrite`` commits does.
    """
    opened: dict[tuple[int, int], int] = {}
    try:
        for folder in folders:
            try:
                fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
            except OSError:
                continue
            info = os.fstat(fd)
            key = (info.st_dev, info.st_ino)
            if key in opened:
                os.close(fd)
                continue
            opened[key] = fd
        for key in sorted(opened):
            try:
                fcntl.flock(opened[key], fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF):
                    raise
        yield
    finally:
        for fd in opened.values():
            os.close(fd)  # closing releases the lock


class StagedOutputs:
    """Temporary files beside their targets, placed by ``commit`` all together.

    Parameters
    ----------
    overwrite
        Replace existing regular files; without it an existing target is an error.
    inputs
        Files (and folders) this run reads, which it must never replace: compared by
        device and inode, whatever the spelling.
    """

    def __init__(self, overwrite: bool, inputs: Iterable[Location] = ()) -> None:
        self.overwrite = overwrite
        self.inputs: list[Path] = []
        self.input_ids: set[FileId] = set()
        #: URLs the run reads (``identity``): objects have no inodes, their names are compared.
        self.remote_inputs: set[str] = set()
        self.add_inputs(inputs)
        #: Images the run's data output must receive (``expect_images``), and the seal.
        self.expected_images: int | None = None
        self.sealed = False
        self.staged: dict[Location, Path] = {}
        #: Outputs that are whole folders (Zarr stores): (commit, discard) callables run
        #: after the files, so such a store, the main output, appears last.
        self.folders: list[tuple[Callable[[], None], Callable[[], None]]] = []
        self.main: Location | None = None
        self.owned: dict[Location, None] = {}
        #: Temporary folders of folder outputs, and the targets whose folders are synced.
        self.built: list[Path] = []
        self.placed: list[Location] = []
        #: Local folder of the files staged for URL targets (uploaded by the commit).
        self.scratch: Path | None = None

    def check(self, target: Location) -> None:
        """Refuse a target up front: missing folder, an input, a folder, an existing file
        (without ``overwrite``) or something that is not a regular file (with it)."""
        if is_remote(target):
            self.refuse_input(target)
            check_remote(target, self.overwrite)
            return
        folder = folder_of(target)
        if not folder.is_dir():
            raise OutputError(f"{target}: output folder {folder} does not exist")
        self.refuse_input(target)
        if target.is_dir():
            raise OutputError(f"{target}: is a folder")
        if not self.overwrite and os.path.lexists(target):
            raise already_exists(target)
        refuse_special(target)

    def refuse_input(self, target: Location) -> None:
        """Refuse a target that is (a name, a link or a hard link of) a file the run reads;
        a URL target, one that names an object or prefix the run reads (or lies inside it)."""
        if is_remote(target):
            name = identity(target)  # s3a://b/x is s3://b/x
            if any(
                name == url or name.startswith(f"{url}/") or url.startswith(f"{name}/")
                for url in self.remote_inputs
            ):
                raise OutputError(f"{shown(target)}: refusing to overwrite an input of this run")
            return
        found = file_id(target)
        if Path(os.path.realpath(target)) in self.inputs or (
            found is not None and found in self.input_ids
        ):
            raise OutputError(f"{target}: refusing to overwrite an input of this run")

    def add_inputs(self, inputs: Iterable[Location]) -> None:
        """Remember files the run reads: local ones by real path and inode, URLs by name."""
        for path in inputs:
            if is_remote(path):
                self.remote_inputs.add(identity(path))
                continue
            self.inputs.append(Path(os.path.realpath(path)))
            if (found := file_id(Path(path))) is not None:
                self.input_ids.add(found)

    def protect(self, inputs: Iterable[Location]) -> None:
        """Add files the run reads, once they are known (after the targets were checked)."""
        self.add_inputs(inputs)
        for target in [*self.staged, *self.owned]:
            self.refuse_input(target)

    def expect_images(self, count: int) -> None:
        """Declare that this run writes ``count`` images: it commits only once sealed."""
        self.expected_images = count

    def seal(self, written: int, record: dict[str, Any]) -> None:
        """Confirm, before the commit, that exactly the expected images were written and
        that the ``record`` carries their checksum.

        Raises
        ------
        OutputError
            When the count differs or the checksum is missing: nothing is committed.
        """
        target = self.main if self.main is not None else "output"
        if written != self.expected_images:
            raise OutputError(
                f"{target}: {written:,} images were written of the {self.expected_images:,} "
                "declared; nothing was committed"
            )
        output = record.get("output")
        if not isinstance(output, dict) or not isinstance(output.get("checksum"), dict):
            raise OutputError(f"{target}: the record carries no checksum; nothing was committed")
        self.sealed = True

    def stage_data(self, target: Location, images: int) -> Path:
        """``stage`` the main data file of ``images`` images: the run commits only once
        ``seal`` confirmed them."""
        self.expect_images(images)
        return self.stage(target, main=True)

    def stage(self, target: Location, main: bool = False) -> Path:
        """A fresh temporary path in the target's folder (same file system as the target).

        The first target staged is the main data file, committed last, unless a later one
        says ``main``.
        """
        self.check(target)
        if is_remote(target):
            return self.stage_remote(target)
        while True:
            temp = temporary_name(target)
            # recorded before it exists: an interrupt at any point leaves nothing unrecorded
            self.staged[target] = temp
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                del self.staged[target]  # another's file: never ours to remove
                continue
            os.close(fd)
            break
        if main or self.main is None:
            self.main = target
        return temp

    def stage_remote(self, target: Location) -> Path:
        """A local temporary file for the URL ``target``, uploaded whole by the commit."""
        if self.scratch is None:
            self.scratch = Path(tempfile.mkdtemp(prefix="pixscale-"))
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=self.scratch)
        os.close(fd)
        self.staged[target] = Path(name)
        if self.main is None:
            self.main = target
        return Path(name)

    def own(self, targets: Iterable[Location]) -> None:
        """Declare companions of this output: checked like targets now; with ``overwrite``,
        those this run does not stage are removed when it commits (stale companions)."""
        for target in targets:
            self.check(target)
            self.owned[target] = None

    def order(self) -> list[Location]:
        """Companions in the order staged, the main data file last."""
        return sorted(self.staged, key=lambda target: target == self.main)

    def stale(self) -> list[Location]:
        """Declared companions that exist but that this run does not write."""
        return [t for t in self.owned if t not in self.staged and exists(t)]

    def commit(self) -> None:
        """Place every staged file (see the module notes); all or, on failure, none of the
        files this run linked."""
        if not self.staged and not self.folders:
            return
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt
        if self.expected_images is not None and not self.sealed:
            raise OutputError(f"{self.main}: the data was not sealed; nothing was committed")
        for temp in self.staged.values():
            sync_file(temp)
        for built in self.built:
            sync_tree(built)
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt
        COMMITTING.set()
        try:
            for target in [*self.staged, *self.owned, *self.placed]:
                self.refuse_input(target)  # ``placed``: so far the folder outputs' targets
            linked = self.commit_files() if self.staged else []
            try:
                for place_folder, _ in self.folders:
                    place_folder()
            except BaseException:
                if not self.overwrite:
                    undo(linked)  # all or none: the files go with the store they belong to
                raise
            self.folders.clear()
            if self.main is not None:
                PLACED.append(self.main)  # before a signal may raise again
            for folder in {folder_of(t) for t in [*self.placed, *self.owned] if not is_remote(t)}:
                sync_folder(folder)
        finally:
            COMMITTING.clear()
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt  # a signal came while placing: stop now, outputs whole

    def stage_folder(
        self, target: Location, built: Path, commit: Callable[[], None], discard: Callable[[], None]
    ) -> None:
        """The folder output ``target`` (a store), the run's main output, built in the
        temporary folder ``built``: made durable before the decision; ``commit`` puts it in
        place (taking its own lock) after the files; ``discard`` removes it if the run
        fails."""
        self.folders.append((commit, discard))
        self.built.append(built)
        self.placed.append(target)
        self.main = target

    def commit_files(self) -> list[tuple[Location, os.stat_result]]:
        """Place the staged files; returns what was placed, for an undo."""
        mode = 0o666 & ~current_umask()
        folders = [folder_of(t) for t in [*self.staged, *self.owned] if not is_remote(t)]
        with folder_lock(folders):
            for target in [*reversed(self.order()), *self.stale()]:
                self.recheck(target)
            placed: list[tuple[Location, os.stat_result]] = []
            try:
                for target in self.order():
                    if target == self.main:
                        self.remove_stale()
                    temp = self.staged[target]
                    if is_remote(target):
                        upload(temp, target, self.overwrite)
                        placed.append((target, os.stat(temp)))
                        temp.unlink()
                        self.placed.append(target)
                        continue
                    os.chmod(temp, mode)
                    placed.append((target, os.stat(temp)))
                    self.place(temp, target)
                    self.placed.append(target)
            except BaseException:
                if not self.overwrite:
                    undo(placed)
                raise
        self.staged.clear()
        return placed

    def recheck(self, target: Location) -> None:
        """Under the lock, just before placing: the same refusals as ``check``."""
        if is_remote(target):
            return  # placed by a conditional upload, which refuses an existing object itself
        self.refuse_input(target)
        if not self.overwrite and os.path.lexists(target):
            raise already_exists(target)
        refuse_special(target)

    def place(self, temp: Path, target: Path) -> None:
        """Put ``temp`` at ``target``: replace a regular file, or link where nothing is."""
        if self.overwrite:
            refuse_special(target)
            os.replace(temp, target)
            return
        try:
            os.link(temp, target)
        except FileExistsError:
            raise already_exists(target) from None
        except OSError as exc:
            if exc.errno not in NO_HARD_LINKS:
                raise
            place_exclusively(temp, target)
            return
        temp.unlink()

    def remove_stale(self) -> None:
        """Remove the stale companions (regular files only)."""
        for target in self.stale():
            if is_remote(target):
                remove_remote(target)
                continue
            refuse_special(target)
            os.unlink(target)

    def discard(self) -> None:
        """Remove every temporary file and folder not committed."""
        for temp in self.staged.values():
            temp.unlink(missing_ok=True)
        self.staged.clear()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
        for _, discard_folder in self.folders:
            discard_folder()
        self.folders.clear()


def place_exclusively(temp: Path, target: Path) -> None:
    """No hard links here: claim ``target`` with an exclusive create, then rename over it."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise already_exists(target) from None
    os.close(fd)
    os.replace(temp, target)


def undo(placed: list[tuple[Location, os.stat_result]]) -> None:
    """Remove the targets this run placed, if they are still the files it placed."""
    for target, mine in reversed(placed):
        if is_remote(target):
            remove_remote(target)  # uploaded by this run
            continue
        try:
            now = os.lstat(target)
        except FileNotFoundError:
            continue
        if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            os.unlink(target)


def sync_file(path: Path) -> None:
    """Make ``path``'s bytes durable before its name is committed."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(folder: Path) -> None:
    """Make the names in ``folder`` durable (links, renames); file systems that cannot sync
    a folder (some network mounts) are left as they are."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def sync_tree(root: Path) -> None:
    """Every file and folder of a folder output built under ``root``, made durable."""
    for folder, _, files in os.walk(root):
        for name in files:
            sync_file(Path(folder) / name)
        sync_folder(Path(folder))


def current_umask() -> int:
    """The process umask (reading it means setting it; it is restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def staged_outputs(overwrite: bool, inputs: Iterable[Location] = ()) -> Iterator[StagedOutputs]:
    """Commit every staged output if the block succeeds; remove them all otherwise."""
    outputs = StagedOutputs(overwrite, inputs)
    with ExitStack() as cleanup:
        cleanup.callback(outputs.discard)
        yield outputs
        outputs.commit()
