"""`.map()` given a future of a failed run as a broadcast (non-iterable) argument.

`.submit()` handles such a future by ending the downstream run UpstreamFailed, or,
through `allow_failure`, by passing the exception as the value. `.map()` should do the
same for every run it makes, instead of raising the upstream's exception itself.
"""

from __future__ import annotations

import pytest

from taskrunners import UpstreamFailedError, allow_failure, flow, task, unmapped


@task
def boom() -> int:
    raise ValueError("boom")


@task
def pair(x: int, y: object) -> tuple[int, object]:
    return x, y




@flow
def map_with_allowed_failure() -> tuple[ValueError, list[tuple[int, object]]]:
    failed = boom.submit()
    runs = pair.map([1, 2], allow_failure(failed))
    return failed.result(raise_on_failure=False), runs.result()


@flow
def map_with_failed_upstream() -> list[BaseException]:
    failed = boom.submit()
    runs = pair.map([1, 2], failed)
    return [run.result(raise_on_failure=False) for run in runs]


@flow
def map_with_unmapped_failed_upstream() -> list[BaseException]:
    failed = boom.submit()
    runs = pair.map([1, 2], unmapped(failed))
    return [run.result(raise_on_failure=False) for run in runs]


def test_unmapped_failed_upstream_fails_every_run_upstream_failed() -> None:
    errors = map_with_unmapped_failed_upstream()
    assert len(errors) == 2
    assert all(isinstance(error, UpstreamFailedError) for error in errors)


def test_allow_failure_of_failed_upstream_passes_the_exception_to_every_run() -> None:
    error, results = map_with_allowed_failure()
    assert results == [(1, error), (2, error)]


def test_failed_upstream_fails_every_run_upstream_failed() -> None:
    errors = map_with_failed_upstream()
    assert len(errors) == 2
    assert all(isinstance(error, UpstreamFailedError) for error in errors)
