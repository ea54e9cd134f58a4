"""What ThreadPoolTaskRunner costs, next to a bare concurrent.futures.ThreadPoolExecutor.

Run from the repository root (see benchmarks/README.md)::

    python benchmarks/bench_threads.py                 # full run: N=1,000 and 10,000, 5 rounds
    python benchmarks/bench_threads.py --quick         # a smoke run: N=200, 1 round
    python benchmarks/bench_threads.py --json benchmarks/results/threads.json

Measures, in one process:

- per-task overhead of submitting N no-op tasks and resolving every result, through a
  submit loop and through `.map`, on a flow with `ThreadPoolTaskRunner(max_workers=W)`,
  against `ThreadPoolExecutor(W)` (submit loop, and `executor.map`). Each timing covers
  the whole job: starting the pool, submitting, resolving, shutting the pool down. The
  four cases run interleaved, in a rotated order each round; the figure is the median;
- a chain of `--chain` runs (default 1,000), each taking the previous run's future as
  its argument, against the bare executor's way of chaining (submit a link, wait for
  its result in the driver, submit the next with it);
- the import time of `taskrunners` (fresh interpreters: `import taskrunners` minus an
  empty program, and `-X importtime`'s cumulative figure);
- the cost of calling an empty flow;
- the peak thread count while N tasks run (each task reads `threading.active_count()`).

Targets, printed next to the figures: at most 2x the bare executor's per-task time;
`import taskrunners` under 100 ms. `--check` makes a missed target exit with status 1.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import taskrunners
from _common import machine, overhead_figures
from taskrunners import flow, task
from taskrunners_threads import ThreadPoolTaskRunner, default_max_workers

HEADER = f"{'metric':<52} {'ours':>10} {'bare':>10} {'ours/bare':>10}  {'target':<14} met"
RATIO_TARGET = 2.0
IMPORT_TARGET_MS = 100.0


# -- the work --------------------------------------------------------------------------


def identity(x: int) -> int:
    return x


noop = task(identity)

Case = Callable[[int], float]


def make_cases(workers: int) -> dict[str, Case]:
    """The four timed jobs; each takes N and returns the seconds the whole job took."""
    runner = ThreadPoolTaskRunner(max_workers=workers)

    @flow(task_runner=runner)
    def submit_loop(n: int) -> None:
        futures = [noop.submit(i) for i in range(n)]
        for future in futures:
            future.result()

    @flow(task_runner=runner)
    def mapped(n: int) -> None:
        noop.map(range(n)).result()

    @flow(task_runner=runner)
    def chain(n: int) -> None:
        future = noop.submit(0)
        for _ in range(n - 1):
            future = noop.submit(future)
        future.result()

    def ours_submit(n: int) -> float:
        began = time.perf_counter()
        submit_loop(n)
        return time.perf_counter() - began

    def ours_map(n: int) -> float:
        began = time.perf_counter()
        mapped(n)
        return time.perf_counter() - began

    def bare_submit(n: int) -> float:
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as executor:
            futures = [executor.submit(identity, i) for i in range(n)]
            for future in futures:
                future.result()
        return time.perf_counter() - began

    def bare_map(n: int) -> float:
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as executor:
            list(executor.map(identity, range(n)))
        return time.perf_counter() - began

    def ours_chain(n: int) -> float:
        began = time.perf_counter()
        chain(n)
        return time.perf_counter() - began

    def bare_chain(n: int) -> float:
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as executor:
            value = 0
            for _ in range(n):
                value = executor.submit(identity, value).result()
        return time.perf_counter() - began

    return {
        "ours submit": ours_submit,
        "ours map": ours_map,
        "bare submit": bare_submit,
        "bare map": bare_map,
        "ours chain": ours_chain,
        "bare chain": bare_chain,
    }


def per_task_overhead(workers: int, sizes: list[int], links: int, rounds: int) -> list[dict[str, Any]]:
    cases = make_cases(workers)
    for name in cases:  # warm up: imports, first thread starts, code paths
        cases[name](min(sizes))
    # Every size for submit and map; the chain at its own length.
    plan = [(name, n) for n in sizes for name in cases if "chain" not in name]
    plan += [(name, links) for name in cases if "chain" in name]
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in plan}
    for round_ in range(rounds):
        shift = round_ % len(plan)
        for name, n in plan[shift:] + plan[:shift]:
            gc.collect()
            samples[(name, n)].append(cases[name](n))
    rows = []
    for style, n in [*((style, n) for n in sizes for style in ("submit", "map")), ("chain", links)]:
        ours = samples[(f"ours {style}", n)]
        bare = samples[(f"bare {style}", n)]
        ours_us = statistics.median(ours) / n * 1e6
        bare_us = statistics.median(bare) / n * 1e6
        rows.append(
            {
                "style": {"submit": "submit loop", "map": "map", "chain": "chain link"}[style],
                "n": n,
                "ours_us_per_task": ours_us,
                "bare_us_per_task": bare_us,
                "ratio": ours_us / bare_us,
                "met": None if style == "chain" else ours_us / bare_us <= RATIO_TARGET,
                "ours_seconds": ours,
                "bare_seconds": bare,
            }
        )
    return rows


# -- import time -------------------------------------------------------------------------


# Import time is measured as users see it: with bytecode cached. Some machines set
# PYTHONDONTWRITEBYTECODE, which would add compiling every module to every import.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _wall(args: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, env=_ENV)
    return time.perf_counter() - began


def _importtime_us(module: str) -> int:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        check=True,
        capture_output=True,
        text=True,
        env=_ENV,
    )
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == module:
            return int(line.split("|")[1])
    raise RuntimeError(f"-X importtime printed no line for {module!r}:\n{done.stderr}")


def import_time(module: str, runs: int) -> dict[str, Any]:
    """Median over fresh interpreters, interleaved with empty ones."""
    extra_ms, cumulative_ms = [], []
    _wall(["-c", f"import {module}"])  # writes the bytecode caches
    for _ in range(runs):
        empty = _wall(["-c", "pass"])
        full = _wall(["-c", f"import {module}"])
        extra_ms.append((full - empty) * 1e3)
        cumulative_ms.append(_importtime_us(module) / 1e3)
    return {
        "module": module,
        "wall_minus_empty_ms": statistics.median(extra_ms),
        "importtime_cumulative_ms": statistics.median(cumulative_ms),
        "wall_samples_ms": extra_ms,
        "importtime_samples_ms": cumulative_ms,
    }


# -- an empty flow ------------------------------------------------------------------------


def empty_flow_cost(workers: int, calls: int, rounds: int) -> dict[str, float]:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=workers))
    def empty_with_instance() -> None:
        return None

    @flow  # the default runner, found by name ("threads") at each call
    def empty_by_name() -> None:
        return None

    result = {}
    for label, fn in (("runner instance", empty_with_instance), ("default runner, by name", empty_by_name)):
        fn()
        per_call = []
        for _ in range(rounds):
            began = time.perf_counter()
            for _ in range(calls):
                fn()
            per_call.append((time.perf_counter() - began) / calls * 1e6)
        result[label] = statistics.median(per_call)
    return result


# -- peak threads -------------------------------------------------------------------------


def peak_threads(workers: int, n: int) -> dict[str, int]:
    """The most threads alive (beyond those before the run) seen by any of N tasks."""
    seen: list[int] = []

    def probe(_: int) -> None:
        seen.append(threading.active_count())

    probe_task = task(probe)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=workers))
    def ours(n: int) -> None:
        futures = [probe_task.submit(i) for i in range(n)]
        for future in futures:
            future.result()

    baseline = threading.active_count()
    ours(n)
    ours_peak = max(seen) - baseline
    seen.clear()
    baseline = threading.active_count()
    with ThreadPoolExecutor(max_workers=workers) as executor:
        for future in [executor.submit(probe, i) for i in range(n)]:
            future.result()
    bare_peak = max(seen) - baseline
    return {"n": n, "ours": ours_peak, "bare": bare_peak}


# -- report -------------------------------------------------------------------------------


def figures(overhead: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-task rows as figures for benchmarks/report.py (see _common.figure)."""
    metrics = {"submit loop": "submit", "map": "map", "chain link": "chain"}
    bare_notes = {
        "submit": "executor.submit in a loop",
        "map": "executor.map",
        "chain": "each link's result awaited in the driver, then the next submitted",
    }
    return overhead_figures("threads", overhead, metrics, bare_notes)


