"""What a program pays to use each runner, beside the raw engine: import, start-up, memory, threads.

Run from the repository root (see benchmarks/README.md)::

    python benchmarks/bench_footprint.py                 # every runner, 100,000 runs for memory
    python benchmarks/bench_footprint.py --quick         # a smoke run: 200 runs, 1 sample each
    python benchmarks/bench_footprint.py --runners threads,processes --json out.json

For each runner (threads, processes, dask, ray), ours next to the raw engine:

- **import** (ms): `import` of our runner's module (`taskrunners` and
  `taskrunners_threads` for threads) against the engine's (`concurrent.futures`,
  `concurrent.futures.process`, `distributed`, `ray`), in fresh interpreters, minus an
  empty interpreter's time; the median of `--import-runs` pairs.
- **empty flow, whole process** (s): a fresh `python -c` that calls a flow that does
  nothing, on the runner (Dask: its own LocalCluster of 2 workers; Ray: its own local
  Ray of 2 CPUs), against one that starts the engine and stops it (an executor created
  and shut down; a LocalCluster and a client; `ray.init` and `ray.shutdown`).
- **driver memory per completed task** (KiB) and **peak threads**: in a fresh child, N
  no-op runs (`--memory-runs`, default 100,000) through `.map`, every result read and
  every future still held, against the raw engine holding its own futures
  (`executor.submit` in a loop, `client.map`, `f.remote` in a loop). Memory is the
  growth of the driver's resident memory from just before the runs to just after them,
  divided by N; threads are the most OS threads the driver had during the runs, above
  the count before them. The engine was started, and 10 runs made, before either count
  was taken. With Dask's LocalCluster, the scheduler lives in the driver process: its
  memory for N tasks is part of both sides' figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import Any

from _common import OURS, RAW, child_json, figure, import_ms, machine, process_seconds, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNERS = ("threads", "processes", "dask", "ray")
RAY_INIT = (
    'address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, '
    'object_store_memory=512 * 1024 * 1024, _node_ip_address="127.0.0.1"'
)
DASK_CLUSTER = 'n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None'

IMPORTS = {
    "threads": ("import taskrunners, taskrunners_threads", "import concurrent.futures"),
    "processes": ("import taskrunners, taskrunners_processes", "import concurrent.futures.process"),
    "dask": ("import taskrunners, taskrunners_dask", "import distributed"),
    "ray": ("import taskrunners, taskrunners_ray", "import ray"),
}

# How each side makes, and forgets, the runner or engine.
OUR_RUNNER = {
    "threads": "from taskrunners_threads import ThreadPoolTaskRunner as R; runner = R()",
    "processes": "from taskrunners_processes import ProcessPoolTaskRunner as R; runner = R(max_workers=2)",
    "dask": "from taskrunners_dask import DaskTaskRunner as R; "
    'runner = R(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None})',
    "ray": 'from taskrunners_ray import RayTaskRunner as R; runner = R(init_kwargs={"num_cpus": 2, "log_to_driver": False})',
}
RAW_EMPTY = {
    "threads": "from concurrent.futures import ThreadPoolExecutor\nThreadPoolExecutor().shutdown()",
    "processes": "from concurrent.futures import ProcessPoolExecutor\nProcessPoolExecutor(2).shutdown()",
    "dask": f"from distributed import Client, LocalCluster\nif __name__ == '__main__':\n"
    f"    with LocalCluster({DASK_CLUSTER}) as cluster, Client(cluster):\n        pass",
    "ray": f"import ray\nray.init({RAY_INIT})\nray.shutdown()",
}


def ours_empty_flow(runner: str) -> str:
    return textwrap.dedent(
        f"""
        from taskrunners import flow
        {OUR_RUNNER[runner]}

        @flow(task_runner=runner)
        def empty():
            return None

        if __name__ == "__main__":
            empty()
        """
    )


# -- memory and threads, in a child ----------------------------------------------------------

_MEASURE = f"""
import gc, json, sys
sys.path.insert(0, {HERE!r})
from _common import PeakThreads, rss_bytes

def measure(warm_up, job, n):
    warm_up(10)
    gc.collect()
    before = rss_bytes()
    with PeakThreads() as threads:
        held = job(n)
    gc.collect()
    after = rss_bytes()
    assert len(held) == n
    return {{"kib_per_task": (after - before) / n / 1024, "threads": threads.extra}}
