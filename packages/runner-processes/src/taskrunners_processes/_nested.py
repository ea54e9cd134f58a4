"""The runner that takes the runs a task submits from inside a worker process."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from taskrunners import Future, Task
from taskrunners_threads import ThreadPoolTaskRunner


class NestedRunner(ThreadPoolTaskRunner):
    """A `ThreadPoolTaskRunner` that counts the runs handed to it, so that the worker
    waits for them after a run only when the run submitted some.

    Attributes:
        submitted: Runs submitted since the worker last reset it to 0.
    """

    submitted = 0

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        self.submitted += 1
        return super().submit(task, parameters, wait_for)
