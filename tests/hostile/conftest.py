"""Shared helpers of the hostile-input suite.

The promise under test: bad or hostile input gives exit code 1 and exactly one line on stderr,
``Error: <file>: <reason>``; never a traceback; no new file in the output folder (no partial
output, no hidden ``.tmp``); an existing output never changed; memory within a bound.

Everything goes through the command line only:

- ``cli`` runs ``pixscale.cli.main`` in-process (``cli_helpers.invoke``);
- ``run_child`` / ``start_cli`` run the installed ``pixscale`` as a child process, with its own
  TMPDIR, rlimits and a watchdog, and report its peak resident memory (``ru_maxrss`` of the
  command itself: it is forked from a small launcher, because a child forked from pytest
  inherits pytest's high-water mark);
- ``isolated_cli`` / ``isolated_cli_all`` run CliRunner in a forked child, so that a crash
  (a segfault in a C library), a hang or a memory bomb fails one test, not the whole run;
  ``race_cli`` releases several such children at the same moment.

Checks: ``assert_clean_failure`` (exit 1, no traceback, one ``Error:`` line naming the file
and the reason), ``assert_refused_option``, ``assert_within_memory``; ``snapshot`` /
``assert_unchanged`` compare a whole folder tree (hidden files, FIFOs and symlinks included)
before and after.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cli_helpers import PIXSCALE, invoke

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_IMAGES = ROOT / "sample_data" / "mnist-train-1k-images-idx3-ubyte.gz"
SAMPLE_LABELS = ROOT / "sample_data" / "mnist-train-1k-labels-idx1-ubyte.gz"

#: Peak resident memory allowed to a pixscale process fed a memory bomb.
RSS_BOUND = 400 << 20
#: Safety net for children that try to allocate the world: a failed allocation is still a
#: failure of the test (MemoryError is a traceback), but the machine survives it.
ADDRESS_SPACE_GUARD = 6 << 30
IS_ROOT = os.geteuid() == 0
#: A pytest temporary folder (``…/pytest-N/<test name>N``) within an error line.
PYTEST_TMP = re.compile(r"\S*/pytest-\d+/[^/\s:]+")


# --------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    """What one run of the CLI did, however it was run."""

    args: list[str]
    #: Exit code; negative when a child process was killed by that signal.
    code: int | None
    stdout: bytes
    stderr: str
    #: CliRunner only: the exception that ended the command (SystemExit when clean).
    exception: BaseException | None = None
    exc_text: str = ""
    #: Child process only: peak resident memory in bytes (ru_maxrss of the process itself).
    peak_rss: int | None = None
    #: "timed out", "killed: resident memory over the bound", "crashed: signal N", ...
    note: str = ""

    def describe(self) -> str:
        parts = [f"pixscale {' '.join(map(repr, self.args))}", f"exit code: {self.code}"]
        if self.note:
            parts.append(f"note: {self.note}")
        if self.peak_rss is not None:
            parts.append(f"peak RSS: {self.peak_rss / (1 << 20):.0f} MiB")
        if self.exception is not None and not isinstance(self.exception, SystemExit):
            parts.append(f"exception: {self.exc_text[-3000:] or repr(self.exception)}")
        parts.append(f"stderr: {self.stderr[-3000:]!r}")
        return "\n".join(parts)

    @property
    def error_line(self) -> str:
        lines = self.stderr.splitlines()
        return lines[0] if lines else ""


def cli(args: Sequence[object], input: bytes | str | None = None) -> Outcome:
    """Run ``pixscale ARGS`` in-process (``cli_helpers.invoke``)."""
    argv = [str(a) for a in args]
    result = invoke(argv, input)
    exc = result.exception
    text = ""
    if exc is not None and not isinstance(exc, SystemExit) and result.exc_info is not None:
        text = "".join(traceback.format_exception(*result.exc_info))
    return Outcome(argv, result.exit_code, result.stdout_bytes, result.stderr, exc, text)


def _payload(outcome: Outcome) -> str:
    exc = outcome.exception
    return json.dumps(
        {
            "args": outcome.args,
            "code": outcome.code,
            "stdout": outcome.stdout[-4096:].decode("latin-1"),
            "stderr": outcome.stderr,
            "exception": None if exc is None else type(exc).__name__,
            "exc_text": outcome.exc_text,
        }
    )


def _from_payload(line: bytes) -> Outcome:
    payload = json.loads(line)
    exception: BaseException | None = None
    if payload["exception"] == "SystemExit":
        exception = SystemExit(payload["code"])
    elif payload["exception"] is not None:
        exception = RuntimeError(payload["exception"])
    return Outcome(
        payload["args"],
        payload["code"],
        payload["stdout"].encode("latin-1"),
        payload["stderr"],
        exception,
        payload["exc_text"],
    )


@dataclass
class Forked:
    """A forked child running commands with CliRunner; see ``fork_cli``."""

    commands: list[list[str]]
    pid: int
    read_fd: int

    def finish(self, timeout: float = 60.0) -> list[Outcome]:
        """One outcome per command; those the child never finished carry a note saying why
        (crashed by a signal, timed out)."""
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        note = ""
        while True:
            try:
                block: bytes | None = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                block = None
            if block:
                chunks.append(block)
            finished, status = os.waitpid(self.pid, os.WNOHANG)
            if finished:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
                note = f"timed out after {timeout:.0f} s"
                break
            if block is None:
                time.sleep(0.001)
        with contextlib.suppress(BlockingIOError):
            while block := os.read(self.read_fd, 1 << 16):
                chunks.append(block)
        os.close(self.read_fd)
        if os.WIFSIGNALED(status) and not note:
            note = f"crashed: {signal.Signals(os.WTERMSIG(status)).name}"
        elif not note and os.WEXITSTATUS(status) != 0:
            note = f"the forked child failed (status {os.WEXITSTATUS(status)})"
        lines = [line for line in b"".join(chunks).split(b"\n") if line]
        outcomes = [_from_payload(line) for line in lines]
        for argv in self.commands[len(outcomes) :]:
            outcomes.append(Outcome(argv, None, b"", "", note=note or "never ran"))
        return outcomes


def fork_cli(
    commands: Sequence[Sequence[object]], input: bytes | None = None, gate: int | None = None
) -> Forked:
    """Run ``commands`` one after another with CliRunner in a forked child, which first
    waits for a byte on ``gate`` when given. A segfault, a hang or a memory bomb (the child
    has ``ADDRESS_SPACE_GUARD``) fails only the commands it hits."""
    argvs = [[str(a) for a in args] for args in commands]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read_fd)
            resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_GUARD, ADDRESS_SPACE_GUARD))
            if gate is not None:
                os.read(gate, 1)
            with os.fdopen(write_fd, "w") as pipe:
                for argv in argvs:
                    pipe.write(_payload(cli(argv, input)) + "\n")
                    pipe.flush()
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    return Forked(argvs, pid, read_fd)


def isolated_cli(
    args: Sequence[object], input: bytes | None = None, timeout: float = 60.0
) -> Outcome:
    """``cli`` in a forked child (see ``fork_cli``)."""
    return fork_cli([args], input).finish(timeout)[0]


def isolated_cli_all(
    commands: Sequence[Sequence[object]], input: bytes | None = None, timeout: float = 60.0
) -> list[Outcome]:
    """Several commands, one after another, in one forked child."""
    return fork_cli(commands, input).finish(timeout)


def race_cli(commands: Sequence[Sequence[object]], timeout: float = 60.0) -> list[Outcome]:
    """Each command in its own forked child; all released at the same moment."""
    gate_read, gate_write = os.pipe()
    children = [fork_cli([args], gate=gate_read) for args in commands]
    os.close(gate_read)
    os.write(gate_write, b"x" * len(children))
    os.close(gate_write)
    return [child.finish(timeout)[0] for child in children]


#: Forks the command from a small process so that ru_maxrss is the command's own: a child
#: forked (or vforked) from pytest inherits pytest's high-water mark at exec. Reports the
#: command's pid, then its wait status and ru_maxrss, on the file descriptor in argv[1].
LAUNCHER = """
import os, sys
report = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(report)
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
os.write(report, b"pid %d\\n" % pid)
_, status, usage = os.wait4(pid, 0)
os.write(report, b"done %d %d\\n" % (status, usage.ru_maxrss))
os._exit(0)
"""


def resident_bytes(pid: int) -> int:
    """Current VmRSS of ``pid`` (0 when unknown)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    return 0


