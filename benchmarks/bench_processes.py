"""What ProcessPoolTaskRunner costs, next to a bare concurrent.futures.ProcessPoolExecutor.

Run from the repository root::

    python benchmarks/bench_processes.py            # N=1,000 and 10,000, 3 rounds, CPU-bound case
    python benchmarks/bench_processes.py --quick    # a smoke run
    python benchmarks/bench_processes.py --json benchmarks/results/processes.json

Measures, in one process run, interleaved and repeated (the figure is the median):

- per-task overhead of N no-op runs through a submit loop and through `.map`, on a flow
  with `ProcessPoolTaskRunner(W)`, against `ProcessPoolExecutor(W)` with the same start
  method: its submit loop, and `executor.map` with chunksize 100. Each timing covers
  the whole job, pool start to shutdown;
- a chain of `--chain` runs (default 1,000), each taking the previous run's future as
  its argument, against the bare executor's way of chaining: submit a link, wait for
  its result in the driver, submit the next with it;
- a CPU-bound case: 8 runs of about 0.5 s of pure Python on threads and on processes,
  and the speed-up processes give on this machine's cores.

Targets printed beside the figures: submit loop at most 1.5x the bare executor per
task; mapped runs within 2x of `executor.map` with a good chunksize.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import taskrunners
from _common import OURS, RAW, figure, machine, write_json
from taskrunners import flow, task
from taskrunners_processes import ProcessPoolTaskRunner, default_start_method
from taskrunners_threads import ThreadPoolTaskRunner

SUBMIT_TARGET = 1.5
MAP_TARGET = 2.0
CHUNKSIZE = 100


def identity(x: int) -> int:
    return x


def spin(loops: int) -> int:
    """Pure-Python work: `loops` additions."""
    count = 0
    for _ in range(loops):
        count += 1
    return count


def loops_for(seconds: float) -> int:
    """About how many `spin` loops take `seconds` here (a rough guide; the speed-up is
    computed against a serial run timed in the same process run)."""
    began = time.perf_counter()
    spin(1_000_000)
    return int(1_000_000 * seconds / (time.perf_counter() - began))


noop = task(identity)
burn = task(spin)


def cases(workers: int, method: str) -> dict[str, Callable[[int], float]]:
    runner = ProcessPoolTaskRunner(max_workers=workers, mp_context=method)

    @flow(task_runner=runner)
    def submit_loop(n: int) -> None:
        for future in [noop.submit(i) for i in range(n)]:
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

    def timed(job: Callable[[], object]) -> float:
        began = time.perf_counter()
        job()
        return time.perf_counter() - began

    def bare_submit(n: int) -> None:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as executor:
            for future in [executor.submit(identity, i) for i in range(n)]:
                future.result()

    def bare_map(n: int) -> None:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as executor:
            list(executor.map(identity, range(n), chunksize=CHUNKSIZE))

    def bare_chain(n: int) -> None:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as executor:
            value = 0
            for _ in range(n):
                value = executor.submit(identity, value).result()

    return {
        "ours submit": lambda n: timed(lambda: submit_loop(n)),
        "bare submit": lambda n: timed(lambda: bare_submit(n)),
        "ours map": lambda n: timed(lambda: mapped(n)),
        "bare map": lambda n: timed(lambda: bare_map(n)),
        "ours chain": lambda n: timed(lambda: chain(n)),
        "bare chain": lambda n: timed(lambda: bare_chain(n)),
    }


def cpu_bound(workers: int, runs: int, loops: int) -> dict[str, float]:
    """Seconds for `runs` spins: one after another here, on threads, on processes."""
    began = time.perf_counter()
    for _ in range(runs):
        spin(loops)
    timings = {"serial": time.perf_counter() - began}
    for label, runner in (
        ("threads", ThreadPoolTaskRunner(max_workers=workers)),
        ("processes", ProcessPoolTaskRunner(max_workers=workers)),
    ):

        @flow(task_runner=runner)
        def work() -> None:
            burn.map([loops] * runs).result()

        began = time.perf_counter()
        work()
        timings[label] = time.perf_counter() - began
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: N=200, 1 round, short CPU case")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--start-method", default=default_start_method())
    parser.add_argument("--chain", type=int, default=1000, help="links of the chain (default 1,000)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rounds, cpu_runs, cpu_seconds, links = args.rounds, 8, 0.5, args.chain
    if args.quick:
        sizes, rounds, cpu_runs, cpu_seconds, links = [200], 1, 4, 0.05, 50
    workers = args.workers
    print(
        f"bench_processes: Python {platform.python_version()}, {platform.system()}, {os.cpu_count()} CPUs; "
        f"workers={workers}, start method={args.start_method}, sizes={sizes}, rounds={rounds}"
    )
    jobs = cases(workers, args.start_method)
    for job in jobs.values():  # warm up: imports, the forkserver, first workers
        job(min(sizes))
    # Every size for submit and map; the chain at its own length.
    plan = [(name, n) for n in sizes for name in jobs if "chain" not in name]
    plan += [(name, links) for name in jobs if "chain" in name]
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in plan}
    for round_ in range(rounds):
        shift = round_ % len(plan)
        for name, n in plan[shift:] + plan[:shift]:
            samples[(name, n)].append(jobs[name](n))
    header = f"{'metric':<46} {'ours':>10} {'bare':>10} {'ours/bare':>10}  {'target':<12} met"
    print()
    print(header)
    print("-" * len(header))
    ok = True
    figures: list[dict[str, Any]] = []
    rows = [
        (style, n, target)
        for n in sizes
        for style, target in (("submit", SUBMIT_TARGET), ("map", MAP_TARGET))
    ]
    for style, n, target in [*rows, ("chain", links, None)]:
        ours_s, bare_s = samples[(f"ours {style}", n)], samples[(f"bare {style}", n)]
        ours = statistics.median(ours_s) / n * 1e6
        bare = statistics.median(bare_s) / n * 1e6
        ratio = ours / bare
        met = None if target is None else ratio <= target
        ok = ok and met is not False
        label = {"submit": "submit loop", "map": f"map (bare: chunksize {CHUNKSIZE})", "chain": "chain link"}[
            style
        ]
        bare_note = {
            "submit": "executor.submit in a loop",
            "map": f"executor.map, chunksize {CHUNKSIZE}",
            "chain": "each link's result awaited in the driver, then the next submitted",
        }[style]
        figures.append(
            figure("processes", style, OURS, ours, "us", n=n, samples=[s / n * 1e6 for s in ours_s])
        )
        figures.append(
            figure(
                "processes",
                style,
                RAW,
                bare,
                "us",
                n=n,
                samples=[s / n * 1e6 for s in bare_s],
                note=bare_note,
            )
        )
        target_text = "" if target is None else f"<= {target:g}x"
        mark = "" if met is None else ("yes" if met else "MISS")
        print(
            f"{f'per task, {label}, N={n:,} (us)':<46} {ours:>10.1f} {bare:>10.1f} {ratio:>9.2f}x"
            f"  {target_text:<12} {mark}".rstrip()
        )
    timings = cpu_bound(workers, cpu_runs, loops_for(cpu_seconds))
    print()
    print(f"CPU-bound: {cpu_runs} runs of ~{cpu_seconds} s of pure Python on {workers} workers")
    print(f"  {'serial':<10} {timings['serial']:6.2f} s   (the same runs one after another, timed here)")
    for label in ("threads", "processes"):
        print(
            f"  {label:<10} {timings[label]:6.2f} s   speed-up over serial {timings['serial'] / timings[label]:.2f}x"
        )
    print(f"  processes over threads: {timings['threads'] / timings['processes']:.2f}x")
    if args.json:
        report = {
            "benchmark": "processes",
            "meta": {
                **machine(),
                "taskrunners": taskrunners.__version__,
                "workers": workers,
                "start_method": args.start_method,
                "sizes": sizes,
                "chain": links,
                "rounds": rounds,
                "quick": args.quick,
            },
            "targets": {"submit_ratio_max": SUBMIT_TARGET, "map_ratio_max": MAP_TARGET},
            "figures": figures,
            "cpu_bound": {"runs": cpu_runs, "seconds_each": cpu_seconds, "workers": workers, **timings},
        }
        write_json(args.json, report)
    return 0 if ok or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
