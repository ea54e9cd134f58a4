"""The run report: what a finished flow run records, and its JSON, Perfetto, OpenTelemetry and CLI forms."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from taskrunners import State, StateType, flow, task
from taskrunners.lowlevel import RunLocation, add_location_hook
from taskrunners.report import FlowRun, TaskRunRecord
from taskrunners_threads import ThreadPoolTaskRunner

sys.path.insert(0, str(Path(__file__).parent))
from trace_format import validate_trace_event_format


@task(retries=1)
def page(number: int) -> int:
    if number == 3:
        raise ValueError(f"page {number} is gone")
    return number


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def inner() -> int:
    return total.submit([1, 2]).result()


@flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
def crawl() -> int:
    pages = page.map(range(5))
    good = [f for f in pages if f.wait() is None and f.state.is_completed()]
    total.submit(good).result()
    return inner()


@pytest.fixture(scope="module")
def report() -> FlowRun:
    state = crawl(return_state=True)
    assert state.is_completed() and state.result() == 3
    return state.run


def test_every_task_run_is_recorded_with_where_when_attempts_and_outcome(report: FlowRun) -> None:
    assert report.name == "crawl" and report.state == "COMPLETED"
    assert report.runner == "taskrunners_threads.ThreadPoolTaskRunner"
    assert sorted(run.task for run in report.task_runs) == ["page"] * 5 + ["total"]
    failed = [run for run in report.task_runs if run.state == "FAILED"]
    assert len(failed) == 1
    assert failed[0].attempts == 2 and failed[0].error == "ValueError: page 3 is gone"
    assert report.counts() == {"COMPLETED": 5, "FAILED": 1}
    threads = {t.name for t in threading.enumerate()}
    for run in report.task_runs:
        assert report.start <= run.queued <= run.start <= run.end <= report.end  # type: ignore[operator]
        assert run.where is not None and run.where.pid == os.getpid()
        assert run.where.thread.startswith("taskrunners-threads") or run.where.thread in threads


def test_nested_flow_runs_are_recorded_under_their_parent(report: FlowRun) -> None:
    (child,) = report.subflows
    assert child.name == "inner" and [run.task for run in child.task_runs] == ["total"]
    assert report.start <= child.start <= child.end <= report.end  # type: ignore[operator]
    assert len(report.all_task_runs()) == 7


def test_a_failed_flow_run_has_its_report_and_error_text() -> None:
    @flow
    def broken() -> None:
        page.submit(1).result()
        raise RuntimeError("no more pages")

    state = broken(return_state=True)
    assert state.is_failed()
    assert state.run.state == "FAILED" and state.run.error == "RuntimeError: no more pages"
    assert [run.state for run in state.run.task_runs] == ["COMPLETED"]


def test_a_runner_location_hook_adds_details_and_names_the_worker() -> None:
    def hook() -> dict[str, str]:
        return {"worker": f"bench {threading.current_thread().name}", "rack": "r7"}

    add_location_hook(hook)
    add_location_hook(hook)  # once per hook
    try:

        @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
        def one() -> int:
            return page.submit(1).result()

        (run,) = one(return_state=True).run.task_runs
    finally:
        from taskrunners import _location

        _location._hooks.remove(hook)
        _location._generation += 1
    assert run.where is not None and run.where.detail("rack") == "r7"
    assert run.worker == f"bench {run.where.thread}"


def test_a_failing_location_hook_never_fails_a_run() -> None:
    def broken() -> dict[str, str]:
        raise OSError("no idea where I am")

    add_location_hook(broken)
    try:

        @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
        def one() -> int:
            return page.submit(2).result()

        state = one(return_state=True)
    finally:
        from taskrunners import _location

        _location._hooks.remove(broken)
        _location._generation += 1
    assert state.result() == 2 and state.run.task_runs[0].where is not None


def test_where_travels_with_a_pickled_state() -> None:
    where = RunLocation("host-a", 12, "MainThread", 99, (("dask_worker", "tcp://10.0.0.1:1"),))
    state = State(StateType.COMPLETED, data=1, where=where)
    copy = pickle.loads(pickle.dumps(state))
    assert copy.where == where and copy.result() == 1
    assert pickle.loads(pickle.dumps(State(StateType.COMPLETED, data=1))).where is None


def test_save_and_load_give_the_same_record(report: FlowRun, tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    report.save(path)
    document = json.loads(path.read_text())
    assert document["format"] == "taskrunners-run-report" and document["version"] == 1
    assert FlowRun.load(path) == report


def test_load_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text('{"traceEvents": []}')
    with pytest.raises(ValueError, match="is not a run report"):
        FlowRun.load(tmp_path / "other.json")
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(ValueError, match="not JSON"):
        FlowRun.load(tmp_path / "junk.json")


def test_perfetto_trace_has_a_thread_per_worker_and_an_event_per_run(report: FlowRun) -> None:
    trace = report.to_perfetto()
    validate_trace_event_format(trace)
    runs = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] != "flow"]
    assert sorted(e["name"] for e in runs) == sorted(r.name for r in report.all_task_runs())
    flows = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] == "flow"]
    assert [e["name"] for e in flows] == ["flow crawl", "flow inner"]
    thread_names = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert {r.where.thread for r in report.all_task_runs() if r.where} <= thread_names
    failed = next(e for e in runs if e["cat"] == "failed")
    assert failed["args"]["error"] == "ValueError: page 3 is gone" and failed["args"]["attempts"] == 2


def test_opentelemetry_spans_one_per_run_linked_to_their_flow_run(report: FlowRun) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the root test extra)")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    report.to_opentelemetry(provider.get_tracer("test"))
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert len(spans) == 2 + 7
    root, child = spans["flow crawl"], spans["flow inner"]
    assert root.parent is None and child.parent.span_id == root.context.span_id
    for run in report.task_runs:
        span = spans[run.name]
        assert span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id
        assert span.start_time == int(run.start * 1e9) and span.end_time == int(run.end * 1e9)  # type: ignore[operator]
        assert span.attributes["taskrunners.state"] == run.state
        assert span.attributes["process.pid"] == os.getpid()
    (inner_run,) = report.subflows[0].task_runs
    assert spans[inner_run.name].parent.span_id == child.context.span_id
    failed = next(run for run in report.task_runs if run.state == "FAILED")
    assert spans[failed.name].status.status_code is StatusCode.ERROR


def test_cli_writes_the_timeline_and_the_trace(report: FlowRun, tmp_path: Path) -> None:
    report.save(tmp_path / "run.json")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskrunners",
            "report",
            str(tmp_path / "run.json"),
            "-o",
            str(tmp_path / "run.html"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    page_text = (tmp_path / "run.html").read_text()
    assert page_text.startswith("<!DOCTYPE html>") and "flow crawl" in page_text
    assert "http://" not in page_text and "https://" not in page_text  # nothing fetched from a network
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskrunners",
            "report",
            str(tmp_path / "run.json"),
            "-o",
            str(tmp_path / "t.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    validate_trace_event_format(json.loads((tmp_path / "t.json").read_text()))


def test_cli_says_what_is_wrong_with_a_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskrunners", "report", str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot read" in done.stderr and "missing.json" in done.stderr


def test_records_round_trip_through_dicts() -> None:
    record = TaskRunRecord(
        name="a-1",
        task="a",
        id="x",
        runner="r",
        state="CRASHED",
        state_name="Crashed",
        attempts=0,
        queued=1.0,
        start=None,
        end=2.0,
        error="TaskRunCrashed: lost",
        where=None,
    )
    assert TaskRunRecord.from_dict(record.to_dict()) == record
    assert record.duration is None and record.worker == "(did not run)"


def test_an_async_flow_run_has_its_report_too() -> None:
    import asyncio

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def gather() -> list[int]:
        return [await future for future in page.map([1, 2])]

    state = asyncio.run(gather(return_state=True))
    assert state.result() == [1, 2]
    assert sorted(run.state for run in state.run.task_runs) == ["COMPLETED", "COMPLETED"]
    assert state.run.end is not None and state.run.end >= max(run.end for run in state.run.task_runs)  # type: ignore[type-var]
