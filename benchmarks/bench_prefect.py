"""What Prefect 3.9.1 costs doing the same no-op work as our benchmarks, with its four task runners.

Runs only in the `prefect` hatch environment (Prefect, prefect-dask and prefect-ray; not
taskrunners), from the repository root::

    hatch run prefect:python benchmarks/bench_prefect.py              # full run (~40 min)
    hatch run prefect:python benchmarks/bench_prefect.py --quick      # a smoke run (~10 min)
    hatch run prefect:python benchmarks/bench_prefect.py --runners threads --json out.json

Prefect runs in its default set-up: no `PREFECT_API_URL`, so the first flow call starts
its temporary local API server (on 127.0.0.1), which every flow and task run then
reports to. `PREFECT_HOME` is a fresh temporary folder, so no earlier run's database
colours the figures. Prefect's console handler is set to WARNING (the runs' logs still
go to the API, as by default); telemetry is off.

For each runner (threads: `ThreadPoolTaskRunner(max_workers=W)`, W = min(32, CPUs + 4);
processes: `ProcessPoolTaskRunner(max_workers=2)`; dask: `DaskTaskRunner(address=...)`
joined to one LocalCluster of 2 worker processes started here; ray: `RayTaskRunner`
on one local Ray of 2 CPUs started here, on 127.0.0.1), with the task
`noop(x) -> x` defined in this script (so pickled by value, with cloudpickle, where it
leaves the process):

- **submit**, **map** (us per task, N in `--sizes`): the whole call of a flow that runs
  `noop.submit(i)` N times and reads every result, or `noop.map(range(N)).result()`,
  divided by N; the median of `--rounds` calls, after a warm-up call of each flow. The
  API server goes on recording the runs' events long after the call returns (minutes
  for a few thousand runs on 2 cores): after each call the script waits until the
  server is idle, so that no job pays for the one before; the figure's note says how
  long that took;
- **chain** (us per link, N = `--chain`): each run takes the previous run's future;
- **import** (ms): `import prefect` (`prefect_dask`, `prefect_ray`) in a fresh
  interpreter, minus an empty one;
- **empty_flow_process** (s): a whole `python -c` calling an empty flow on the runner
  (Dask and Ray: the runner starts its own cluster), temporary API server included;
- **memory_per_task** (KiB) and **peak_threads**: in a fresh child, inside a flow on the
  runner, after 10 runs: `noop.map(range(N))` (N = `--memory-runs`), every result read and
  every future held; the growth of the driver's resident memory / N, and the most OS
  threads the driver had during the runs above the count before (as bench_footprint.py
  measures ours).

The budget rule: Prefect costs 100x more than the engines, so before each job the
script estimates its duration (the flow call, and the server's catching up after it)
from the runner's quickest warm-up call and the per-task cost of its largest job so
far (first, a probe flow of 50 runs); a job estimated over `--budget-s` (default 240 s)
is not run, and its figure says why, with the estimate.
"""

from __future__ import annotations

import os
import sys

# Before Prefect, Ray and _common read the environment: no telemetry, quiet consoles, Ray
# on loopback only (Ray keeps 127.0.0.1 only where it thinks clusters are unsupported),
# bytecode cached as users have it (import and start-up times), and time for Prefect's
# temporary server to start on a loaded machine (20 s by default: too short here).
SETTINGS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
for _key, _value in SETTINGS.items():
    os.environ.setdefault(_key, _value)
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
if __name__ == "__main__":  # not in the worker processes that import this file again
    import atexit
    import shutil
    import tempfile

    os.environ.pop("PREFECT_API_URL", None)
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="bench-prefect-home-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], True)  # runs after the server stops

import argparse
import contextlib
import gc
import glob
import logging
import statistics
import textwrap
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any

