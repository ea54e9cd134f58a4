"""The run report as traces: Chrome/Perfetto trace JSON and OpenTelemetry spans."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report import FlowRun, TaskRunRecord

__all__ = ["opentelemetry", "perfetto"]


def _args(run: TaskRunRecord) -> dict[str, Any]:
    args: dict[str, Any] = {
        "task": run.task,
        "run id": run.id,
        "state": run.state_name,
        "attempts": run.attempts,
        "queued for (ms)": None if run.start is None else round((run.start - run.queued) * 1000, 3),
    }
    if run.error:
        args["error"] = run.error
    if run.where is not None:
        args.update(
            host=run.where.host, pid=run.where.pid, thread=run.where.thread, **dict(run.where.details)
        )
    return args


def perfetto(flow_run: FlowRun) -> dict[str, Any]:
    """The Trace Event Format document of `flow_run` (see `FlowRun.to_perfetto`)."""
    origin = flow_run.start
    events: list[dict[str, Any]] = []
    processes: dict[tuple[str, int, str | None], int] = {}
    threads: dict[tuple[int, int, str], int] = {}

    def us(moment: float) -> float:
        return round((moment - origin) * 1e6, 3)

    def process_of(run: TaskRunRecord) -> tuple[int, int]:
        where = run.where
        if where is None:
            key: tuple[str, int, str | None] = ("", 0, None)
            label = "did not run"
        else:
            worker = where.detail("worker")
            key = (where.host, where.pid, worker)
            label = (
                f"{worker} (pid {where.pid} on {where.host})"
                if worker
                else f"pid {where.pid} on {where.host}"
            )
        pid = processes.get(key)
        if pid is None:
            pid = processes[key] = len(processes) + 2  # 1 is the flow runs'
            events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": label}})
            events.append(
                {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
            )
        thread_key = (pid, where.thread_id, where.thread) if where is not None else (pid, 0, "")
        tid = threads.get(thread_key)
        if tid is None:
            tid = threads[thread_key] = len(threads) + 1
            name = where.thread if where is not None else "never started"
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
        return pid, tid

    events.append({"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "flow runs"}})
    events.append({"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "flow runs"}})

    def add_flow(run: FlowRun) -> None:
        end = (
            run.end
            if run.end is not None
            else max((r.end or r.queued for r in run.task_runs), default=run.start)
        )
        flow_args: dict[str, Any] = {"state": run.state, "runner": run.runner, "flow run id": run.id}
        if run.error:
            flow_args["error"] = run.error
        events.append(
            {
                "ph": "X",
                "name": f"flow {run.name}",
                "cat": "flow",
                "pid": 1,
                "tid": 1,
                "ts": us(run.start),
                "dur": max(round((end - run.start) * 1e6, 3), 0.0),
                "args": flow_args,
            }
        )
        for task_run in run.task_runs:
            pid, tid = process_of(task_run)
            start = task_run.start if task_run.start is not None else task_run.end or task_run.queued
            end_at = task_run.end if task_run.end is not None else start
            events.append(
                {
                    "ph": "X",
                    "name": task_run.name,
                    "cat": task_run.state.lower(),
                    "pid": pid,
                    "tid": tid,
                    "ts": us(start),
                    "dur": max(round((end_at - start) * 1e6, 3), 0.0),
                    "args": _args(task_run),
                }
            )
        for child in run.subflows:
            add_flow(child)

    add_flow(flow_run)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"flow": flow_run.name, "flow run id": flow_run.id, "start (epoch s)": flow_run.start},
    }


def opentelemetry(flow_run: FlowRun, tracer: Any = None) -> None:
    """Emit `flow_run` as OpenTelemetry spans (see `FlowRun.to_opentelemetry`).

    Raises:
        ImportError: opentelemetry-api is not installed.
    """
    try:
        from opentelemetry import trace
    except ImportError:
        raise ImportError(
            'FlowRun.to_opentelemetry needs the OpenTelemetry API: pip install "taskrunners-core[tracing]" '
            "(and an SDK with an exporter, such as opentelemetry-sdk, to send the spans somewhere)"
        ) from None
    if tracer is None:
        tracer = trace.get_tracer("taskrunners")
    _emit_flow(trace, tracer, flow_run, None)


def _ns(moment: float) -> int:
    return int(moment * 1e9)


def _emit_flow(trace: Any, tracer: Any, flow_run: FlowRun, context: Any) -> None:
    attributes: dict[str, Any] = {
        "taskrunners.flow": flow_run.name,
        "taskrunners.flow_run.id": flow_run.id,
        "taskrunners.runner": flow_run.runner,
        "taskrunners.state": flow_run.state,
    }
    span = tracer.start_span(
        f"flow {flow_run.name}", context=context, start_time=_ns(flow_run.start), attributes=attributes
    )
    if flow_run.error:
        span.set_status(trace.Status(trace.StatusCode.ERROR, flow_run.error))
    inner = trace.set_span_in_context(span)
    for run in flow_run.task_runs:
        start = run.start if run.start is not None else run.end or run.queued
        run_attributes: dict[str, Any] = {
            "taskrunners.task": run.task,
            "taskrunners.task_run.id": run.id,
            "taskrunners.task_run.name": run.name,
            "taskrunners.state": run.state,
            "taskrunners.state_name": run.state_name,
            "taskrunners.attempts": run.attempts,
            "taskrunners.queued": run.queued,
        }
        if run.where is not None:
            run_attributes.update(
                {
                    "host.name": run.where.host,
                    "process.pid": run.where.pid,
                    "thread.name": run.where.thread,
                    "thread.id": run.where.thread_id,
                    **{f"taskrunners.{key}": value for key, value in run.where.details},
                }
            )
        child = tracer.start_span(run.name, context=inner, start_time=_ns(start), attributes=run_attributes)
        if run.error:
            child.set_status(trace.Status(trace.StatusCode.ERROR, run.error))
        child.end(end_time=_ns(run.end if run.end is not None else start))
    for subflow in flow_run.subflows:
        _emit_flow(trace, tracer, subflow, inner)
    span.end(end_time=_ns(flow_run.end if flow_run.end is not None else flow_run.start))
