"""What DaskTaskRunner costs, next to the same work through a bare `distributed.Client`.

Run from the repository root (see benchmarks/README.md)::

    python benchmarks/bench_dask.py                 # full run: N=1,000 and 10,000, 3 rounds
    python benchmarks/bench_dask.py --quick         # a smoke run: N=50, 1 round
    python benchmarks/bench_dask.py --json benchmarks/results/dask.json

On one `LocalCluster` with 2 worker processes (1 thread each), in this process:

- **submit loop**: a flow on `DaskTaskRunner(address=...)` submits N runs of
  `operator.add` (no work to speak of) and reads every result; *bare* does
  `client.submit` N times and `client.gather`.
- **map**: `task.map(range(N)).result()` against `client.map` and `client.gather`.
- **chain**: `--chain` runs (default 1,000), each taking the previous one's future as its argument, and the
  last result read; *bare* chains `client.submit(add, previous, 1)` the same way.

Every job covers the whole of it: connecting a client (the flow's runner connects its
own), submitting, reading, closing. Both sides call `operator.add`, which pickles by
reference. After a warm-up, each round
runs every job of ours next to the same job bare (in alternating order); the ratio is
the median of the rounds' ratios (a shared machine's load changes between rounds more
than between two neighbouring jobs), the per-task figures the medians over rounds,
divided by N. Target: at most 1.2x bare. `--check` exits with status 1 on a miss.
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
HEADER = f"{'metric':<52} {'ours':>10} {'bare':>10} {'ours/bare':>10}  {'target':<14} met"

Case = Callable[[int], float]


def make_cases(address: str) -> dict[str, Case]:
    import operator

    from distributed import Client
    from taskrunners import flow, task
    from taskrunners_dask import DaskTaskRunner

    runner = DaskTaskRunner(address=address)
    # The work is `operator.add`: both sides send a function pickled by reference, as
    # a task defined at module level in an importable module is.
    add = task(operator.add)
    bare_add = operator.add

    @flow(task_runner=runner)
    def submit_loop(n: int) -> None:
        futures = [add.submit(i, 0) for i in range(n)]
        for future in futures:
            future.result()

    @flow(task_runner=runner)
    def mapped(n: int) -> None:
        add.map(range(n), 0).result()

    @flow(task_runner=runner)
    def chain(n: int) -> int:
        future = add.submit(0, 1)
        for _ in range(n - 1):
            future = add.submit(future, 1)
        return future.result()  # type: ignore[no-any-return]

    def timed(fn: Callable[[], Any]) -> float:
        began = time.perf_counter()
        fn()
        return time.perf_counter() - began

    def ours_submit(n: int) -> float:
        return timed(lambda: submit_loop(n))

    def ours_map(n: int) -> float:
        return timed(lambda: mapped(n))

    def ours_chain(n: int) -> float:
        def job() -> None:
            assert chain(n) == n

        return timed(job)

    def bare_submit(n: int) -> float:
        def job() -> None:
            with Client(address, set_as_default=False) as client:
                futures = [client.submit(bare_add, i, 0, pure=False) for i in range(n)]
                client.gather(futures)

        return timed(job)

    def bare_map(n: int) -> float:
        def job() -> None:
            with Client(address, set_as_default=False) as client:
                client.gather(client.map(bare_add, range(n), [0] * n, pure=False))

        return timed(job)

    def bare_chain(n: int) -> float:
        def job() -> None:
            with Client(address, set_as_default=False) as client:
                future = client.submit(bare_add, 0, 1, pure=False)
                for _ in range(n - 1):
                    future = client.submit(bare_add, future, 1, pure=False)
                assert future.result() == n

        return timed(job)

    return {
        "ours submit": ours_submit,
        "bare submit": bare_submit,
        "ours map": ours_map,
        "bare map": bare_map,
        "ours chain": ours_chain,
        "bare chain": bare_chain,
    }


STYLES = (("submit", "submit loop"), ("map", "map"), ("chain", "chain (future as argument)"))


def measure(address: str, sizes: list[int], links: int, rounds: int) -> list[dict[str, Any]]:
    """Each round runs, per style, *ours* and *bare* back to back (in alternating order),
    so that a change in the machine's load hits both; the ratio is the median of the
    per-round ratios, the per-task figures the medians of the rounds."""
    cases = make_cases(address)
    for name in cases:  # warm up: imports, connections, code paths on both sides
        cases[name](min(*sizes, 50))
    plan = [(style, n) for n in sizes for style in ("submit", "map")] + [("chain", links)]
    samples: dict[str, list[float]] = {
        f"{who} {style} {n}": [] for style, n in plan for who in ("ours", "bare")
    }
    ratios: dict[tuple[str, int], list[float]] = {key: [] for key in plan}
    for round_ in range(rounds):
        for style, n in plan:
            pair = [f"ours {style}", f"bare {style}"]
            if round_ % 2:
                pair.reverse()
            for name in pair:
                gc.collect()
                samples[f"{name} {n}"].append(cases[name](n))
            ratios[(style, n)].append(samples[f"ours {style} {n}"][-1] / samples[f"bare {style} {n}"][-1])
    rows = []
    labels = dict(STYLES)
    for style, n in plan:
        label = labels[style]
        ours_us = statistics.median(samples[f"ours {style} {n}"]) / n * 1e6
        bare_us = statistics.median(samples[f"bare {style} {n}"]) / n * 1e6
        ratio = statistics.median(ratios[(style, n)])
        rows.append(
            {
                "style": label,
                "n": n,
                "ours_us_per_task": ours_us,
                "bare_us_per_task": bare_us,
                "ratio": ratio,
                "met": ratio <= RATIO_TARGET,
                "ours_seconds": samples[f"ours {style} {n}"],
                "bare_seconds": samples[f"bare {style} {n}"],
                "round_ratios": ratios[(style, n)],
            }
        )
    return rows


def figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as figures for benchmarks/report.py (see _common.figure)."""
    metrics = {label: style for style, label in STYLES}
    bare_notes = {
        "submit": "client.submit in a loop",
        "map": "client.map",
        "chain": "client.submit(add, previous_future, 1)",
    }
    return overhead_figures("dask", rows, metrics, bare_notes)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: N=50, 1 round")
    parser.add_argument("--sizes", default="1000,10000", help="runs per submit and map job, comma-separated")
    parser.add_argument("--chain", type=int, default=1000, help="links of the chain (default 1,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every job (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    sizes, links, rounds = ([50], 50, 1) if args.quick else (sizes, args.chain, args.rounds)

    import logging

    import dask
    import distributed
    from distributed import LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    began = time.perf_counter()
    with LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        started = time.perf_counter() - began
        rows = measure(cluster.scheduler_address, sizes, links, rounds)

    print(
        f"DaskTaskRunner vs distributed.Client: LocalCluster of {args.workers} worker processes, "
        f"{rounds} round(s), medians; cluster start {started:.2f} s"
    )
    print(
        f"Python {platform.python_version()}, dask {dask.__version__}, distributed {distributed.__version__}, "
        f"{os.cpu_count()} CPUs"
    )
    print(HEADER)
    for row in rows:
        metric = f"per task, {row['style']}, N={row['n']:,} (us)"
        print(
            f"{metric:<52} {row['ours_us_per_task']:>10.0f} {row['bare_us_per_task']:>10.0f} "
            f"{row['ratio']:>9.2f}x  {'<= 1.2x bare':<14} {'yes' if row['met'] else 'NO'}"
        )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "dask",
                "meta": {
                    **machine(),
                    "sizes": sizes,
                    "chain": links,
                    "rounds": rounds,
                    "workers": args.workers,
                    "dask": dask.__version__,
                    "distributed": distributed.__version__,
                    "cluster_start_seconds": started,
                    "quick": args.quick,
                },
                "per_task_overhead": rows,
                "figures": figures(rows),
            },
        )
    missed = [row for row in rows if not row["met"]]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
