"""benchmarks/report.py turns the benchmarks' figures into docs/benchmarks.md, hiding nothing.

The figures here are made up (no benchmark runs): the test is about what the page
says of them. The page that `hatch run bench:all` wrote is checked too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import report
from _common import OURS, PREFECT, RAW, figure

MACHINE = {
    "cpus": 2,
    "python": "3.11.7",
    "platform": "Linux",
    "processor": "x86_64",
    "memory_gib": 23.5,
    "when": "now",
}


def write(folder: Path, name: str, figures: list[dict[str, Any]], **extra: Any) -> None:
    meta = {**MACHINE, **extra.pop("meta", {})}
    (folder / f"bench_{name}.json").write_text(
        json.dumps({"benchmark": name, "meta": meta, "figures": figures, **extra})
    )


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    write(
        folder,
        "threads",
        [
            figure("threads", "submit", OURS, 30.0, "us", n=1000),
            figure("threads", "submit", RAW, 20.0, "us", n=1000, note="executor.submit in a loop"),
            figure("threads", "map", OURS, 90.0, "us", n=1000),
            figure("threads", "map", RAW, 30.0, "us", n=1000),
        ],
        meta={"taskrunners": "0.1.0"},
    )
    write(
        folder,
        "prefect",
        [
            figure("threads", "submit", PREFECT, 8000.0, "us", n=1000),
            figure(
                "threads", "map", PREFECT, None, "us", n=1000, skipped="not run: over the --budget-s of 240 s"
            ),
            figure("threads", "memory_per_task", PREFECT, 50.0, "KiB", n=1000),
        ],
        meta={"prefect": "3.9.1"},
    )
    write(
        folder,
        "footprint",
        [
            figure("threads", "memory_per_task", OURS, 1.5, "KiB", n=100_000),
            figure("threads", "memory_per_task", RAW, 1.0, "KiB", n=100_000, note="futures held"),
        ],
    )
    scaling = {"runs": 8, "seconds_per_run": 0.25, "workers": [1, 2]}
    cases = [
        {"runner": "processes", "workers": 2, "serial_s": 2.0, "whole_s": 1.5, "work_s": 1.1, "speedup": 1.8}
    ]
    write(folder, "scaling", [], meta=scaling, cases=cases)
    return folder


def make_page(results: Path, tmp_path: Path) -> str:
    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    assert (
        report.main([str(results), "--page", str(page), "--chart", str(tmp_path / "docs" / "img" / "b.png")])
        == 0
    )
    return page.read_text()


def row(page: str, starts: str) -> str:
    found = [line for line in page.splitlines() if line.startswith(starts)]
    assert len(found) >= 1, f"no row starting {starts!r}"
    return found[0]


def test_a_missed_target_is_marked_missed_and_a_met_one_met(results: Path, tmp_path: Path) -> None:
    page = make_page(results, tmp_path)
    submit = row(page, "| submit loop | 1,000 |")
    assert "1.50x" in submit and "<= 2x: met" in submit
    mapped = row(page, "| `.map` | 1,000 |")
    assert "3.00x" in mapped and "**missed**" in mapped


def test_prefect_is_set_beside_ours_and_a_skipped_figure_says_why(results: Path, tmp_path: Path) -> None:
    page = make_page(results, tmp_path)
    submit = row(page, "| submit loop | 1,000 |")
    assert "8,000 µs" in submit and "267x" in submit  # 8,000 / 30
    mapped = row(page, "| `.map` | 1,000 |")
    assert "not run<sup>" in mapped
    assert "over the --budget-s of 240 s" in page


def test_a_figure_at_another_n_names_its_n(results: Path, tmp_path: Path) -> None:
    page = make_page(results, tmp_path)
    memory = row(page, "| driver memory per completed task (KiB), N=100,000 |")
    assert "1.50 KiB" in memory and "50.00 KiB (N=1,000)" in memory


def test_a_machine_without_16_cores_says_so_and_shows_its_own_scaling(results: Path, tmp_path: Path) -> None:
    page = make_page(results, tmp_path)
    assert "This machine has 2 CPUs" in page
    assert "| Processes | 2 | 2.00 s | 1.50 s | 1.10 s | 1.80x |" in page


def test_the_page_has_no_example_for_the_docs_tests_to_run(results: Path, tmp_path: Path) -> None:
    page = make_page(results, tmp_path)
    assert "```python" not in page and "```py" not in page


def test_the_chart_is_drawn(results: Path, tmp_path: Path) -> None:
    pytest.importorskip(
        "matplotlib", reason="the chart needs matplotlib (the bench hatch environment has it)"
    )
    page = make_page(results, tmp_path)
    assert (tmp_path / "docs" / "img" / "b.png").stat().st_size > 10_000
    assert "](img/b.png)" in page


def test_the_published_page_comes_from_a_full_run() -> None:
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "A smoke run" not in page, "docs/benchmarks.md was written by a --quick run"
    assert (ROOT / "docs" / "img" / "benchmarks.png").is_file()
    for runner in ("Threads", "Processes", "Dask", "Ray"):
        assert f"### {runner}" in page
    assert "| submit loop | 10,000 |" in page and "| `.map` | 1,000 |" in page
