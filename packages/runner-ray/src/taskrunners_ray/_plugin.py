"""Entry point of the `"ray"` runner (group `taskrunners.runners`)."""

from taskrunners import TaskRunner
from taskrunners.plugins import hookimpl


@hookimpl
def taskrunners_runner_class() -> type[TaskRunner]:
    from ._runner import RayTaskRunner

    return RayTaskRunner