from _common import PREFECT, child_json, figure, import_ms, machine, process_seconds, write_json
from prefect import flow, task
from prefect.task_runners import TaskRunner

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNERS = ("threads", "processes", "dask", "ray")
WORKERS = min(32, (os.cpu_count() or 1) + 4)
PROBE_N = 50
IMPORTS = {"threads": "prefect", "processes": "prefect", "dask": "prefect_dask", "ray": "prefect_ray"}
RAY_INIT = {
    "num_cpus": 2,
    "include_dashboard": False,
    "log_to_driver": False,
    "object_store_memory": 512 * 1024 * 1024,
    "_node_ip_address": "127.0.0.1",
}
DASK_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "host": "127.0.0.1", "dashboard_address": None}
# How a fresh child makes the runner, as a user would: Dask and Ray start their own
# cluster, and the thread runner has its default size (as ours has in bench_footprint.py):
# no max_workers, so a thread per pending run, which the peak-threads figure shows.
CHILD_RUNNER = {
    "threads": "from prefect.task_runners import ThreadPoolTaskRunner\nrunner = ThreadPoolTaskRunner()",
    "processes": "from prefect.task_runners import ProcessPoolTaskRunner\n"
    "runner = ProcessPoolTaskRunner(max_workers=2)",
    "dask": "from prefect_dask import DaskTaskRunner\n"
    f"runner = DaskTaskRunner(cluster_kwargs={DASK_CLUSTER!r})",
    "ray": f"from prefect_ray import RayTaskRunner\nrunner = RayTaskRunner(init_kwargs={RAY_INIT!r})",
}
HOW = {
    "threads": f"ThreadPoolTaskRunner(max_workers={WORKERS})",
    "processes": "ProcessPoolTaskRunner(max_workers=2): spawned workers (its only start method), started "
    "with every flow run and included in the time",
    "dask": "DaskTaskRunner(address=...) joined to a LocalCluster of 2 worker processes started once "
    "(start-up excluded); each flow run connects its own client; the task pickled by value (cloudpickle)",
    "ray": "RayTaskRunner joined to a local Ray of 2 CPUs started once by ray.init in this process "
    "(start-up excluded; the runner uses an initialised Ray as it is); the task pickled by value "
    "(cloudpickle)",
}
STYLES = {
    "submit": "noop.submit(i) N times, every .result() read",
    "map": "noop.map(range(N)).result()",
    "chain": "each run takes the previous run's future; the last result read",
}


@task
def noop(x: Any) -> Any:
    return x


@flow
def submit_loop(n: int) -> None:
    futures = [noop.submit(i) for i in range(n)]
    for future in futures:
        future.result()


@flow
def mapped(n: int) -> None:
    noop.map(range(n)).result()


@flow
def chain(n: int) -> None:
    future = noop.submit(0)
    for _ in range(n - 1):
        future = noop.submit(future)
    assert future.result() == 0


FLOWS = {"submit": submit_loop, "map": mapped, "chain": chain}


@contextlib.contextmanager
def engine(runner: str) -> Iterator[TaskRunner]:
    """The Prefect task runner that the timed flows use, its engine started (and stopped after)."""
    if runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        yield ThreadPoolTaskRunner(max_workers=WORKERS)
    elif runner == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        yield ProcessPoolTaskRunner(max_workers=2)
    elif runner == "dask":
        from distributed import LocalCluster
        from prefect_dask import DaskTaskRunner

        logging.getLogger("distributed").setLevel(logging.ERROR)
        with LocalCluster(**DASK_CLUSTER) as cluster:
            yield DaskTaskRunner(address=cluster.scheduler_address)
    else:
        import ray
        from prefect_ray import RayTaskRunner

        ray.init(address="local", **RAY_INIT)
        try:
            yield RayTaskRunner(address=ray.get_runtime_context().gcs_address)
        finally:
            ray.shutdown()