@dataclass
class Child:
    """A running ``pixscale`` child started by ``start_cli``."""

    args: list[str]
    launcher: subprocess.Popen[bytes]
    pid: int
    report_fd: int
    stdout_file: Any
    stderr_file: Any

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def alive(self) -> bool:
        return self.launcher.poll() is None

    def finish(self, timeout: float = 120.0, rss_limit: int | None = None) -> Outcome:
        """Wait for the child (killing it past ``timeout`` or over ``rss_limit``)."""
        deadline = time.monotonic() + timeout
        note = ""
        while self.launcher.poll() is None:
            if rss_limit is not None and resident_bytes(self.pid) > rss_limit:
                note = f"killed: resident memory over {rss_limit >> 20} MiB"
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            elif time.monotonic() > deadline:
                note = f"timed out after {timeout:.0f} s"
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            time.sleep(0.005)
        report = _read_all(self.report_fd).decode().split()
        os.close(self.report_fd)
        code: int | None = None
        peak: int | None = None
        if "done" in report:
            at = report.index("done")
            status, peak = int(report[at + 1]), int(report[at + 2]) << 10
            code = os.waitstatus_to_exitcode(status)
            if code < 0 and not note:
                note = f"crashed: {signal.Signals(-code).name}"
        self.stdout_file.seek(0)
        self.stderr_file.seek(0)
        stdout = self.stdout_file.read()
        stderr = self.stderr_file.read().decode("utf-8", "replace")
        self.stdout_file.close()
        self.stderr_file.close()
        return Outcome(self.args, code, stdout, stderr, peak_rss=peak, note=note)