"""


def ours_memory(runner: str, n: int) -> str:
    return _MEASURE + textwrap.dedent(
        f"""
        import operator
        from taskrunners import flow, task
        {OUR_RUNNER[runner]}

        add = task(operator.add)

        def job(n):
            futures = add.map(range(n), 0)
            futures.result()
            return futures

        @flow(task_runner=runner)
        def run():
            return measure(job, job, {n})

        if __name__ == "__main__":
            print(json.dumps(run()))
        """
    )


_RAW_MEMORY = {
    "threads": """
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor() as pool:
            def job(n):
                futures = [pool.submit(operator.add, i, 0) for i in range(n)]
                [f.result() for f in futures]
                return futures
            print(json.dumps(measure(job, job, {n})))
        """,
    "processes": """
        from concurrent.futures import ProcessPoolExecutor
        if __name__ == "__main__":
            with ProcessPoolExecutor(2) as pool:
                def job(n):
                    futures = [pool.submit(operator.add, i, 0) for i in range(n)]
                    [f.result() for f in futures]
                    return futures
                print(json.dumps(measure(job, job, {n})))
        """,
    "dask": """
        from distributed import Client, LocalCluster
        if __name__ == "__main__":
            with LocalCluster({cluster}) as cluster, Client(cluster) as client:
                def job(n):
                    futures = client.map(operator.add, range(n), [0] * n, pure=False)
                    client.gather(futures)
                    return futures
                print(json.dumps(measure(job, job, {n})))
        """,
    "ray": """
        import ray
        ray.init({ray_init})
        add = ray.remote(lambda a, b: a + b)
        def job(n):
            refs = [add.remote(i, 0) for i in range(n)]
            ray.get(refs)
            return refs
        print(json.dumps(measure(job, job, {n})))
        ray.shutdown()
        """,
}


def raw_memory(runner: str, n: int) -> str:
    body = _RAW_MEMORY[runner].format(n=n, cluster=DASK_CLUSTER, ray_init=RAY_INIT)
    return _MEASURE + "import operator\n" + textwrap.dedent(body)


# -- the benchmark ---------------------------------------------------------------------------


def measure_runner(runner: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    figures = []
    ours_import, raw_import = IMPORTS[runner]
    for who, statement in ((OURS, ours_import), (RAW, raw_import)):
        value, samples = import_ms(statement[len("import ") :], args.import_runs)
        figures.append(figure(runner, "import", who, value, "ms", samples=samples, note=f"`{statement}`"))
        print(f"  {runner:<10} import              {who:<12} {value:9.1f} ms   ({statement})", flush=True)

    for who, code in ((OURS, ours_empty_flow(runner)), (RAW, RAW_EMPTY[runner])):
        value, samples = process_seconds(code, args.process_runs)
        figures.append(figure(runner, "empty_flow_process", who, value, "s", samples=samples))
        print(f"  {runner:<10} empty flow process  {who:<12} {value:9.2f} s", flush=True)

    n = args.memory_runs
    how = {
        OURS: "task.map(range(N)); .result(); the FutureList held",
        RAW: {
            "threads": "executor.submit in a loop, futures held",
            "processes": "executor.submit in a loop, futures held",
            "dask": "client.map, futures held",
            "ray": "f.remote in a loop, ObjectRefs held",
        }[runner],
    }
    for who, code in ((OURS, ours_memory(runner, n)), (RAW, raw_memory(runner, n))):
        result = child_json(code)
        figures.append(
            figure(runner, "memory_per_task", who, result["kib_per_task"], "KiB", n=n, note=how[who])
        )
        figures.append(figure(runner, "peak_threads", who, result["threads"], "threads", n=n, note=how[who]))
        print(
            f"  {runner:<10} memory, threads     {who:<12} {result['kib_per_task']:9.2f} KiB/task"
            f"  {result['threads']:5d} threads  (N={n:,})",
            flush=True,
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 runs, 1 sample of each figure")
    parser.add_argument("--runners", default=",".join(RUNNERS), help="comma-separated (default: all four)")
    parser.add_argument(
        "--memory-runs", type=int, default=100_000, help="runs for memory and threads (default 100,000)"
    )
    parser.add_argument(
        "--import-runs", type=int, default=5, help="fresh interpreters per import figure (default 5)"
    )
    parser.add_argument(
        "--process-runs", type=int, default=3, help="whole processes per start-up figure (default 3)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.memory_runs, args.import_runs, args.process_runs = 200, 1, 1
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    unknown = sorted(set(runners) - set(RUNNERS))
    if unknown:
        parser.error(f"unknown runner(s) {unknown}; choose from {', '.join(RUNNERS)}")

    print(f"bench_footprint: runners={runners}, memory runs={args.memory_runs:,}", flush=True)
    figures = [f for runner in runners for f in measure_runner(runner, args)]
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "footprint",
                "meta": {**machine(), "memory_runs": args.memory_runs, "quick": args.quick},
                "figures": figures,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
