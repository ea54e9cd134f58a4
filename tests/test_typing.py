"""The public types hold for users' code: `mypy --strict` passes on the README's example
and on `typing_samples/`, whose `assert_type` lines state what each call gives."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "typing_samples"

pytest.importorskip("mypy", reason="mypy is not installed (it is in the umbrella's `test` extra)")
pytest.importorskip("typing_extensions", reason="the samples import assert_type from typing_extensions")


def _mypy_strict(*paths: Path) -> subprocess.CompletedProcess[str]:
    # --no-incremental: no cache shared with other runs; the packages' own config is
    # not applied (--config-file /dev/null): users' code gets plain --strict.
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            "/dev/null",
            "--python-version",
            f"{sys.version_info.major}.{sys.version_info.minor}",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=600,
    )


def test_readme_example_passes_mypy_strict(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", readme, re.S)
    assert match is not None, "README.md has no ```python block"
    example = tmp_path / "readme_example.py"
    example.write_text(match.group(1), encoding="utf-8")
    result = _mypy_strict(example)
    assert result.returncode == 0, result.stdout + result.stderr


def test_typing_samples_pass_mypy_strict() -> None:
    result = _mypy_strict(*sorted(SAMPLES.glob("*.py")))
    assert result.returncode == 0, result.stdout + result.stderr
