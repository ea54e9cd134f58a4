"""What every benchmark here measures the same way. Standard library only.

This module is imported by the benchmarks of taskrunners and by `bench_prefect.py`,
which runs in an environment that has Prefect and not taskrunners: nothing here may
import either.

Every benchmark writes, with `--json PATH`, a report whose `"figures"` list holds one
dict per measured figure (see `figure()`); `report.py` reads those lists from every
report and writes `docs/benchmarks.md`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

# Who a figure is about.
OURS, RAW, PREFECT = "taskrunners", "raw", "prefect"

# Import and start-up times are measured as users see them: with bytecode cached. Some
# machines set PYTHONDONTWRITEBYTECODE, which would add compiling every module to every run.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def figure(
    runner: str,
    metric: str,
    who: str,
    value: float | None,
    unit: str,
    *,
    n: int | None = None,
    samples: Sequence[float] = (),
    note: str | None = None,
    skipped: str | None = None,
) -> dict[str, Any]:
    """One measured figure, as every report lists it.

    Args:
        runner: `"threads"`, `"processes"`, `"dask"` or `"ray"`.
        metric: `"submit"`, `"map"`, `"chain"` (per task or link), `"import"`,
            `"empty_flow_process"`, `"memory_per_task"` or `"peak_threads"`.
        who: `OURS`, `RAW` or `PREFECT`.
        value: The figure (the median of `samples` where there are several), or None
            when `skipped` says why it was not measured.
        unit: `"us"` (per task), `"ms"`, `"s"`, `"KiB"` (per task) or `"threads"`.
        n: The number of runs the figure was measured over.
        samples: Every sample the figure summarises.
        note: What a reader must know to read the figure.
        skipped: Why there is no figure.
    """
    return {
        "runner": runner,
        "metric": metric,
        "who": who,
        "n": n,
        "value": value,
        "unit": unit,
        "samples": list(samples),
        "note": note,
        "skipped": skipped,
    }


def overhead_figures(
    runner: str, rows: Sequence[dict[str, Any]], metrics: dict[str, str], bare_notes: dict[str, str]
) -> list[dict[str, Any]]:
    """A benchmark's per-task rows as figures, ours and the raw engine's for each.

    Args:
        runner: The runner the rows measure.
        rows: Dicts with `style`, `n`, `ours_us_per_task`, `bare_us_per_task`,
            `ours_seconds` and `bare_seconds` (the whole job's samples).
        metrics: The report's metric (`"submit"`, `"map"`, `"chain"`) for each row
            style; rows of other styles are left out.
        bare_notes: For each metric, how the raw engine did the job.
    """
    out = []
    for row in rows:
        metric = metrics.get(row["style"])
        if metric is None:
            continue
        n = row["n"]
        for who, key, note in ((OURS, "ours", None), (RAW, "bare", bare_notes[metric])):
            samples = [s / n * 1e6 for s in row[f"{key}_seconds"]]
            out.append(
                figure(runner, metric, who, row[f"{key}_us_per_task"], "us", n=n, samples=samples, note=note)
            )
    return out


def machine() -> dict[str, Any]:
    """The facts a reader needs to weigh a figure."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "memory_gib": _memory_gib(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def write_json(path: str, report: dict[str, Any]) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w") as out:
        json.dump(report, out, indent=2)
    print(f"wrote {path}")


# -- this process: memory and threads ------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident memory now (Linux: /proc; elsewhere its peak so far)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def os_threads() -> int:
    """This process's threads, counted by the OS (C threads of an engine included)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return threading.active_count()


class PeakThreads:
    """The most OS threads this process had while the `with` block ran, above before.

    A sampler thread reads the count every `interval` seconds; it does not count itself.
    """

    def __init__(self, interval: float = 0.002) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self.before = 0
        self.peak = 0

    def __enter__(self) -> PeakThreads:  # noqa: PYI034 (Self needs Python 3.11)
        self.before = os_threads()
        self.peak = self.before
        self._thread = threading.Thread(target=self._sample, name="peak-threads", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, os_threads() - 1)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def extra(self) -> int:
        return max(0, self.peak - self.before)


# -- fresh interpreters ---------------------------------------------------------------------


def _wall(python: str, code: str, env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - began
    if done.returncode:
        raise RuntimeError(f"{python} -c {code!r} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return elapsed


def import_ms(module: str, runs: int, python: str = sys.executable) -> tuple[float, list[float]]:
    """Median wall time of `import module` in a fresh interpreter, minus an empty one's.

    The two run in pairs, after one import that writes the bytecode caches.
    """
    _wall(python, f"import {module}", CHILD_ENV)
    samples = []
    for _ in range(runs):
        empty = _wall(python, "pass", CHILD_ENV)
        full = _wall(python, f"import {module}", CHILD_ENV)
        samples.append((full - empty) * 1e3)
    return statistics.median(samples), samples


def process_seconds(
    code: str, runs: int, python: str = sys.executable, env: dict[str, str] | None = None
) -> tuple[float, list[float]]:
    """Median wall time of a whole `python -c code`: start-up, imports, work and exit."""
    env = CHILD_ENV if env is None else env
    _wall(python, code, env)  # caches written, first-run costs paid
    samples = [_wall(python, code, env) for _ in range(runs)]
    return statistics.median(samples), samples


def child_json(
    code: str, python: str = sys.executable, env: dict[str, str] | None = None, timeout: float = 3600
) -> Any:
    """Run `code` in a fresh interpreter; it prints one JSON document last. Return it."""
    env = CHILD_ENV if env is None else env
    done = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if done.returncode:
        raise RuntimeError(f"a child benchmark exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_or_none(samples: Sequence[float]) -> float | None:
    return statistics.median(samples) if samples else None
