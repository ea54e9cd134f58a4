"""Entry point of the `"executor"` runner (group `taskrunners.runners`)."""

from taskrunners.plugins import hookimpl


@hookimpl
def taskrunners_runner_class():  # type: ignore[no-untyped-def]
    from ._runner import ExecutorTaskRunner  # imported only when the runner is used

    return ExecutorTaskRunner
