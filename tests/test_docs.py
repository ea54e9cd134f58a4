"""The documentation's examples run, and the site's pages hang together.

Every fenced block opened with ```` ```python ```` (or ```` ```py ````) in `docs/**/*.md`
and in `README.md` is one test, with the id `page:line` (the line of its opening fence). A block runs in
a fresh module namespace of its own, in this process: it may define tasks and flows,
and its `assert` statements are the test.

A block meant only to be read (an outline with `...`, say) is marked by the line
`<!-- no-run -->` just before its opening fence (blank lines between them are
allowed). The comment does not show in the rendered page. Blocks in other languages
(```` ```toml ````, ```` ```text ````, ```` ```bash ````) never run.

A block must not leave a `TaskRunnersWarning` unhandled: an example that shows a
warning catches it and asserts on it.
"""

from __future__ import annotations

import re
import sys
import types
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
import pytest
from taskrunners import TaskRunnersWarning

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NO_RUN = "<!-- no-run -->"
RUNNABLE = {"python", "py", "python3"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    code: str
    no_run: bool

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced code block of a Markdown page, with its language and position."""
    page = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence, indent = match["fence"], match["indent"]
        info = match["info"].strip()
        language = info.split()[0].lstrip("{.").rstrip("}").lower() if info else ""
        start = index
        body = []
        index += 1
        while index < len(lines):
            line = lines[index]
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                break
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            index += 1
        else:
            raise AssertionError(f"{page}:{start + 1}: fenced block never closed")
        previous = start - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        no_run = previous >= 0 and lines[previous].strip() == NO_RUN
        blocks.append(Block(page, start + 1, language, "\n".join(body) + "\n", no_run))
        index += 1
    return blocks


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def runnable_blocks() -> list[Block]:
    sources = [ROOT / "README.md", *pages()]
    return [b for path in sources for b in fenced_blocks(path) if b.language in RUNNABLE and not b.no_run]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda b: b.id)
def test_example_runs(block: Block) -> None:
    name = "docs_example_" + re.sub(r"\W", "_", block.id)
    module = types.ModuleType(name)
    module.__file__ = str(ROOT / block.page)
    sys.modules[name] = module  # so that dataclasses, pickling and inspect find it
    # Worker processes cannot import this module by name: like a script's __main__,
    # its tasks travel by value.
    cloudpickle.register_pickle_by_value(module)
    try:
        code = compile("\n" * (block.line) + block.code, str(ROOT / block.page), "exec")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TaskRunnersWarning)
            exec(code, module.__dict__)
        ours = [w for w in caught if issubclass(w.category, TaskRunnersWarning)]
        assert not ours, f"the example left a warning unhandled: {ours[0].message}"
    finally:
        cloudpickle.unregister_pickle_by_value(module)
        del sys.modules[name]


def test_docs_have_examples() -> None:
    assert len(runnable_blocks()) >= 30


def test_no_run_marker_is_rare() -> None:
    marked = [b.id for path in pages() for b in fenced_blocks(path) if b.no_run]
    assert len(marked) <= 3, f"too many blocks marked {NO_RUN}: {marked}"


# -- the site ---------------------------------------------------------------------------


def nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    return re.findall(r":\s*([\w/.-]+\.md)\s*$", text, flags=re.MULTILINE)


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    listed = nav_pages()
    on_disk = [p.relative_to(DOCS).as_posix() for p in pages()]
    assert sorted(listed) == sorted(on_disk)
    assert len(set(listed)) == len(listed), "a page is listed twice"


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's `toc` extension gives a heading (its default slugify)."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    anchors = set()
    in_fence = None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _FENCE.match(line)
        if match:
            fence = match["fence"]
            if in_fence is None:
                in_fence = fence
            elif line.strip().startswith(in_fence):
                in_fence = None
            continue
        if in_fence is None and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#").strip()))
    return anchors


def test_links_between_pages_resolve() -> None:
    broken = []
    for path in pages():
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"(?ms)^(`{3,}|~{3,}).*?^\1", "", text)  # no links inside code blocks
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an external address
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(DOCS)} -> {target}"
            if not linked.is_file():
                broken.append(f"{where} (no such page)")
            elif anchor and anchor not in _anchors(linked):
                broken.append(f"{where} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_api_reference_lists_every_public_name() -> None:
    import importlib

    text = (DOCS / "reference.md").read_text(encoding="utf-8")
    errors = set(importlib.import_module("taskrunners._errors").__all__)  # the page renders the module
    user_names = set(importlib.import_module("taskrunners").__all__)  # lowlevel re-exports a few
    missing = []
    modules = (
        "taskrunners",
        "taskrunners.lowlevel",
        "taskrunners_threads",
        "taskrunners_processes",
        "taskrunners_dask",
        "taskrunners_ray",
    )
    for module in modules:
        for name in importlib.import_module(module).__all__:
            if name.startswith("__") or (module == "taskrunners" and name in errors):
                continue
            if module == "taskrunners.lowlevel" and name in user_names:
                continue  # listed as taskrunners.NAME
            if f"::: {module}.{name}\n" not in text:
                missing.append(f"{module}.{name}")
    assert not missing, f"docs/reference.md lacks: {missing}"
