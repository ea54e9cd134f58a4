"""The worker plugin that sends each run's report together with Dask's own message.

A worker sends its messages to the scheduler in batches, at most one batch every 2 ms.
A report sent from the task's thread just before the task returns would leave in a
batch of its own, and Dask's "task finished" message would then wait for the next
batch: 2 ms more on every link of a chain of runs. So the task's thread leaves its
report here (`pending`), and this plugin, called on the worker's event loop as the task
moves to "memory", sends it just before Dask queues "task finished": both leave in one
batch, the report first.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["NAME", "ReportPlugin", "pending"]

NAME = "taskrunners-dask-reports"

#: Dask key -> (topic, message) of runs whose task has returned on this worker.
pending: dict[Any, tuple[str, Any]] = {}

_RUNNING = frozenset({"executing", "long-running"})


class ReportPlugin(WorkerPlugin):
    """Sends the reports left in `pending` as their tasks finish."""

    name = NAME
    idempotent = True  # registered by every flow run: installed once per worker

    def setup(self, worker: Any) -> None:
        self.worker = worker

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if start not in _RUNNING:
            return
        report = pending.pop(key, None)
        if report is not None and finish == "memory":
            self.worker.log_event(*report)