class Budget:
    """Estimates a job's duration for one runner, and refuses a job estimated over the limit.

    A job is a flow call and the wait for the API server to catch up after it. The call
    costs a fixed part (creating the flow run, entering the runner: for processes,
    spawning its workers) and a part per task; the catching up, a part per task. The
    fixed part is the quickest warm-up call (5 runs); the parts per task come from the
    largest job so far of the same style, else from the costliest job of the largest N
    (first, from the probe, whose catching up is too short to tell).
    """

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.call_s = 0.0
        self.costs: dict[str, tuple[int, float, float]] = {}  # style: N, per task, catching up per task

    def record(self, style: str, n: int, call_s: float, settle_s: float) -> None:
        """Learn from a flow call of N runs that took `call_s`, and `settle_s` to catch up after."""
        if n >= self.costs.get(style, (0, 0.0, 0.0))[0]:
            self.costs[style] = (n, max(call_s - self.call_s, 0.0) / n, settle_s / n)

    def cost(self, style: str) -> tuple[int, float, float]:
        """N, seconds per task, and seconds of catching up per task, to estimate `style` from."""
        if style in self.costs or not self.costs:
            return self.costs.get(style, (0, 0.0, 0.0))
        largest = max(n for n, _, _ in self.costs.values())
        return max((c for c in self.costs.values() if c[0] == largest), key=lambda c: c[1] + c[2])

    def refuse(self, style: str, n: int, calls: int = 1, start_s: float | None = None) -> str | None:
        """Why `calls` jobs of N runs (or one fresh process taking `start_s` to start) are not run."""
        measured_at, per_task, settle = self.cost(style)
        if start_s is not None:  # a child process: its API server stops with it
            settle = 0.0
        fixed = self.call_s if start_s is None else start_s
        estimate = calls * (fixed + n * (per_task + settle))
        if estimate <= self.limit_s:
            return None
        runs = f"N={n:,}" + (f" x {calls} rounds" if calls > 1 else "")
        fixed_text = "per flow call" if start_s is None else "for the process to start"
        settle_text = ""
        if settle >= 0.0005:
            settle_text = f" and {settle * 1e3:,.0f} ms per task for the API server to catch up"
        return (
            f"not run: {runs} would take about {estimate:,.0f} s at {per_task * 1e3:,.0f} ms per task"
            f"{settle_text} (measured at N={measured_at:,}), and {fixed:,.1f} s {fixed_text}, over "
            f"the --budget-s of {self.limit_s:g} s"
        )


def api_server_cpu_s() -> float | None:
    """CPU seconds used so far by this process's temporary Prefect API server (Linux), or None."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as file:
                fields = file.read().rsplit(")", 1)[1].split()  # state, ppid, ..., utime (11), stime (12)
            if int(fields[1]) != os.getpid():
                continue
            with open(stat[: -len("stat")] + "cmdline", "rb") as file:
                if b"prefect.server.api.server:create_app" not in file.read():
                    continue
        except (OSError, ValueError, IndexError):
            continue
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def settle(limit_s: float) -> float:
    """Wait until the API server is idle (under 10 % of a core for 2 s); the seconds it took.

    Prefect's server records every task run's events after the flow call has returned;
    on this machine it lags far behind, and would slow the next job down.
    """
    began = time.perf_counter()
    before, quiet = api_server_cpu_s(), 0
    while before is not None and quiet < 2 and time.perf_counter() - began < limit_s:
        time.sleep(1.0)
        now = api_server_cpu_s()
        quiet = quiet + 1 if now is not None and now - before < 0.1 else 0
        before = now
    return max(0.0, time.perf_counter() - began - quiet)


def failed(exc: BaseException) -> str:
    """The reason for a figure that failed: the error, and a child's last line of output."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    last = f" ... {lines[-1][:200]}" if len(lines) > 1 else ""
    return f"failed: {type(exc).__name__}: {lines[0][:200]}{last}"


def show(fig: dict[str, Any], remark: str = "") -> dict[str, Any]:
    """Print one figure as a row of the table, as soon as it is measured."""
    value, unit = fig["value"], fig["unit"]
    if value is None:
        text = "-"
    elif unit in ("us", "ms", "threads"):
        text = f"{value:,.0f}"
    else:
        text = f"{value:,.2f}"
    n = f"{fig['n']:,}" if fig["n"] else ""
    row = f"{fig['runner']:<10} {fig['metric']:<19} {n:>7} {text:>12} {unit:<8} {fig['skipped'] or remark}"
    print(row.rstrip(), flush=True)
    return fig


def timed_calls(fn: Any, n: int, rounds: int, settle_limit_s: float) -> list[tuple[float, float]]:
    """Per round: the seconds of a flow call with N, and then of the API server's catching up."""
    timings = []
    for _ in range(rounds):
        gc.collect()
        began = time.perf_counter()
        fn(n)
        timings.append((time.perf_counter() - began, settle(settle_limit_s)))
    return timings


