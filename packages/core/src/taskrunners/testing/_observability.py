"""Conformance: what a runner must carry home so that people can see what ran.

- Records made through `get_run_logger()`, and `print` with `log_prints`, in a task
  run reach the flow's process and its handlers, in order, named after their run, and
  also when the run raises.
- The engine's lines (a retry, a final failure with "Retries are exhausted") arrive.
- A failed run's traceback keeps the task's own frames, with file names and source
  lines, also for a task shipped by value (defined outside the import system), and
  shows none of the engine's frames.

The tasks are module-level here, so that runners pickle them by reference.
"""

from __future__ import annotations

import logging
import traceback
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskrunners import State, TaskRunner, flow, get_run_logger, task
from taskrunners.lowlevel import current_flow_run

from ._base import ConformanceBase

__all__ = ["ObservabilityTests"]


class ObservabilityError(Exception):
    """The exception the suite's failing tasks raise."""


@task
def log_steps(n: int, steps: int = 3) -> int:
    """Log `steps` lines through the run logger, in order."""
    logger = get_run_logger()
    for step in range(steps):
        logger.info("run %d step %d", n, step)
    return n


@task
def print_lines(n: int) -> int:
    """Print two lines (with `log_prints` inherited from the flow, they are records)."""
    print("printed", n, "first")
    print("printed", n, "second")
    return n


@task(log_prints=False)
def print_not_logged(n: int) -> int:
    """Print with `log_prints=False`: never a record, whatever the flow says."""
    print("not a record", n)
    return n


@task(retries=1)
def log_then_fail(n: int) -> int:
    """Log a line, then raise (on each of its two attempts)."""
    get_run_logger().warning("about to fail %d", n)
    _raise_from_helper(f"failed {n}")
    return n


@task
def fail_in_helper(message: str) -> None:
    """Raise from a helper function, so that the traceback has two frames of user code."""
    _raise_from_helper(message)


def _raise_from_helper(message: str) -> None:
    raise ObservabilityError(message)  # the line a traceback must show


_DYNAMIC_SOURCE = """
from taskrunners import task


@task
def dynamic_fail(message):
    raise ValueError(message)  # a line of a module outside the import system
"""


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, task_run_name: str) -> list[str]:
        return [r.getMessage() for r in self.records if getattr(r, "task_run_name", None) == task_run_name]


