"""Every example in README.md and docs/*.md runs as written, from a checkout, on the bundled
sample; the README stays a front door and every link in the pages leads somewhere.

The ``sh`` and ``python`` blocks of a page run in order in one temporary folder holding a copy
of ``sample_data/``, so later examples use what earlier ones wrote; running one block alone
(``-k``) runs the blocks before it first. ``pixscale`` is the entry point installed beside this
interpreter. A block preceded by ``<!-- not run: REASON -->`` is no test (a download, a
cluster; ``test_examples_not_run_say_why`` keeps their list short and explained);
``<!-- needs: zarr, dask -->`` and a Python block's own imports skip it only where such a module
is missing (such blocks write nothing later blocks read). ``pip install`` commands are not run
(this environment is the installed one); a block that is then only ``pytest`` is this suite.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS_PAGES = [
    "inputs.md",
    "strategies.md",
    "outputs.md",
    "safety.md",
    "python-api.md",
    "scale-out.md",
    "object-storage.md",
    "performance.md",
]
FRONT_DOOR = (
    "pip install . && pixscale convert sample_data/mnist-train-1k-images-idx3-ubyte.gz"
    " -o mnist-sample.h5",
    "pip install '.[test]' && pytest",
)
README_MAX_LINES = 250
#: Languages of fenced blocks: those run, and plain text shown as it is.
RUN = ("sh", "python")
SHOWN = ("text",)
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
NOTE = re.compile(r"<!--\s*(not run|needs):\s*((?:(?!-->).)*?)\s*-->\s*\Z", re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.MULTILINE)
BLOCK_TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int
    lang: str
    code: str
    not_run: str | None = None
    needs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT).as_posix()}:{self.line}"

    def missing(self) -> list[str]:
        """Modules this block needs that are not installed."""
        wanted = list(self.needs)
        if self.lang == "python":
            wanted += imported_modules(self.code)
        return [name for name in wanted if importlib.util.find_spec(name) is None]


def imported_modules(code: str) -> list[str]:
    """Top-level modules a Python example imports."""
    names = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    return names


def page_blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, with the note just before each."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        note = NOTE.search(text, 0, match.start())
        kind, detail = note.groups() if note else (None, "")
        found.append(
            Block(
                page=page,
                line=text.count("\n", 0, match.start()) + 1,
                lang=match.group(1).strip(),
                code=match.group(2),
                not_run=detail if kind == "not run" else None,
                needs=tuple(n.strip() for n in detail.split(",")) if kind == "needs" else (),
            )
        )
    return found


BLOCKS = {page: page_blocks(page) for page in PAGES}


def shell_script(code: str) -> str:
    """``code`` without its ``pip install`` commands (``pip install X && cmd`` keeps ``cmd``)."""
    lines = []
    for line in code.splitlines():
        if line.startswith("pip install"):
            _, joined, rest = line.partition(" && ")
            line = rest if joined else ""
        lines.append(line)
    return "\n".join(lines).strip()


def never_run(block: Block) -> str | None:
    """Why ``block`` is never run by this file (it is no test here), or None."""
    if block.lang not in RUN:
        return "plain text"
    if block.not_run is not None:
        return block.not_run
    if block.lang == "sh":
        script = shell_script(block.code)
        if not script:
            return "installs packages only"
        if script == "pytest":
            return "runs this test suite"
    return None


def why_not_run(block: Block) -> str | None:
    """Why ``block`` is not run here, or None."""
    missing = block.missing()
    return never_run(block) or (f"needs {', '.join(missing)}" if missing else None)


#: The examples run as tests; those that cannot run here (downloads, clusters) are listed
#: by ``test_examples_not_run_say_why`` instead of being skipped tests.
RUNNABLE = [block for blocks in BLOCKS.values() for block in blocks if never_run(block) is None]
#: Most examples a page set may leave unrun (each with its reason).
MAX_NOT_RUN = 8


@dataclass
class Workspace:
    """The folder a page's examples run in, and how far they have run."""

    folder: Path
    ran: set[int] = field(default_factory=set)
    failed: str | None = None


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Workspace]:
    made: dict[Path, Workspace] = {}
    for page in PAGES:
        folder = tmp_path_factory.mktemp(page.stem)
        shutil.copytree(ROOT / "sample_data", folder / "sample_data")
        made[page] = Workspace(folder)
    return made


def run(block: Block, folder: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "pixscale").is_file(), f"no pixscale entry point beside {sys.executable}"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    if block.lang == "sh":
        command = ["bash", "-euo", "pipefail", "-c", shell_script(block.code)]
    else:
        command = [sys.executable, "-c", block.code]
    return subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
    )


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.name)
def test_example_runs(block: Block, workspaces: dict[Path, Workspace]) -> None:
    reason = why_not_run(block)
    if reason is not None:
        pytest.skip(reason)
    space = workspaces[block.page]
    for index, earlier in enumerate(BLOCKS[block.page]):
        if earlier == block:
            break
        if earlier.lang in RUN and index not in space.ran and why_not_run(earlier) is None:
            if space.failed is None:
                space.ran.add(index)
                if run(earlier, space.folder).returncode != 0:
                    space.failed = earlier.name
    if space.failed is not None:
        pytest.skip(f"an earlier example failed: {space.failed}")
    space.ran.add(BLOCKS[block.page].index(block))
    outcome = run(block, space.folder)
    if outcome.returncode != 0:
        space.failed = block.name
    assert outcome.returncode == 0, (
        f"{block.name} exited {outcome.returncode}\n{outcome.stdout}\n{outcome.stderr}"
    )


def test_examples_not_run_say_why() -> None:
    unrun = {
        block.name: never_run(block)
        for blocks in BLOCKS.values()
        for block in blocks
        if block.lang in RUN and never_run(block) is not None
    }
    assert all(reason for reason in unrun.values()), unrun
    assert len(unrun) <= MAX_NOT_RUN, unrun


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_block_is_run_or_plain_text(page: Path) -> None:
    for block in BLOCKS[page]:
        assert block.lang in RUN + SHOWN, f"{block.name}: fenced as {block.lang!r}"


def test_readme_opens_with_the_two_commands() -> None:
    first, second = BLOCKS[ROOT / "README.md"][:2]
    assert (first.code.strip(), second.code.strip()) == FRONT_DOOR
    assert first.lang == second.lang == "sh"
    text = (ROOT / "README.md").read_text()
    assert text.index("```") > text.index("# pixscale") and "## " not in text[: text.index("```")]


def test_readme_is_a_front_door_to_every_docs_page() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    for name in DOCS_PAGES:
        assert f"](docs/{name})" in text, name
    assert "docs/sample_preview.png" in text


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_links_lead_to_files_and_headings_that_exist(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor and linked.suffix == ".md":
            anchors = {slug(h) for h in HEADING.findall(linked.read_text())}
            assert anchor in anchors, f"{page.name}: {target}"
