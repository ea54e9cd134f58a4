"""One version for every package: each pyproject reads it from `taskrunners.__version__`,
and each member depends on the others by a range that the version satisfies."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading TOML on Python 3.10 needs tomli")

import taskrunners

ROOT = Path(__file__).resolve().parents[1]
CORE_INIT = ROOT / "packages" / "core" / "src" / "taskrunners" / "__init__.py"
PROJECTS = [ROOT / "pyproject.toml", *sorted((ROOT / "packages").glob("*/pyproject.toml"))]


@pytest.mark.parametrize("pyproject", PROJECTS, ids=lambda p: p.parent.name or "umbrella")
def test_the_version_comes_from_the_core(pyproject: Path) -> None:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    assert "version" not in data["project"], "write no version here: it is taskrunners.__version__"
    assert "version" in data["project"]["dynamic"]
    assert (pyproject.parent / data["tool"]["hatch"]["version"]["path"]).resolve() == CORE_INIT


@pytest.mark.parametrize("pyproject", PROJECTS, ids=lambda p: p.parent.name or "umbrella")
def test_members_depend_on_each_other_by_a_range_holding_the_version(pyproject: Path) -> None:
    major, minor = (int(part) for part in taskrunners.__version__.split(".")[:2])
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    requirements = list(data["project"].get("dependencies", []))
    for extra in data["project"].get("optional-dependencies", {}).values():
        requirements += extra
    for requirement in requirements:
        match = re.fullmatch(r"taskrunners-\w+(?:\[[\w,]+\])?(.*)", requirement)  # extras allowed
        if match:
            assert match.group(1) == f">={major}.{minor},<{major}.{minor + 1}", requirement