class ObservabilityTests(ConformanceBase):
    """Run logs and tracebacks, on every runner (mixed into `TaskRunnerTests`)."""

    @pytest.fixture
    def run_records(self) -> Iterator[_Records]:
        """The records that reach the `taskrunners` logger in this process, at DEBUG."""
        logger = logging.getLogger("taskrunners")
        handler = _Records()
        level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        try:
            yield handler
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)

    def _run_printing_flow(self, task_runner: TaskRunner, body: Any) -> Any:
        from ._base import run_with_deadline

        return run_with_deadline(flow(task_runner=task_runner, log_prints=True)(body), self.deadline)

    # -- run logs -----------------------------------------------------------------------

    def test_run_logger_records_reach_the_flows_process_in_order(
        self, task_runner: TaskRunner, run_records: _Records
    ) -> None:
        seen: dict[str, Any] = {}

        def body() -> list[str]:
            flow_run = current_flow_run()
            assert flow_run is not None
            seen["flow_run"] = flow_run.name
            futures = log_steps.map([0, 1, 2])
            futures.wait()
            return [f.task_run.name for f in futures]

        names = self.run_flow(task_runner, body)
        for n, name in enumerate(names):
            logged = [m for m in run_records.messages(name) if m.startswith("run ")]
            assert logged == [f"run {n} step {step}" for step in range(3)], run_records.messages(name)
            record = next(r for r in run_records.records if r.getMessage() == f"run {n} step 0")
            assert record.name == "taskrunners.task_runs"
            assert record.flow_run_name == seen["flow_run"]  # type: ignore[attr-defined]
            assert record.task_run_id  # type: ignore[attr-defined]
            assert record.worker  # type: ignore[attr-defined]
            assert record.levelno == logging.INFO

    def test_log_prints_sends_prints_to_the_run_logger(
        self, task_runner: TaskRunner, run_records: _Records
    ) -> None:
        def body() -> list[str]:
            futures = print_lines.map([0, 1])
            quiet = print_not_logged.submit(7)
            futures.wait()
            quiet.wait()
            return [f.task_run.name for f in futures] + [quiet.task_run.name]

        *names, quiet = self._run_printing_flow(task_runner, body)
        for n, name in enumerate(names):
            printed = [m for m in run_records.messages(name) if m.startswith("printed")]
            assert printed == [f"printed {n} first", f"printed {n} second"]
        assert not [m for m in run_records.messages(quiet) if "not a record" in m]

    def test_records_of_a_failing_run_arrive_with_the_engines_lines(
        self, task_runner: TaskRunner, run_records: _Records
    ) -> None:
        def body() -> str:
            future = log_then_fail.submit(5)
            future.wait()
            assert future.state.is_failed()
            return future.task_run.name

        name = self.run_flow(task_runner, body)
        messages = run_records.messages(name)
        assert messages.count("about to fail 5") == 2, messages
        assert any("Retry 1/1" in m for m in messages), messages
        final = [
            r
            for r in run_records.records
            if getattr(r, "task_run_name", None) == name and r.levelno == logging.ERROR
        ]
        assert any("Retries are exhausted" in r.getMessage() for r in final), messages
        assert messages.index("about to fail 5") < next(i for i, m in enumerate(messages) if "Retry 1/1" in m)

    # -- tracebacks ---------------------------------------------------------------------

    def test_traceback_keeps_the_tasks_frames_and_drops_the_engines(self, task_runner: TaskRunner) -> None:
        def body() -> BaseException:
            future = fail_in_helper.submit("from the helper")
            with pytest.raises(ObservabilityError) as info:
                future.result()
            return info.value

        error = self.run_flow(task_runner, body)
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        here = __file__.rsplit(".", 1)[0]  # .py, or a compiled module's
        assert here in text
        assert "in fail_in_helper" in text and "in _raise_from_helper" in text
        assert "raise ObservabilityError(message)  # the line a traceback must show" in text
        _assert_no_internal_frames(text)

    def test_traceback_of_a_task_shipped_by_value_names_its_file(
        self, task_runner: TaskRunner, tmp_path: Path
    ) -> None:
        source = tmp_path / "observability_dynamic.py"
        source.write_text(_DYNAMIC_SOURCE)
        module = types.ModuleType("observability_dynamic")  # no __spec__: shipped by value
        module.__file__ = str(source)
        exec(compile(_DYNAMIC_SOURCE, str(source), "exec"), module.__dict__)
        dynamic_fail = module.dynamic_fail

        def body() -> BaseException | None:
            future = dynamic_fail.submit("by value")
            future.wait()
            state: State[Any] = future.state
            return state.exception

        error = self.run_flow(task_runner, body)
        assert isinstance(error, ValueError)
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        assert str(source) in text and "<dynamic-code>" not in text
        assert "raise ValueError(message)  # a line of a module outside the import system" in text
        _assert_no_internal_frames(text)


def _assert_no_internal_frames(text: str) -> None:
    """No frame of the engine or of a runner package: the frames of `Future.result`
    and `State.result`, where the exception is raised again, may stay."""
    frames = [
        line.strip().replace("\\", "/") for line in text.splitlines() if line.strip().startswith('File "')
    ]
    internal = [
        frame
        for frame in frames
        if ("/taskrunners/_" in frame and "/_futures.py" not in frame and "/_states.py" not in frame)
        or "/taskrunners_" in frame
    ]
    assert not internal, "\n".join(internal)
