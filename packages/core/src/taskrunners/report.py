"""The run report: what a flow run did, where and when, with no server.

Every flow run records each of its task runs as it ends: its runner, where it ran
(host, process, thread, and what the runner adds: a Dask worker's address, a Ray node
and worker), when it was queued, started and ended, its attempts, its final state and
its exception's text. A finished flow run gives the record as `state.run` (call the
flow with `return_state=True`), a `FlowRun`:

    state = my_flow(return_state=True)
    state.run.save("run.json")                 # FlowRun.load("run.json") reads it back
    state.run.save_html("run.html")            # a timeline: one row per worker
    state.run.save_perfetto("run.trace.json")  # for ui.perfetto.dev or chrome://tracing
    state.run.to_opentelemetry()               # spans, with the extra [tracing]

`taskrunners report run.json -o run.html` turns a saved record into the timeline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._location import RunLocation

if TYPE_CHECKING:
    from ._record import Recording

__all__ = ["FORMAT", "FlowRun", "RunLocation", "TaskRunRecord"]

#: The `format` field of a saved record, and its version.
FORMAT = "taskrunners-run-report"
VERSION = 1


@dataclass(frozen=True)
class TaskRunRecord:
    """One task run of a flow run, as the report keeps it.

    Attributes:
        name: The run's name (`fetch-3`).
        task: The task's name.
        id: The run's id (a UUID, as text).
        runner: The runner it was handed to (`taskrunners_dask.DaskTaskRunner`).
        state: Its final state's type (`"COMPLETED"`, `"FAILED"`, `"CRASHED"`,
            `"CANCELLED"`).
        state_name: Its final state's name (`"Completed"`, `"UpstreamFailed"`, ...).
        attempts: How many attempts started (0 for a run that never started).
        queued: When it was handed to the runner (seconds since the epoch).
        start: When its first attempt started, or `None` if it never started.
        end: When it reached its final state.
        error: The text of its exception (`"ValueError: bad page"`), or `None`.
        where: Where it ran, or `None` if it never started (or its runner lost it).
        tags: The task's tags.
    """

    name: str
    task: str
    id: str
    runner: str
    state: str
    state_name: str
    attempts: int
    queued: float
    start: float | None
    end: float | None
    error: str | None = None
    where: RunLocation | None = None
    tags: tuple[str, ...] = ()

    @property
    def duration(self) -> float | None:
        """Seconds from the first attempt's start to the end, if it started."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    @property
    def worker(self) -> str:
        """The name of the worker it ran on (its timeline row); `"(did not run)"` for a
        run that never started."""
        return self.where.worker if self.where is not None else "(did not run)"

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready builtins."""
        data: dict[str, Any] = {
            name: getattr(self, name)
            for name in (
                "name",
                "task",
                "id",
                "runner",
                "state",
                "state_name",
                "attempts",
                "queued",
                "start",
                "end",
            )
        }
        data["error"] = self.error
        data["tags"] = list(self.tags)
        where = self.where
        data["where"] = (
            None
            if where is None
            else {
                "host": where.host,
                "pid": where.pid,
                "thread": where.thread,
                "thread_id": where.thread_id,
                "details": dict(where.details),
            }
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRunRecord:
        """The record that `to_dict()` gave.

        Raises:
            KeyError: A field is missing.
        """
        raw = data.get("where")
        where = None
        if raw is not None:
            where = RunLocation(
                raw["host"],
                int(raw["pid"]),
                raw["thread"],
                int(raw["thread_id"]),
                tuple(sorted((str(k), str(v)) for k, v in raw.get("details", {}).items())),
            )
        return cls(
            name=data["name"],
            task=data["task"],
            id=data["id"],
            runner=data["runner"],
            state=data["state"],
            state_name=data["state_name"],
            attempts=int(data["attempts"]),
            queued=float(data["queued"]),
            start=data["start"],
            end=data["end"],
            error=data.get("error"),
            where=where,
            tags=tuple(data.get("tags", ())),
        )


@dataclass
class FlowRun:
    """What one flow run did: its task runs, where and when each ran, its nested flow runs.

    Get it from a finished flow run's state (`my_flow(return_state=True).run`) or with
    `FlowRun.load(path)`.

    Attributes:
        name: The flow's name.
        id: The flow run's id (a UUID, as text).
        runner: The flow's runner (`taskrunners_threads.ThreadPoolTaskRunner`).
        start: When the flow run started (seconds since the epoch).
        end: When it ended.
        state: Its final state's type (`"COMPLETED"` or `"FAILED"`).
        error: The text of its exception, or `None`.
        task_runs: Its task runs, in the order they ended.
        subflows: The flow runs called inside it (in its body or in its tasks, in this
            process).
    """

    name: str
    id: str
    runner: str
    start: float
    end: float | None
    state: str
    error: str | None = None
    task_runs: list[TaskRunRecord] = field(default_factory=list)
    subflows: list[FlowRun] = field(default_factory=list)

    @classmethod
    def _from_recording(cls, recording: Recording) -> FlowRun:
        import uuid

        state = recording.state
        error = None
        if state is not None and state.exception is not None:
            error = f"{type(state.exception).__qualname__}: {state.exception}"
        runs = [
            TaskRunRecord(
                name=info.name,
                task=info.task_name,
                id=str(info.id),
                runner=recording.runner_name,
                state=kind.value,
                state_name=state_name,
                attempts=attempts,
                queued=info.created,
                start=info.start,
                end=info.end,
                error=text,
                where=_location(recording.location(info, where)),
                tags=tuple(sorted(info.tags)),
            )
            for info, kind, state_name, attempts, where, text in list(recording.entries)
        ]
        return cls(
            name=recording.flow_name,
            id=str(uuid.uuid4()),
            runner=recording.runner_name,
            start=recording.start,
            end=recording.end,
            state="RUNNING" if state is None else state.type.value,
            error=error,
            task_runs=runs,
            subflows=[child.flow_run() for child in list(recording.children)],
        )

    # -- reading ------------------------------------------------------------------------

    @property
    def duration(self) -> float | None:
        """Seconds from the flow run's start to its end."""
        return None if self.end is None else self.end - self.start

    def counts(self) -> dict[str, int]:
        """How many task runs ended in each state type."""
        counts: dict[str, int] = {}
        for run in self.task_runs:
            counts[run.state] = counts.get(run.state, 0) + 1
        return counts

    def workers(self) -> list[str]:
        """The workers that its task runs, and those of its nested flow runs, ran on (the
        timeline's rows), in order of first start."""
        first: dict[str, float] = {}
        for run in self.all_task_runs():
            moment = run.start if run.start is not None else (run.end or run.queued)
            worker = run.worker
            if worker not in first or moment < first[worker]:
                first[worker] = moment
        return sorted(first, key=lambda worker: first[worker])

    def all_task_runs(self) -> list[TaskRunRecord]:
        """Its task runs and those of its nested flow runs, at any depth."""
        runs = list(self.task_runs)
        for child in self.subflows:
            runs.extend(child.all_task_runs())
        return runs

    # -- JSON -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready builtins (what `save` writes, under `"flow_run"`)."""
        return {
            "name": self.name,
            "id": self.id,
            "runner": self.runner,
            "start": self.start,
            "end": self.end,
            "state": self.state,
            "error": self.error,
            "task_runs": [run.to_dict() for run in self.task_runs],
            "subflows": [child.to_dict() for child in self.subflows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlowRun:
        """The record that `to_dict()` gave.

        Raises:
            KeyError: A field is missing.
        """
        return cls(
            name=data["name"],
            id=data["id"],
            runner=data["runner"],
            start=float(data["start"]),
            end=data["end"],
            state=data["state"],
            error=data.get("error"),
            task_runs=[TaskRunRecord.from_dict(run) for run in data.get("task_runs", [])],
            subflows=[cls.from_dict(child) for child in data.get("subflows", [])],
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the record to `path` as JSON (read it back with `FlowRun.load`)."""
        document = {"format": FORMAT, "version": VERSION, "flow_run": self.to_dict()}
        with open(path, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FlowRun:
        """Read a record that `save` wrote.

        Raises:
            OSError: The file cannot be read.
            ValueError: The file is not a saved run report (or a newer version of one).
        """
        with open(path, encoding="utf-8") as file:
            try:
                document = json.load(file)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{os.fspath(path)!r} is not a run report: not JSON ({exc})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(
                f'{os.fspath(path)!r} is not a run report (no "format": {FORMAT!r}); save one with '
                "my_flow(return_state=True).run.save(path)"
            )
        if document.get("version", 0) > VERSION:
            raise ValueError(
                f"{os.fspath(path)!r} is a run report of version {document.get('version')}, newer than "
                f"this taskrunners reads ({VERSION}); upgrade taskrunners"
            )
        try:
            return cls.from_dict(document["flow_run"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{os.fspath(path)!r} is a damaged run report: {exc!r}") from None

    # -- exports ----------------------------------------------------------------------------

    def to_html(self) -> str:
        """A self-contained HTML page with the timeline: one row per worker, each run
        a bar coloured by its final state, details on hover. It needs no network."""
        from ._timeline import render

        return render(self)

    def save_html(self, path: str | os.PathLike[str]) -> None:
        """Write `to_html()` to `path`."""
        with open(path, "w", encoding="utf-8") as file:
            file.write(self.to_html())

    def to_perfetto(self) -> dict[str, Any]:
        """The run as a Chrome/Perfetto trace (Trace Event Format, JSON object form).

        One process per worker process, one thread per worker thread, named by metadata
        events; one complete (`"ph": "X"`) event per task run that started, and one for
        the flow run in a process of its own. Times are microseconds from the flow
        run's start. Open it in ui.perfetto.dev or chrome://tracing.
        """
        from ._trace import perfetto

        return perfetto(self)

    def save_perfetto(self, path: str | os.PathLike[str]) -> None:
        """Write `to_perfetto()` to `path` as JSON."""
        with open(path, "w", encoding="utf-8") as file:
            json.dump(self.to_perfetto(), file)

    def to_opentelemetry(self, tracer: Any = None) -> None:
        """Emit the run as OpenTelemetry spans: one span per flow run and task run, each
        task run's span a child of its flow run's, a nested flow run's a child of its
        parent's, with the recorded times and where each ran as attributes.

        The flow run's span is a child of the span current here, if any.

        Args:
            tracer: An `opentelemetry.trace.Tracer`; by default, the global tracer
                provider's tracer named `taskrunners`.

        Raises:
            ImportError: opentelemetry-api is not installed (`pip install
                "taskrunners-core[tracing]"`).
        """
        from ._trace import opentelemetry

        opentelemetry(self, tracer)

    def __repr__(self) -> str:
        counts = ", ".join(f"{count} {kind.lower()}" for kind, count in sorted(self.counts().items()))
        return f"<FlowRun {self.name!r} {self.state}: {len(self.task_runs)} task runs ({counts})>"


def _location(where: Any) -> RunLocation | None:
    return None if where is None else RunLocation(*where)
