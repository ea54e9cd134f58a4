"""The run report's HTML timeline in a real headless Chromium (driven by playwright).

Needs playwright (the root `test` extra) and a Chromium at /usr/bin/chromium (Debian's
`chromium` package; `.ci/run` installs it). `playwright install` is never run: its
browser download cannot be fetched here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from taskrunners import flow
from taskrunners.report import FlowRun
from taskrunners.testing import tasks as t

sys.path.insert(0, str(Path(__file__).parent))
from trace_format import validate_trace_event_format

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[test]')")

CHROMIUM = os.environ.get("TASKRUNNERS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (as .ci/run does)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def open_timeline(browser: Any, path: Path) -> tuple[Any, list[str]]:
    """The page of `path`, every request but the file itself refused, and its errors."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    requests: list[str] = []

    def only_the_file(route: Any) -> None:
        requests.append(route.request.url)
        if route.request.url == path.as_uri():
            route.continue_()
        else:
            route.abort()

    page.route("**/*", only_the_file)
    page.goto(path.as_uri())
    page.wait_for_selector(".run")
    assert requests == [path.as_uri()], f"the page asked for more than itself: {requests}"
    return page, errors


def check_hover(page: Any, run_name: str, *expected: str) -> None:
    tip = page.locator("#tip")
    assert not tip.is_visible()
    page.locator(f'.run[data-name="{run_name}"]').hover()
    assert tip.is_visible()
    text = tip.inner_text()
    for part in (run_name, *expected):
        assert part in text, f"{part!r} not in the hover details: {text!r}"
    page.mouse.move(0, 0)
    assert not tip.is_visible()


def test_threads_timeline_shows_rows_runs_and_details(browser: Any, tmp_path: Path) -> None:
    from taskrunners_threads import ThreadPoolTaskRunner

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def two_lanes(directory: str) -> None:
        pair = [t.meet.submit(directory, "a", "b"), t.meet.submit(directory, "b", "a")]
        failed = t.fail.submit("the page is gone")
        for future in [*pair, failed]:
            future.wait()
        assert failed.state.is_failed()

    report = two_lanes(str(tmp_path), return_state=True).run
    report.save_html(tmp_path / "run.html")
    page, errors = open_timeline(browser, tmp_path / "run.html")
    assert page.locator(".row").count() == len(report.workers()) == 2
    assert page.locator(".run").count() == 3
    assert page.locator('.run[data-state="FAILED"]').count() == 1
    failed = next(run for run in report.task_runs if run.state == "FAILED")
    check_hover(page, failed.name, "FAILED", "the page is gone", str(os.getpid()))
    colours = {
        page.locator(f'.run[data-state="{kind}"]').first.evaluate("e => getComputedStyle(e).backgroundColor")
        for kind in ("COMPLETED", "FAILED")
    }
    assert len(colours) == 2, "completed and failed runs share a colour"
    assert errors == []


@pytest.mark.timeout(300)
def test_dask_flow_on_two_workers_shows_two_worker_rows(browser: Any, tmp_path: Path) -> None:
    pytest.importorskip("taskrunners_dask", reason="needs taskrunners-dask")
    from taskrunners_dask import DaskTaskRunner

    runner = DaskTaskRunner(
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}
    )

    @flow(task_runner=runner)
    def across(directory: str) -> list[Any]:
        # Two runs that wait for each other: with one thread per worker, they run on both.
        pair = [t.meet.submit(directory, "a", "b"), t.meet.submit(directory, "b", "a")]
        rest = t.identity.map(range(4))
        return [future.result() for future in [*pair, *rest]]

    state = across(str(tmp_path), return_state=True)
    assert state.result() == [True, True, 0, 1, 2, 3]
    report = state.run
    report.save(tmp_path / "run.json")
    addresses = {run.where.detail("dask_worker") for run in report.task_runs if run.where}
    assert len(addresses) == 2 and all(a and a.startswith("tcp://127.0.0.1:") for a in addresses)
    assert len({run.where.pid for run in report.task_runs if run.where}) == 2
    assert os.getpid() not in {run.where.pid for run in report.task_runs if run.where}

    # The timeline, from the saved record through the command line's code path.
    FlowRun.load(tmp_path / "run.json").save_html(tmp_path / "run.html")
    page, errors = open_timeline(browser, tmp_path / "run.html")
    rows = page.locator(".row")
    assert rows.count() == 2
    assert {rows.nth(i).get_attribute("data-worker") for i in range(2)} == {f"dask {a}" for a in addresses}
    assert page.locator(".run").count() == 6
    some = report.task_runs[0]
    check_hover(page, some.name, "dask_worker", str(some.where.pid))  # type: ignore[union-attr]
    assert errors == []

    # The Perfetto trace of the same run: a process per worker, an event per run.
    trace = report.to_perfetto()
    validate_trace_event_format(trace)
    json.loads(json.dumps(trace))
    names = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    assert sum(1 for name in names if name.startswith("dask tcp://127.0.0.1:")) == 2
    assert sorted(e["name"] for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] != "flow") == sorted(
        run.name for run in report.task_runs
    )
