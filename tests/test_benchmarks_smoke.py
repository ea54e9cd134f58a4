"""The benchmarks still run: a tiny run of each, so they do not rot between full runs.

Not a performance test: the figures of a run this small are noise, and nothing here
compares them with a target.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
HEADER = "metric", "ours", "bare", "ours/bare", "target", "met"


def test_bench_threads_quick_run_prints_its_table(tmp_path: Path) -> None:
    report = tmp_path / "threads.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_threads.py"), "--quick", "--json", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split() == list(HEADER) for line in lines), done.stdout
    metrics = ("per task, submit loop, N=200", "per task, map, N=200", "import taskrunners,")
    for metric in (*metrics, "empty flow call", "peak extra threads"):
        assert any(line.startswith(metric) for line in lines), metric
    figures = json.loads(report.read_text())
    assert figures["meta"]["sizes"] == [200]
    assert {row["style"] for row in figures["per_task_overhead"]} == {"submit loop", "map", "chain link"}
    assert {(f["metric"], f["who"]) for f in figures["figures"]} == {
        (metric, who) for metric in ("submit", "map", "chain") for who in ("taskrunners", "raw")
    }
    assert figures["peak_threads"]["ours"] >= 1


def test_run_all_finds_every_benchmark() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_all.py"), "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    ours = sorted(p.name for p in BENCHMARKS.glob("bench_*.py") if p.name != "bench_prefect.py")
    assert done.stdout.split() == [*ours, "bench_prefect.py"]  # Prefect's last, in its own environment


def test_bench_processes_quick_run_prints_its_table(tmp_path: Path) -> None:
    report = tmp_path / "processes.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_processes.py"), "--quick", "--json", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "per task, submit loop, N=200" in done.stdout
    assert "processes over threads" in done.stdout
    figures = json.loads(report.read_text())["figures"]
    assert {(f["metric"], f["who"], f["n"]) for f in figures} == {
        (metric, who, n)
        for metric, n in (("submit", 200), ("map", 200), ("chain", 50))
        for who in ("taskrunners", "raw")
    }


def test_bench_scaling_quick_run_prints_its_table() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_scaling.py"),
            "--quick",
            "--workers",
            "1,2",
            "--only",
            "processes",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("processes ")]
    assert [row[1] for row in rows] == ["1", "2"]


def test_bench_ray_quick_run_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_ray.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert any(line.split()[:3] == ["metric", "ours", "bare"] for line in done.stdout.splitlines()), (
        done.stdout
    )
    assert sum(1 for line in done.stdout.splitlines() if line.startswith("per task,")) >= 3


def test_bench_dask_quick_run_prints_its_table(tmp_path: Path) -> None:
    report = tmp_path / "dask.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_dask.py"), "--quick", "--json", str(report)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split() == ["metric", "ours", "bare", "ours/bare", "target", "met"] for line in lines), (
        done.stdout
    )
    for metric in (
        "per task, submit loop, N=50",
        "per task, map, N=50",
        "per task, chain (future as argument), N=50",
    ):
        assert any(line.startswith(metric) for line in lines), metric
    figures = json.loads(report.read_text())
    assert figures["meta"]["sizes"] == [50] and figures["meta"]["workers"] == 2
    assert {(f["metric"], f["who"]) for f in figures["figures"]} == {
        (metric, who) for metric in ("submit", "map", "chain") for who in ("taskrunners", "raw")
    }
    assert [row["style"] for row in figures["per_task_overhead"]] == [
        "submit loop",
        "map",
        "chain (future as argument)",
    ]


def test_bench_footprint_quick_run_measures_both_sides(tmp_path: Path) -> None:
    report = tmp_path / "footprint.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_footprint.py"),
            "--quick",
            "--runners",
            "threads",
            "--json",
            str(report),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(report.read_text())["figures"]
    metrics = ("import", "empty_flow_process", "memory_per_task", "peak_threads")
    assert sorted((f["metric"], f["who"]) for f in figures) == sorted(
        (metric, who) for metric in metrics for who in ("taskrunners", "raw")
    )
    assert all(f["value"] is not None and f["value"] >= 0 for f in figures)
    assert {f["n"] for f in figures if f["metric"] == "memory_per_task"} == {200}