def _read_all(fd: int) -> bytes:
    chunks = []
    while block := os.read(fd, 4096):
        chunks.append(block)
    return b"".join(chunks)


def start_cli(
    args: Sequence[object],
    *,
    stdin: bytes | Path | int | None = None,
    cwd: Path | None = None,
    tmpdir: Path | None = None,
    file_size_limit: int | None = None,
    address_space: int | None = ADDRESS_SPACE_GUARD,
    close_stdout: bool = False,
    stdout: Any = None,
) -> Child:
    """Start ``pixscale ARGS`` as a child process (see ``Child.finish``).

    ``tmpdir`` becomes the child's TMPDIR, so that stray temporary files show up in a folder
    the test watches. ``file_size_limit`` sets RLIMIT_FSIZE with SIGXFSZ ignored.
    """
    argv = [str(a) for a in args]
    command = [*PIXSCALE, *argv]
    if not os.path.isabs(command[0]):
        command[0] = str(Path(command[0]).resolve())
    if isinstance(stdin, bytes):
        stdin_handle: Any = tempfile.TemporaryFile()
        stdin_handle.write(stdin)
        stdin_handle.seek(0)
    elif isinstance(stdin, Path):
        stdin_handle = stdin.open("rb")
    elif stdin is None:
        stdin_handle = subprocess.DEVNULL
    else:
        stdin_handle = stdin
    env = dict(os.environ)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    env.pop("PYTHONWARNINGS", None)

    def prepare() -> None:
        if file_size_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if close_stdout:
            os.close(1)

    read_fd, write_fd = os.pipe()
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(write_fd), *command],
        stdin=stdin_handle,
        stdout=stdout if stdout is not None else out,
        stderr=err,
        cwd=cwd,
        env=env,
        pass_fds=(write_fd,),
        preexec_fn=prepare,
    )
    os.close(write_fd)
    if hasattr(stdin_handle, "close"):
        stdin_handle.close()
    line = b""
    while not line.endswith(b"\n"):
        block = os.read(read_fd, 1)
        if not block:
            raise RuntimeError(f"launcher failed to start {command}: {err.read()!r}")
        line += block
    pid = int(line.split()[1])
    return Child(argv, launcher, pid, read_fd, out, err)


def run_child(
    args: Sequence[object],
    *,
    timeout: float = 120.0,
    rss_limit: int | None = None,
    **options: Any,
) -> Outcome:
    """Run ``pixscale ARGS`` as a child process to completion; see ``start_cli``."""
    return start_cli(args, **options).finish(timeout, rss_limit)


# --------------------------------------------------------------------------- assertions