def per_task_jobs(runner: str, args: argparse.Namespace, budget: Budget) -> list[dict[str, Any]]:
    """submit and map at every size, and the chain, in one process, on one engine."""
    jobs = sorted(
        [(style, n) for n in args.sizes for style in ("submit", "map")] + [("chain", args.chain)],
        key=lambda job: job[1],
    )
    unit_of = {"submit": "per task", "map": "per task", "chain": "per link"}
    limit = 2 * args.budget_s
    figures = []
    try:
        with engine(runner) as task_runner:
            flows = {style: fn.with_options(task_runner=task_runner) for style, fn in FLOWS.items()}
            # Warm-up: the API server (at the first call of the process), the engine, code paths.
            warm_up = [timed_calls(fn, 5, 1, limit)[0][0] for fn in flows.values()]
            budget.call_s = min(warm_up)
            remark = f"warm-up calls {', '.join(f'{s:.1f}' for s in warm_up)} s"
            if jobs[0][1] > PROBE_N:
                # Its catching up is not extrapolated: a wait measured in whole seconds, for 50 runs.
                probe_s = timed_calls(flows["submit"], PROBE_N, 1, limit)[0][0]
                budget.record("submit", PROBE_N, probe_s, 0.0)
                remark += f"; probe: N={PROBE_N} in {probe_s:.1f} s"
            print(f"{runner:<10} ({remark})", flush=True)
            for style, n in jobs:
                skipped = budget.refuse(style, n, args.rounds)
                timings: list[tuple[float, float]] = []
                if skipped is None:
                    timings, skipped = attempt(timed_calls, flows[style], n, args.rounds, limit)
                calls, settled = [t[0] for t in timings or []], [t[1] for t in timings or []]
                if calls:
                    budget.record(style, n, max(calls), max(settled))
                per_task = [s / n * 1e6 for s in calls]
                value = statistics.median(per_task) if per_task else None
                note = f"{HOW[runner]}; {STYLES[style]}; the whole flow call / N ({unit_of[style]})"
                remark = ""
                if settled:
                    remark = f"API server busy {statistics.median(settled):,.0f} s more"
                    note += (
                        f"; after the call, Prefect's API server went on recording the runs for "
                        f"{statistics.median(settled):,.0f} s (the next job waited for it)"
                    )
                fig = figure(
                    runner, style, PREFECT, value, "us", n=n, samples=per_task, note=note, skipped=skipped
                )
                figures.append(show(fig, remark))
    except Exception as exc:  # noqa: BLE001 - no engine, warm-up or probe: no job can run
        done = {(f["metric"], f["n"]) for f in figures}
        figures += [
            show(figure(runner, style, PREFECT, None, "us", n=n, skipped=failed(exc)))
            for style, n in jobs
            if (style, n) not in done
        ]
    return figures


def empty_flow_code(runner: str) -> str:
    """A program that calls an empty flow on the runner."""
    return textwrap.dedent(
        """
        from prefect import flow
        {runner_code}

        @flow(task_runner=runner)
        def empty():
            return None

        if __name__ == "__main__":
            empty()
        """
    ).format(runner_code=CHILD_RUNNER[runner])


def memory_code(runner: str, n: int) -> str:
    """A program that prints, as JSON, the driver's memory per task and extra threads over N runs.

    It imports _common inside the flow: Prefect's Ray runner sends the flow, pickled by
    value, with every task, and Ray's workers could not import a module-level reference.
    """
    return textwrap.dedent(
        """
        import json, sys
        sys.path.insert(0, {here!r})
        from prefect import flow, task
        {runner_code}

        @task
        def noop(x):
            return x

        @flow(task_runner=runner)
        def measure(n):
            import gc
            from _common import PeakThreads, rss_bytes

            noop.map(range(10)).result()
            gc.collect()
            before = rss_bytes()
            with PeakThreads() as threads:
                futures = noop.map(range(n))
                futures.result()
            gc.collect()
            after = rss_bytes()
            assert len(futures) == n
            return {{"kib_per_task": (after - before) / n / 1024, "threads": threads.extra}}

        if __name__ == "__main__":
            print(json.dumps(measure({n})))
        """
    ).format(here=HERE, runner_code=CHILD_RUNNER[runner], n=n)


