"""What RayTaskRunner costs, next to the same work through bare `f.remote` and `ray.get`.

Run from the repository root (see benchmarks/README.md)::

    python benchmarks/bench_ray.py                  # full run: N=1,000 and 10,000, 3 rounds
    python benchmarks/bench_ray.py --quick          # a smoke run: N=50, 1 round
    python benchmarks/bench_ray.py --json benchmarks/results/ray.json

On one local Ray with 2 CPUs, started once (by a `RayTaskRunner` held open, so on
127.0.0.1 with the runner's settings), in this process:

- **submit loop**: a flow on `RayTaskRunner()` submits N no-op runs and reads every
  result; *bare* calls `f.remote()` N times and `ray.get` on the list.
- **map**: `task.map(range(N)).result()` against the same bare job.
- **chain**: `--chain` runs (default 1,000), each taking the previous one's future as its argument, and the
  last result read; *bare* chains `f.remote(previous_ref)` the same way and gets the last.
- **submit loop, one argument**: the submit loop with `identity.submit(i)`, against
  `f.remote(i)`. Every run of the runner carries its call to the worker as one argument
  and its final state back as its result; a bare `f.remote()` with neither pays Ray
  less, so this row compares runs that move the same number of objects.

The flows' runners join the running Ray (they neither start nor stop it), so the
figures are the cost per run, not Ray's start-up. Both sides run the same module-level
functions (`taskrunners.testing.tasks`; bare Ray wraps the tasks' plain functions).
Jobs run interleaved, in a rotated order each round, after a warm-up; the figure is the
median over rounds, divided by N. Target: at most 1.2x bare. `--check` exits with
status 1 on a miss.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import machine, overhead_figures, write_json

RATIO_TARGET = 1.2
HEADER = f"{'metric':<58} {'ours':>10} {'bare':>10} {'ours/bare':>10}  {'target':<14} met"

Case = Callable[[int], float]


def make_cases() -> dict[str, Case]:
    import ray
    from taskrunners import flow
    from taskrunners.testing import tasks as t
    from taskrunners_ray import RayTaskRunner

    runner = RayTaskRunner()
    noop, identity, add = t.noop, t.identity, t.add
    bare_noop = ray.remote(max_retries=0)(t.noop.fn)
    bare_identity = ray.remote(max_retries=0)(t.identity.fn)
    bare_add = ray.remote(max_retries=0)(t.add.fn)

    @flow(task_runner=runner)
    def submit_loop(n: int) -> None:
        futures = [noop.submit() for _ in range(n)]
        for future in futures:
            future.result()

    @flow(task_runner=runner)
    def submit_loop_argument(n: int) -> None:
        futures = [identity.submit(i) for i in range(n)]
        for future in futures:
            future.result()

    @flow(task_runner=runner)
    def mapped(n: int) -> None:
        identity.map(range(n)).result()

    @flow(task_runner=runner)
    def chain(n: int) -> None:
        future = add.submit(0, 1)
        for _ in range(n - 1):
            future = add.submit(future, 1)
        assert future.result() == n

    def bare_submit(n: int) -> None:
        ray.get([bare_noop.remote() for _ in range(n)])

    def bare_map(n: int) -> None:
        ray.get([bare_identity.remote(i) for i in range(n)])

    def bare_submit_argument(n: int) -> None:
        ray.get([bare_identity.remote(i) for i in range(n)])

    def bare_chain(n: int) -> None:
        ref = bare_add.remote(0, 1)
        for _ in range(n - 1):
            ref = bare_add.remote(ref, 1)
        assert ray.get(ref) == n

    def timed(fn: Callable[[int], Any]) -> Case:
        def case(n: int) -> float:
            began = time.perf_counter()
            fn(n)
            return time.perf_counter() - began

        return case

    return {
        "ours submit loop": timed(submit_loop),
        "bare submit loop": timed(bare_submit),
        "ours map": timed(mapped),
        "bare map": timed(bare_map),
        "ours chain": timed(chain),
        "bare chain": timed(bare_chain),
        "ours submit loop, one argument": timed(submit_loop_argument),
        "bare submit loop, one argument": timed(bare_submit_argument),
    }


STYLES = ("submit loop", "map", "chain", "submit loop, one argument")


def measure(sizes: list[int], links: int, rounds: int) -> list[dict[str, Any]]:
    cases = make_cases()
    for name in cases:  # warm up: worker processes, function export, code paths
        cases[name](min(*sizes, 100))
    plan = [(style, n) for n in sizes for style in STYLES if style != "chain"] + [("chain", links)]
    jobs = [(f"{who} {style}", n) for style, n in plan for who in ("ours", "bare")]
    samples: dict[tuple[str, int], list[float]] = {job: [] for job in jobs}
    for round_ in range(rounds):
        shift = round_ % len(jobs)
        for name, n in jobs[shift:] + jobs[:shift]:
            gc.collect()
            samples[(name, n)].append(cases[name](n))
    rows = []
    for style, n in plan:
        ours = statistics.median(samples[(f"ours {style}", n)]) / n * 1e6
        bare = statistics.median(samples[(f"bare {style}", n)]) / n * 1e6
        rows.append(
            {
                "style": style,
                "n": n,
                "ours_us_per_task": ours,
                "bare_us_per_task": bare,
                "ratio": ours / bare,
                "met": ours / bare <= RATIO_TARGET,
                "ours_seconds": samples[(f"ours {style}", n)],
                "bare_seconds": samples[(f"bare {style}", n)],
            }
        )
    return rows


def figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as figures for benchmarks/report.py (see _common.figure).

    The report's "submit" is the submit loop with one argument: like every other
    runner's, each run takes one value and returns one.
    """
    metrics = {"submit loop, one argument": "submit", "map": "map", "chain": "chain"}
    bare_notes = {
        "submit": "f.remote(i) in a loop, ray.get",
        "map": "f.remote(i) in a loop, ray.get",
        "chain": "f.remote(previous_ref)",
    }
    return overhead_figures("ray", rows, metrics, bare_notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: N=50, 1 round")
    parser.add_argument("--sizes", default="1000,10000", help="runs per submit and map job, comma-separated")
    parser.add_argument("--chain", type=int, default=1000, help="links of the chain (default 1,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every job (default 3)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (default 2)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    sizes, links, rounds = ([50], 50, 1) if args.quick else (sizes, args.chain, args.rounds)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from taskrunners_ray import RayTaskRunner

    began = time.perf_counter()
    # One Ray for the whole run, started the runner's way (127.0.0.1, no dashboard,
    # small object store); the flows' runners join it.
    with RayTaskRunner(init_kwargs={"num_cpus": args.cpus, "log_to_driver": False}):
        started = time.perf_counter() - began
        rows = measure(sizes, links, rounds)

    print(
        f"RayTaskRunner vs f.remote + ray.get: one local Ray of {args.cpus} CPUs, "
        f"{rounds} round(s), median per task; Ray start {started:.2f} s"
    )
    print(f"Python {platform.python_version()}, ray {ray.__version__}, {os.cpu_count()} CPUs")
    print(HEADER)
    for row in rows:
        metric = f"per task, {row['style']}, N={row['n']:,} (us)"
        print(
            f"{metric:<58} {row['ours_us_per_task']:>10.1f} {row['bare_us_per_task']:>10.1f} "
            f"{row['ratio']:>9.2f}x  {'<= ' + format(RATIO_TARGET, 'g') + 'x bare':<14} "
            f"{'yes' if row['met'] else 'MISS'}"
        )
    print(
        "ours = a flow on RayTaskRunner() joined to the running Ray; bare = ray.remote "
        "functions, f.remote + ray.get.\nPer-task figures: median of the whole job / N."
    )
    if args.json:
        report = {
            "benchmark": "ray",
            "meta": {
                **machine(),
                "ray": ray.__version__,
                "ray_cpus": args.cpus,
                "sizes": sizes,
                "chain": links,
                "rounds": rounds,
                "quick": args.quick,
                "ray_start_seconds": started,
            },
            "targets": {"ratio_max": RATIO_TARGET},
            "per_task_overhead": rows,
            "all_targets_met": all(row["met"] for row in rows),
            "figures": figures(rows),
        }
        write_json(args.json, report)
    if args.check and not all(row["met"] for row in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
