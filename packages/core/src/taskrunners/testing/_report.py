"""`RunReportTests`: every runner records where and when each task run ran."""

from __future__ import annotations

import os
import socket

from taskrunners import Capability, TaskRunner

from . import tasks as t
from ._base import ConformanceBase

__all__ = ["RunReportTests"]


class RunReportTests(ConformanceBase):
    """The run report's record of each task run, the same on every runner."""

    def _declared(self, task_runner: TaskRunner) -> frozenset[Capability]:
        return frozenset(self.capabilities if self.capabilities is not None else task_runner.capabilities)

    def test_report_records_each_run_with_where_and_when(self, task_runner: TaskRunner) -> None:
        def body() -> list[int]:
            return [future.result() for future in t.identity.map(range(4))]

        state = self.run_flow(task_runner, body, return_state=True)
        assert state.result() == [0, 1, 2, 3]
        report = state.run
        assert len(report.task_runs) == 4
        assert report.runner.endswith(type(task_runner).__qualname__)
        for run in report.task_runs:
            assert run.task == "identity" and run.state == "COMPLETED" and run.attempts == 1
            assert run.runner == report.runner
            assert run.start is not None and run.end is not None
            assert report.start <= run.queued <= run.start <= run.end <= report.end
            where = run.where
            assert where is not None, f"{run.name} has no location: the runner dropped State.where"
            assert where.host == socket.gethostname()
            assert isinstance(where.pid, int) and where.pid > 0
            assert where.thread and isinstance(where.thread_id, int)
            if Capability.IN_PROCESS in self._declared(task_runner):
                assert where.pid == os.getpid()

    def test_report_records_failures_with_attempts_and_error_text(self, task_runner: TaskRunner) -> None:
        def body() -> None:
            future = t.fail.with_options(retries=1).submit("the page is gone")
            future.wait()
            assert future.state.is_failed()

        report = self.run_flow(task_runner, body, return_state=True).run
        (run,) = report.task_runs
        assert run.state == "FAILED"
        assert run.attempts == 2
        assert run.error is not None and "the page is gone" in run.error
        assert run.where is not None
