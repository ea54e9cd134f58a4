"""The plugin template in examples/runner-plugin, and the docs page that walks through it.

The example's own tests (its conformance suite included) run from its folder, with the
package installed: `pip install -e "examples/runner-plugin[test]"`, then `python -m
pytest` in that folder. Here: the docs show the code that the example ships.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "runner-plugin"
PAGE = ROOT / "docs" / "writing-a-runner.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_the_page_shows_the_runner_exactly_as_the_example_ships_it() -> None:
    source = (EXAMPLE / "src" / "taskrunners_executor" / "_runner.py").read_text(encoding="utf-8")
    assert source in python_blocks(PAGE.read_text(encoding="utf-8"))


def test_the_page_shows_the_examples_entry_point_and_plugin_module() -> None:
    entry_point = '[project.entry-points."taskrunners.runners"]\nexecutor = "taskrunners_executor._plugin"\n'
    project = (EXAMPLE / "pyproject.toml").read_text(encoding="utf-8")
    assert 'name = "taskrunners-executor"' in project and entry_point in project
    assert entry_point in PAGE.read_text(encoding="utf-8")
    plugin = (EXAMPLE / "src" / "taskrunners_executor" / "_plugin.py").read_text(encoding="utf-8")
    assert "@hookimpl\ndef taskrunners_runner_class():" in plugin
    assert "from ._runner import ExecutorTaskRunner" in plugin
