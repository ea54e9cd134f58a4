"""Entry point of the `"processes"` runner (group `taskrunners.runners`)."""

from __future__ import annotations

from taskrunners import TaskRunner
from taskrunners.plugins import hookimpl


@hookimpl
def taskrunners_runner_class() -> type[TaskRunner]:
    from ._runner import ProcessPoolTaskRunner

    return ProcessPoolTaskRunner
