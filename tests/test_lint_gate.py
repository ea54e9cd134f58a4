"""The lint gate is wired up as documented: one set of pinned tools, run by .ci/run
before the tests, and a ruff configuration where every ignored rule says why."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading TOML on Python 3.10 needs tomli")

ROOT = Path(__file__).resolve().parents[1]


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", requirement)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_hatch_and_the_lint_extra_pin_the_same_tools() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    hatch = tomllib.loads((ROOT / "hatch.toml").read_text(encoding="utf-8"))
    extra = _pins(pyproject["project"]["optional-dependencies"]["lint"])
    assert set(extra) == {"ruff", "mypy", "pyright"}
    assert _pins(hatch["envs"]["default"]["dependencies"]) == extra
    assert hatch["envs"]["default"]["scripts"]["lint"] == "bash .ci/lint --here"


def test_ci_runs_the_lint_gate_before_the_tests() -> None:
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert run.index(".ci/lint") < run.index("-m pytest")
    lint = (ROOT / ".ci" / "lint").read_text(encoding="utf-8")
    for step in ("ruff check", "ruff format --check", "mypy --strict", "verifytypes.py --threshold 95"):
        assert step in lint


def test_every_ignored_ruff_rule_says_why() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    ignore = re.search(r"^ignore = \[\n(.*?)^\]", text, re.S | re.M)
    assert ignore is not None, "[tool.ruff.lint] has no ignore list"
    previous = ""
    for line in ignore.group(1).splitlines():
        stripped = line.strip()
        if stripped.startswith('"'):
            assert previous.startswith("#"), f"ruff ignore {stripped} has no comment above it saying why"
        previous = stripped
    lint = tomllib.loads(text)["tool"]["ruff"]["lint"]
    assert lint["select"], "the rule selection must be explicit, not ruff's default"
