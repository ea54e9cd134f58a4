"""Entry point of the `"dask"` runner (group `taskrunners.runners`)."""

from taskrunners.plugins import hookimpl


@hookimpl
def taskrunners_runner_class():  # type: ignore[no-untyped-def]
    from ._runner import DaskTaskRunner

    return DaskTaskRunner
