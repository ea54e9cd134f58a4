"""Checked by `mypy --strict` in tests/test_typing.py, never run: what the public types promise."""

from __future__ import annotations

from taskrunners import (
    DoneAndNotDone,
    Future,
    FutureList,
    State,
    allow_failure,
    as_completed,
    flow,
    task,
    unmapped,
    wait,
)
from typing_extensions import assert_type


@task
def fetch(page: int) -> str:
    return f"page {page}"


@task
async def fetch_async(page: int) -> str:
    return f"page {page}"


@task
def combine(pages: list[str], separator: str = ", ") -> str:
    return separator.join(pages)


@task
def count(value: int) -> int:
    return value


@flow
def typed() -> None:
    one = fetch.submit(1)
    assert_type(one, Future[str])
    assert_type(one.result(), str)
    assert_type(one.state, State[str])
    assert_type(fetch_async.submit(1), Future[str])  # not a future of a coroutine
    assert_type(fetch_async.map([1, 2]), FutureList[str])
    pages = fetch.map(range(3))
    assert_type(pages, FutureList[str])
    assert_type(pages.result(), list[str])
    # A future (or a list of them) where the task takes the value.
    assert_type(combine.submit(pages), Future[str])
    assert_type(combine.submit(pages, separator=one), Future[str])
    assert_type(fetch.submit(1, wait_for=[one]), Future[str])
    assert_type(combine.map(unmapped(pages), [", ", "; "]), FutureList[str])
    assert_type(unmapped([1]), unmapped[list[int]])
    assert_type(allow_failure(one), allow_failure[Future[str]])
    numbers = [count.submit(i) for i in range(3)]
    assert_type(wait(numbers), DoneAndNotDone[int])
    for future in as_completed(numbers):
        assert_type(future, Future[int])
    # Futures of different types in one list.
    mixed = [one, count.submit(1)]
    for either in as_completed(mixed):
        either.result()
    done, not_done = wait(mixed)
    assert not not_done and len(done) == 2


@flow
async def typed_async() -> str:
    value = await fetch_async.submit(1)
    assert_type(value, str)
    return value