def attempt(measure: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, str | None]:
    """What `measure(*args, **kwargs)` returns and None, or None and why it failed."""
    try:
        return measure(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001 - a runner that fails is recorded, and the next one runs
        return None, failed(exc)


def process_jobs(
    runner: str, args: argparse.Namespace, budget: Budget, imports: dict[str, Any]
) -> list[dict[str, Any]]:
    """import, empty_flow_process, memory_per_task and peak_threads: each in fresh interpreters."""
    module = IMPORTS[runner]
    if module not in imports:  # `import prefect` serves threads and processes
        imports[module] = attempt(import_ms, module, args.import_runs)
    timed, skipped = imports[module]
    value, samples = timed or (None, [])
    note = f"`import {module}`"
    figures = [
        show(figure(runner, "import", PREFECT, value, "ms", samples=samples, note=note, skipped=skipped))
    ]

    note = "a whole `python -c` calling an empty flow on the runner"
    own = {"dask": " (its own LocalCluster of 2 workers)", "ray": " (its own local Ray of 2 CPUs)"}
    note += own.get(runner, "")
    note += ", Prefect's temporary local API server started and stopped in it (its default set-up)"
    timed, skipped = attempt(process_seconds, empty_flow_code(runner), args.process_runs)
    start_s, samples = timed or (None, [])
    fig = figure(
        runner, "empty_flow_process", PREFECT, start_s, "s", samples=samples, note=note, skipped=skipped
    )
    figures.append(show(fig))

    n = args.memory_runs
    note = (
        f"at N={n:,} where ours uses 100,000: noop.map(range(N)), .result(), the futures held; "
        "in a fresh child, inside a flow on the runner, after 10 runs"
    )
    if runner == "threads":
        note += "; the runner at its default size, ThreadPoolTaskRunner() (no max_workers: a thread per pending run)"
    result, skipped = None, budget.refuse("map", n, start_s=start_s)
    if skipped is None:
        timeout = max(600.0, 3 * args.budget_s)
        result, skipped = attempt(child_json, memory_code(runner, n), timeout=timeout)
    for metric, key, unit in (
        ("memory_per_task", "kib_per_task", "KiB"),
        ("peak_threads", "threads", "threads"),
    ):
        value = result[key] if result else None
        figures.append(show(figure(runner, metric, PREFECT, value, unit, n=n, note=note, skipped=skipped)))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a smoke run: N=20, one sample of each figure, budget 60 s")
    add("--runners", default=",".join(RUNNERS), help="comma-separated (default: all four)")
    add("--sizes", default="1000,10000", help="N for submit and map (default 1000,10000)")
    add("--chain", type=int, default=1000, help="links of the chain (default 1,000)")
    add("--rounds", type=int, default=1, help="flow calls per per-task figure (default 1)")
    add("--memory-runs", type=int, default=1000, help="N for memory and threads (default 1,000)")
    add("--import-runs", type=int, default=3, help="interpreter pairs per import figure (default 3)")
    add("--process-runs", type=int, default=2, help="processes per empty-flow figure (default 2)")
    add("--budget-s", type=float, default=240.0, help="the longest a job may take (default 240 s)")
    add("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args(argv)
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.quick:
        args.sizes, args.chain, args.memory_runs = [20], 20, 20
        args.rounds, args.import_runs, args.process_runs, args.budget_s = 1, 1, 1, 60.0
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    unknown = sorted(set(runners) - set(RUNNERS))
    if unknown:
        parser.error(f"unknown runners: {', '.join(unknown)} (known: {', '.join(RUNNERS)})")

    packages = ("prefect", "prefect-dask", "prefect-ray", "dask", "distributed", "ray")
    meta = {
        **machine(),
        **{name.replace("-", "_"): version(name) for name in packages},
        "workers": WORKERS,
        "runners": runners,
        "sizes": args.sizes,
        "chain": args.chain,
        "rounds": args.rounds,
        "memory_runs": args.memory_runs,
        "budget_s": args.budget_s,
        "quick": args.quick,
        "api": "Prefect's temporary local API server (no PREFECT_API_URL), in a fresh PREFECT_HOME",
        "settings": {key: os.environ[key] for key in SETTINGS},
    }
    print(
        f"bench_prefect: Prefect {meta['prefect']}, prefect-dask {meta['prefect_dask']}, prefect-ray "
        f"{meta['prefect_ray']}, Python {meta['python']}, {meta['cpus']} CPUs; W={WORKERS}, "
        f"sizes={args.sizes}, chain={args.chain}, rounds={args.rounds}, budget {args.budget_s:g} s per job",
        flush=True,
    )
    print(f"{'runner':<10} {'metric':<19} {'N':>7} {'value':>12} {'unit':<8} remark", flush=True)
    figures: list[dict[str, Any]] = []
    imports: dict[str, Any] = {}
    began = time.perf_counter()
    for runner in runners:
        budget = Budget(args.budget_s)
        figures += per_task_jobs(runner, args, budget)
        figures += process_jobs(runner, args, budget, imports)
    meta["seconds"] = round(time.perf_counter() - began, 1)
    print(f"took {meta['seconds']:,.0f} s; us = microseconds per task (per link for chain)", flush=True)
    if args.json:
        write_json(args.json, {"benchmark": "prefect", "meta": meta, "figures": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
