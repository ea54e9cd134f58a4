"""docs/migrate-command.md shows what `taskrunners migrate` really does.

The page's example is three blocks: the Prefect program (a `python` block marked
no-run: it needs Prefect), the `diff` block that `--diff` prints, the `text` block of
notes, and the ported program (a `python` block that tests/test_docs.py runs). Here the
command runs on the first block and its output must equal the others, so the page
cannot drift from the command. Every section a note can link to is a heading there.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

pytest.importorskip("libcst", reason="taskrunners migrate needs libcst (the [migrate] extra)")

from taskrunners._cli import main
from taskrunners._migrate import _table

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "migrate-command.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def example_blocks() -> dict[str, str]:
    """The page's example blocks, by role: before, diff, notes, after."""
    text = PAGE.read_text(encoding="utf-8")
    example = text.split("## An example", 1)[1].split("\n## ", 1)[0]
    blocks = FENCE.findall(example)
    assert [language for language, _ in blocks] == ["python", "diff", "text", "python"]
    before, diff, notes, after = (body for _, body in blocks)
    return {"before": before, "diff": diff, "notes": notes, "after": after}


def test_the_page_is_what_the_command_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = example_blocks()
    monkeypatch.chdir(tmp_path)
    Path("pipeline.py").write_text(blocks["before"], encoding="utf-8")

    assert main(["migrate", "--diff", "pipeline.py"]) == 0
    printed = capsys.readouterr()
    assert printed.out == blocks["diff"]
    assert printed.err == blocks["notes"]  # the notes and the summary line
    assert Path("pipeline.py").read_text(encoding="utf-8") == blocks["before"]  # --diff writes nothing

    assert main(["migrate", "pipeline.py"]) == 0
    assert Path("pipeline.py").read_text(encoding="utf-8") == blocks["after"]
    assert main(["migrate", "--check", "pipeline.py"]) == 0  # and a second run changes nothing


def test_the_example_shows_an_import_form_of_each_kind() -> None:
    before = example_blocks()["before"]
    assert "import prefect\n" in before  # attribute use: prefect.task
    assert "task as prefect_task" in before  # an alias
    assert "from prefect.task_runners import" in before  # a submodule
    assert "PrefectFuture" in before and "task_run_id" in before  # renamed names


def _slug(heading: str) -> str:
    """The anchor mkdocs' `toc` extension gives a heading."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_every_section_a_note_links_to_is_a_heading_of_the_page() -> None:
    headings = {
        _slug(line.lstrip("#").strip()) for line in PAGE.read_text().splitlines() if line.startswith("#")
    }
    sections = {
        *_table.UNSUPPORTED.values(),
        *_table.KEYWORD_SECTIONS.values(),
        *(section for _, section in _table.METHODS.values()),
        *_table.METHOD_KEYWORDS.values(),
        _table.OPTIONS,
        _table.OTHER,
    }
    assert sections - headings == set()
    assert _table.GUIDE == "docs/migrate-command.md"
