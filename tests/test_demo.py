"""The README's first command, `python examples/demo.py`, runs and shows overlapping task runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(
    r"^(?P<run>(?P<task>\w+)-\d+)\s+(?P<thread>\S+)\s+(?P<start>\d+\.\d{3})\s+(?P<end>\d+\.\d{3})$"
)
SUMMARY = re.compile(
    r"^summary: (?P<runs>\d+) task runs on \d+ threads; .* at most (?P<peak>\d+) running at once$"
)


def overlap_peak(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (touching ends do not overlap)."""
    peak = 0
    for start, _ in intervals:
        peak = max(peak, sum(1 for s, e in intervals if s <= start < e))
    return peak


@pytest.fixture(scope="module")
def demo_output() -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


@pytest.fixture(scope="module")
def rows(demo_output: str) -> list[dict[str, str]]:
    return [m.groupdict() for line in demo_output.splitlines() if (m := ROW.match(line))]


def test_demo_prints_a_summary_line(demo_output: str, rows: list[dict[str, str]]) -> None:
    summaries = [m for line in demo_output.splitlines() if (m := SUMMARY.match(line))]
    assert len(summaries) == 1, demo_output
    assert int(summaries[0]["runs"]) == len(rows) == 17


def test_demo_task_runs_overlap(demo_output: str, rows: list[dict[str, str]]) -> None:
    intervals = [(float(r["start"]), float(r["end"])) for r in rows]
    peak = overlap_peak(intervals)
    printed = int(next(m for line in demo_output.splitlines() if (m := SUMMARY.match(line)))["peak"])
    assert peak > 1
    assert printed == peak  # the demo's own count agrees with the printed times
    fetch_threads = {r["thread"] for r in rows if r["task"] == "fetch"}
    assert len(fetch_threads) > 1


def test_demo_dependencies_order_the_runs(rows: list[dict[str, str]]) -> None:
    by_task: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    fetches, measures, (total,) = by_task["fetch"], by_task["measure"], by_task["total"]
    assert len(fetches) == len(measures) == 8
    for fetched, measured in zip(fetches, measures):  # the map pairs page i with fetch i
        assert float(measured["start"]) >= float(fetched["end"])
    assert float(total["start"]) >= max(float(m["end"]) for m in measures)
