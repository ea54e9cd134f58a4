"""What ProcessPoolTaskRunner costs, next to a bare concurrent.futures.ProcessPoolExecutor.

Run from the repository root::

    python benchmarks/bench_processes.py            # N=1,000 and 10,000, 3 rounds, CPU-bound case
    python benchmarks/bench_processes.py --quick    # a smoke run

Measures, in one process run, interleaved and repeated (the figure is the median):

- per-task overhead of N no-op runs through a submit loop and through `.map`, on a flow
  with `ProcessPoolTaskRunner(W)`, against `ProcessPoolExecutor(W)` with the same start
  method: its submit loop, and `executor.map` with chunksize 100. Each timing covers
  the whole job, pool start to shutdown;
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
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

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

    return {
        "ours submit": lambda n: timed(lambda: submit_loop(n)),
        "bare submit": lambda n: timed(lambda: bare_submit(n)),
        "ours map": lambda n: timed(lambda: mapped(n)),
        "bare map": lambda n: timed(lambda: bare_map(n)),
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
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rounds, cpu_runs, cpu_seconds = args.rounds, 8, 0.5
    if args.quick:
        sizes, rounds, cpu_runs, cpu_seconds = [200], 1, 4, 0.05
    workers = args.workers
    print(
        f"bench_processes: Python {platform.python_version()}, {platform.system()}, {os.cpu_count()} CPUs; "
        f"workers={workers}, start method={args.start_method}, sizes={sizes}, rounds={rounds}"
    )
    jobs = cases(workers, args.start_method)
    for job in jobs.values():  # warm up: imports, the forkserver, first workers
        job(min(sizes))
    samples: dict[tuple[str, int], list[float]] = {(name, n): [] for name in jobs for n in sizes}
    names = list(jobs)
    for round_ in range(rounds):
        for n in sizes:
            for name in names[round_ % 4 :] + names[: round_ % 4]:
                samples[(name, n)].append(jobs[name](n))
    header = f"{'metric':<46} {'ours':>10} {'bare':>10} {'ours/bare':>10}  {'target':<12} met"
    print()
    print(header)
    print("-" * len(header))
    ok = True
    for n in sizes:
        for style, target in (("submit", SUBMIT_TARGET), ("map", MAP_TARGET)):
            ours = statistics.median(samples[(f"ours {style}", n)]) / n * 1e6
            bare = statistics.median(samples[(f"bare {style}", n)]) / n * 1e6
            ratio = ours / bare
            met = ratio <= target
            ok = ok and met
            label = "submit loop" if style == "submit" else f"map (bare: chunksize {CHUNKSIZE})"
            print(
                f"{f'per task, {label}, N={n:,} (us)':<46} {ours:>10.1f} {bare:>10.1f} {ratio:>9.2f}x"
                f"  {f'<= {target:g}x':<12} {'yes' if met else 'MISS'}"
            )
    timings = cpu_bound(workers, cpu_runs, loops_for(cpu_seconds))
    print()
    print(f"CPU-bound: {cpu_runs} runs of ~{cpu_seconds} s of pure Python on {workers} workers")
    print(f"  {'serial':<10} {timings['serial']:6.2f} s   (the same runs one after another, timed here)")
    for label in ("threads", "processes"):
        print(f"  {label:<10} {timings[label]:6.2f} s   speed-up over serial {timings['serial'] / timings[label]:.2f}x")
    print(f"  processes over threads: {timings['threads'] / timings['processes']:.2f}x")
    return 0 if ok or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
