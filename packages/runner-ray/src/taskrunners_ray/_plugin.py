"""Entry point of the `"ray"` runner (group `taskrunners.runners`)."""

from taskrunners.plugins import hookimpl


@hookimpl
def taskrunners_runner_class():  # type: ignore[no-untyped-def]
    from ._runner import RayTaskRunner

    return RayTaskRunner
