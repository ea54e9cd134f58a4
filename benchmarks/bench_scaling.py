"""Speed-up of CPU-bound runs with more cores: processes, Dask and Ray.

Run from the repository root::

    python benchmarks/bench_scaling.py                    # workers 1, 2, 4, ... up to the CPU count
    python benchmarks/bench_scaling.py --workers 1,2 --quick
    python benchmarks/bench_scaling.py --json benchmarks/results/bench_scaling.json

Each case maps `runs` pure-Python runs of about `--seconds` each over a runner with W
workers (W processes for the process runner, W single-threaded worker processes for a
Dask LocalCluster, `num_cpus=W` for a local Ray). It reports the whole flow ("whole",
start-up of the pool or cluster included) and the mapped work alone ("work", timed
inside the flow after a first map has started every worker). The speed-up is the work
against the same runs done one after another in this process, timed again right before
each case (a shared machine's load drifts; one serial figure for the whole run would
carry that drift into every ratio). Runners that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

from _common import machine, write_json
from taskrunners import TaskRunner, flow, task


def spin(loops: int) -> int:
    """Pure-Python work: `loops` additions."""
    count = 0
    for _ in range(loops):
        count += 1
    return count


burn = task(spin)


def loops_for(seconds: float) -> int:
    began = time.perf_counter()
    spin(2_000_000)
    return int(2_000_000 * seconds / (time.perf_counter() - began))


def runners() -> dict[str, Callable[[int], TaskRunner]]:
    """The runners installed here, each as a factory taking the worker count."""
    found: dict[str, Callable[[int], TaskRunner]] = {}
    try:
        from taskrunners_processes import ProcessPoolTaskRunner

        found["processes"] = lambda w: ProcessPoolTaskRunner(max_workers=w)
    except ImportError:
        pass
    try:
        from taskrunners_dask import DaskTaskRunner

        found["dask"] = lambda w: DaskTaskRunner(
            cluster_kwargs={
                "n_workers": w,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    except ImportError:
        pass
    try:
        from taskrunners_ray import RayTaskRunner

        found["ray"] = lambda w: RayTaskRunner(init_kwargs={"num_cpus": w})
    except ImportError:
        pass
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cpus = os.cpu_count() or 1
    default_workers = ",".join(str(w) for w in (1, 2, 4, 8, 16, 32, 64) if w <= cpus)
    parser.add_argument("--workers", default=default_workers, help="worker counts, comma-separated")
    parser.add_argument(
        "--runs", type=int, default=0, help="runs per case (default: 2 x the most workers, at least 8)"
    )
    parser.add_argument("--seconds", type=float, default=0.25, help="work per run (default 0.25 s)")
    parser.add_argument("--only", default="", help="runner names to measure, comma-separated")
    parser.add_argument("--quick", action="store_true", help="a smoke run: short runs")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    runs = args.runs or max(8, 2 * max(counts))
    seconds = 0.02 if args.quick else args.seconds
    loops = loops_for(seconds)
    available = runners()
    chosen = [n for n in available if not args.only or n in args.only.split(",")]
    print(
        f"bench_scaling: Python {platform.python_version()}, {platform.system()}, {cpus} CPUs; "
        f"{runs} runs of ~{seconds} s; runners: {', '.join(chosen) or 'none'}"
    )
    spin(loops)  # warm up

    def serial_seconds() -> float:
        began = time.perf_counter()
        for _ in range(runs):
            spin(loops)
        return time.perf_counter() - began

    print(
        f"{'runner':<10} {'workers':>7} {'serial':>8} {'whole':>8} {'work':>8} {'speed-up':>9} {'per worker':>11}"
    )
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    for name in chosen:
        for workers in counts:
            serial = serial_seconds()  # the same runs one after another, here, just before

            @flow(task_runner=available[name](workers))
            def work() -> float:
                # warm: every worker has started (the flow is called in this iteration)
                burn.map([loops] * max(workers, 2)).result()  # noqa: B023
                began = time.perf_counter()
                burn.map([loops] * runs).result()
                return time.perf_counter() - began

            start = time.perf_counter()
            inside = work()
            whole = time.perf_counter() - start
            results[(name, workers)] = (serial, whole, inside)
            print(
                f"{name:<10} {workers:>7} {serial:>8.2f} {whole:>8.2f} {inside:>8.2f} {serial / inside:>8.2f}x "
                f"{serial / inside / workers:>10.2f}"
            )
        print()
    if args.json:
        cases = [
            {
                "runner": name,
                "workers": w,
                "serial_s": serial,
                "whole_s": whole,
                "work_s": inside,
                "speedup": serial / inside,
            }
            for (name, w), (serial, whole, inside) in results.items()
        ]
        meta = {**machine(), "runs": runs, "seconds_per_run": seconds, "workers": counts, "quick": args.quick}
        write_json(args.json, {"benchmark": "scaling", "meta": meta, "cases": cases})
    return 0


if __name__ == "__main__":
    sys.exit(main())
