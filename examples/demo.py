"""Concurrency with threads: a flow whose tasks wait, and overlap while they do.

Run it from the repository root::

    python examples/demo.py

Eight `fetch` runs each wait about half a second (`time.sleep` stands in for a
network call), handed to a `ThreadPoolTaskRunner` with `.submit()`. `measure.map()`
starts one run per fetched page, each as soon as its own page is in; `total` receives
the futures of every `measure` run and starts once they have all completed. The table
shows which thread ran each task run and when it started and ended, in seconds since
the flow started; the summary compares the wall time with the sum of the task times.
"""

from __future__ import annotations

import threading
import time

from taskrunners import Future, flow, get_run_logger, task
from taskrunners_threads import ThreadPoolTaskRunner

PAGES = 8
FETCH_SECONDS = 0.5
MEASURE_SECONDS = 0.05

#: Which thread ran which task run, keyed by (task name, page); None keys `total`.
ran_on: dict[tuple[str, int | None], str] = {}


def _note(task_name: str, page: int | None) -> None:
    ran_on[(task_name, page)] = threading.current_thread().name


@task
def fetch(page: int) -> str:
    """Wait as a download would, then return the page's text."""
    _note("fetch", page)
    time.sleep(FETCH_SECONDS)
    return f"page {page}: " + "lorem ipsum " * (10 * page)


@task
def measure(text: str) -> int:
    """The size of one page, in characters."""
    _note("measure", int(text.split(":")[0].split()[1]))
    time.sleep(MEASURE_SECONDS)
    return len(text)


@task
def total(sizes: list[int]) -> int:
    """The sum of the sizes: its argument is a list of futures, resolved to values."""
    _note("total", None)
    get_run_logger().info("adding up %d page sizes", len(sizes))  # shown at a terminal
    return sum(sizes)


@flow(task_runner=ThreadPoolTaskRunner(max_workers=PAGES))
def crawl(runs: list[tuple[str, int | None, Future[object]]]) -> int:
    """Fetch every page, measure each, add the sizes up; record the futures in `runs`."""
    pages = [fetch.submit(page) for page in range(1, PAGES + 1)]
    sizes = measure.map(pages)  # one run per page; each waits for its own fetch only
    grand_total = total.submit(sizes)  # waits for every measure run
    runs.extend(("fetch", page, future) for page, future in enumerate(pages, 1))
    runs.extend(("measure", page, future) for page, future in enumerate(sizes, 1))
    runs.append(("total", None, grand_total))
    return grand_total  # the flow returns the value, not the future


def max_running_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that overlap at one instant.

    An interval that ends exactly when another starts does not overlap it.
    """
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:  # at equal times the end (-1) sorts before the start (+1)
        running += step
        peak = max(peak, running)
    return peak


def main() -> None:
    runs: list[tuple[str, int | None, Future[object]]] = []
    print(
        f"taskrunners demo: {PAGES} fetches of {FETCH_SECONDS} s each, then .map() and a "
        f"dependent task, on ThreadPoolTaskRunner(max_workers={PAGES})\n"
    )
    began = time.time()
    result = crawl(runs)
    wall = time.time() - began

    print(f"{'task run':<12} {'thread':<36} {'start':>7} {'end':>7}")
    intervals = []
    for task_name, page, future in runs:
        info = future.task_run
        assert info.start is not None and info.end is not None
        start, end = info.start - began, info.end - began
        intervals.append((start, end))
        print(f"{info.name:<12} {ran_on[(task_name, page)]:<36} {start:>7.3f} {end:>7.3f}")

    busy = sum(end - start for start, end in intervals)
    threads = len(set(ran_on.values()))
    print(f"\ntotal size of the {PAGES} pages: {result} characters")
    print(
        f"summary: {len(runs)} task runs on {threads} threads; wall time {wall:.2f} s, "
        f"sum of task times {busy:.2f} s, speed-up {busy / wall:.1f}x; "
        f"at most {max_running_at_once(intervals)} running at once"
    )


if __name__ == "__main__":
    main()