def assert_clean_failure(
    outcome: Outcome,
    *,
    names: Iterable[object] = (),
    reasons: Iterable[str] = (),
    forbidden: Iterable[str] = (),
) -> str:
    """Exit 1, no traceback, exactly one stderr line ``Error: …`` naming one of ``names``
    and giving one of ``reasons`` (case-insensitive); returns that line.

    Reasons are looked for with the test's temporary folder written ``<tmp>``: it is named
    after the test, and a test about corruption would otherwise find "corrupt" there.
    """
    detail = outcome.describe()
    assert not outcome.note, detail
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), detail
    assert "Traceback" not in outcome.stderr, detail
    assert outcome.code == 1, detail
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr\n{detail}"
    line = lines[0]
    assert line.startswith("Error: "), detail
    texts = [str(name) for name in names]
    if texts:
        assert any(name in line for name in texts), f"the error names none of {texts}\n{detail}"
    reasons = list(reasons)
    if reasons:
        lowered = PYTEST_TMP.sub("<tmp>", line).lower()
        assert any(PYTEST_TMP.sub("<tmp>", r).lower() in lowered for r in reasons), (
            f"the error gives none of the reasons {reasons}\n{detail}"
        )
    for text in forbidden:
        assert text not in line, f"the error should not say {text!r}\n{detail}"
    return line


def assert_refused_option(outcome: Outcome, words: Iterable[str]) -> None:
    """A bad option value: a usage error (exit 2, click's three lines) or a one-line error
    (exit 1); either way no traceback, and the last line says one of ``words``."""
    detail = outcome.describe()
    assert not outcome.note, detail
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), detail
    assert "Traceback" not in outcome.stderr, detail
    assert outcome.code in (1, 2), detail
    lines = outcome.stderr.splitlines()
    assert lines and lines[-1].startswith("Error: "), detail
    if outcome.code == 1:
        assert len(lines) == 1, f"expected exactly one line on stderr\n{detail}"
    words = list(words)
    lowered = lines[-1].lower()
    assert any(w.lower() in lowered for w in words), f"the error says none of {words}\n{detail}"


def assert_within_memory(outcome: Outcome, bound: int = RSS_BOUND) -> None:
    assert outcome.peak_rss is not None, outcome.describe()
    assert outcome.peak_rss <= bound, (
        f"peak RSS {outcome.peak_rss >> 20} MiB over the {bound >> 20} MiB bound\n"
        + outcome.describe()
    )


# --------------------------------------------------------------------------- folders


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root`` (hidden ones too), by kind and content."""
    entries: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            info = os.lstat(path)
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                entries[key] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[key] = ("folder",)
            elif stat.S_ISREG(info.st_mode):
                entries[key] = ("file", info.st_size, file_digest(path))
            else:
                entries[key] = ("special", stat.S_IFMT(info.st_mode), info.st_rdev)
    return entries


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def assert_unchanged(root: Path, before: dict[str, tuple[Any, ...]]) -> None:
    """Nothing new under ``root`` (no partial output, no hidden temporary file), nothing
    removed, nothing changed."""
    after = snapshot(root)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), (
        f"folder {root} changed: added {added}, removed {removed}, changed {changed}"
    )


def leftovers(folder: Path) -> list[str]:
    """Hidden or temporary files in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name)


# --------------------------------------------------------------------------- inputs


def idx_header(*shape: int, dtype: int = 0x08) -> bytes:
    return bytes([0, 0, dtype, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)


def idx_bytes(array: np.ndarray) -> bytes:
    return idx_header(*array.shape) + np.ascontiguousarray(array, np.uint8).tobytes()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def read_sample() -> tuple[np.ndarray, np.ndarray]:
    """The bundled 1,000 MNIST images and labels, decoded independently of pixscale."""

    def decode(path: Path) -> np.ndarray:
        data = gzip.decompress(path.read_bytes())
        ndim = data[3]
        shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)

    return decode(SAMPLE_IMAGES), decode(SAMPLE_LABELS)


def unit_values(pixels: np.ndarray) -> np.ndarray:
    """What ``-s unit`` must store: ``np.float32(x) / np.float32(255)`` (README)."""
    return pixels.astype(np.float32) / np.float32(255)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def sample_arrays() -> tuple[np.ndarray, np.ndarray]:
    return read_sample()


@pytest.fixture
def small_npy(tmp_path: Path, sample_arrays: tuple[np.ndarray, np.ndarray]) -> Path:
    """The first 100 sample images as a uint8 .npy, in its own folder."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    path = folder / "digits.npy"
    np.save(path, sample_arrays[0][:100])
    return path


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def child_tmp(tmp_path: Path) -> Path:
    """A private TMPDIR for child processes."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    return folder


def skip_unless_fifo_supported(folder: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("os.mkfifo is not available here")
    probe = folder / ".fifo-probe"
    try:
        os.mkfifo(probe)
    except OSError as exc:
        pytest.skip(f"FIFOs cannot be made in {folder}: {exc}")
    probe.unlink()


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()