def _row(
    metric: str, ours: str, bare: str = "", ratio: str = "", target: str = "", met: bool | None = None
) -> str:
    mark = "" if met is None else ("yes" if met else "MISS")
    return f"{metric:<52} {ours:>10} {bare:>10} {ratio:>10}  {target:<14} {mark}".rstrip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: N=200, 1 round, few subprocesses")
    parser.add_argument("--sizes", default="1000,10000", help="task counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the interleaved timings (default 5)")
    parser.add_argument(
        "--workers", type=int, default=default_max_workers(), help="pool size (default: CPUs + 4, at most 32)"
    )
    parser.add_argument("--import-runs", type=int, default=9, help="fresh interpreters per import figure")
    parser.add_argument("--chain", type=int, default=1000, help="links of the chain (default 1,000)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",")]
    rounds, import_runs, flow_calls, links = args.rounds, args.import_runs, 2000, args.chain
    if args.quick:
        sizes, rounds, import_runs, flow_calls, links = [200], 1, 1, 200, 50
    workers = args.workers

    print(
        f"bench_threads: taskrunners {taskrunners.__version__}, Python {platform.python_version()}, "
        f"{platform.system()}, {os.cpu_count()} CPUs; workers={workers}, sizes={sizes}, rounds={rounds}"
    )
    overhead = per_task_overhead(workers, sizes, links, rounds)
    imports = [import_time("taskrunners", import_runs), import_time("taskrunners_threads", import_runs)]
    flow_cost = empty_flow_cost(workers, flow_calls, max(rounds, 3))
    peaks = peak_threads(workers, max(sizes))

    print()
    print(HEADER)
    print("-" * len(HEADER))
    for row in overhead:
        print(
            _row(
                f"per task, {row['style']}, N={row['n']:,} (us)",
                f"{row['ours_us_per_task']:.1f}",
                f"{row['bare_us_per_task']:.1f}",
                f"{row['ratio']:.2f}x",
                "" if row["met"] is None else f"<= {RATIO_TARGET:g}x bare",
                row["met"],
            )
        )
    for measured in imports:
        module = measured["module"]
        met = measured["wall_minus_empty_ms"] < IMPORT_TARGET_MS if module == "taskrunners" else None
        target = f"< {IMPORT_TARGET_MS:g} ms" if module == "taskrunners" else ""
        wall, cumulative = measured["wall_minus_empty_ms"], measured["importtime_cumulative_ms"]
        print(_row(f"import {module}, wall - empty python (ms)", f"{wall:.1f}", "", "", target, met))
        print(_row(f"import {module}, -X importtime cumul. (ms)", f"{cumulative:.1f}"))
    for label, us in flow_cost.items():
        print(_row(f"empty flow call, {label} (us)", f"{us:.1f}"))
    print(_row(f"peak extra threads, submit loop, N={peaks['n']:,}", str(peaks["ours"]), str(peaks["bare"])))
    print()
    print(
        f"ours = a flow on ThreadPoolTaskRunner(max_workers={workers}); "
        f"bare = ThreadPoolExecutor({workers}).\nPer-task figures: median of {rounds} round(s) "
        "of the whole job (pool start to shutdown) / N."
    )

    missed = [r for r in overhead if r["met"] is False]
    import_met = imports[0]["wall_minus_empty_ms"] < IMPORT_TARGET_MS
    if args.json:
        report = {
            "meta": {
                "taskrunners": taskrunners.__version__,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "workers": workers,
                "sizes": sizes,
                "rounds": rounds,
                "quick": args.quick,
                "chain": links,
                **machine(),
            },
            "benchmark": "threads",
            "targets": {"ratio_max": RATIO_TARGET, "import_ms_max": IMPORT_TARGET_MS},
            "per_task_overhead": overhead,
            "import_time": imports,
            "empty_flow_us": flow_cost,
            "peak_threads": peaks,
            "all_targets_met": not missed and import_met,
            "figures": figures(overhead),
        }
        directory = os.path.dirname(args.json)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
        print(f"wrote {args.json}")
    if args.check and (missed or not import_met):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
