"""Task.map: how arguments pair up into runs, and what is refused before anything runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from taskrunners import (
    FutureList,
    MappingError,
    MappingLengthMismatch,
    MappingMissingIterable,
    NoActiveFlowError,
    StateType,
    UpstreamFailedError,
    allow_failure,
    flow,
    task,
    unmapped,
)
from taskrunners_threads import ThreadPoolTaskRunner

RUNNER = ThreadPoolTaskRunner(max_workers=4)
LONG = 10


@task
def echo(*args: Any, **kwargs: Any) -> tuple:
    return (args, kwargs)


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def pair(x: Any, y: Any) -> tuple:
    return (x, y)


@task
def fail_on(value: int, bad: int) -> int:
    if value == bad:
        raise ValueError(f"bad value {value}")
    return value


def in_flow(body: Callable[[], Any]) -> Any:
    """Run `body` as a flow on a thread runner and return what it returns.

    The value travels in a dict: a flow that returned a failed State (or a list of
    States with a failed one) directly would end FAILED in it, as in Prefect."""

    @flow(task_runner=RUNNER, name=getattr(body, "__name__", "body"))
    def boxed() -> dict:
        return {"value": body()}

    return boxed()["value"]


def test_map_returns_one_future_per_element_in_input_order() -> None:
    def body() -> tuple:
        futures = add.map([1, 2, 3], [10, 20, 30])
        return type(futures), len(futures), futures.result(timeout=LONG)

    kind, count, values = in_flow(body)
    assert issubclass(kind, FutureList)
    assert count == 3
    assert values == [11, 22, 33]


def test_map_zips_several_iterables() -> None:
    def body() -> list:
        return echo.map([1, 2], ["a", "b"], [None, True]).result(timeout=LONG)

    assert in_flow(body) == [((1, "a", None), {}), ((2, "b", True), {})]


@pytest.mark.parametrize("constant", ["text", b"bytes", 7, 2.5, None], ids=repr)
def test_str_bytes_and_non_iterables_go_whole_to_every_run(constant: Any) -> None:
    def body() -> list:
        return pair.map([1, 2, 3], constant).result(timeout=LONG)

    assert in_flow(body) == [(1, constant), (2, constant), (3, constant)]


def test_unmapped_passes_a_list_whole_to_every_run_whatever_its_length() -> None:
    shared = [9, 8, 7, 6, 5]

    def body() -> list:
        return pair.map([1, 2], unmapped(shared)).result(timeout=LONG)

    assert in_flow(body) == [(1, shared), (2, shared)]


def test_unmapped_is_an_endless_sequence_of_its_value() -> None:
    value = [1, 2]
    wrapped = unmapped(value)
    assert wrapped[0] is value
    assert wrapped[10**6] is value


def test_a_dict_is_mapped_over_its_keys() -> None:
    def body() -> list:
        return pair.map({"a": 1, "b": 2}, [10, 20]).result(timeout=LONG)

    assert in_flow(body) == [("a", 10), ("b", 20)]


def test_generators_and_tuples_are_mapped_over() -> None:
    def body() -> list:
        return add.map((n for n in range(3)), (100, 200, 300)).result(timeout=LONG)

    assert in_flow(body) == [100, 201, 302]


def test_an_empty_iterable_makes_no_runs() -> None:
    def body() -> list:
        return add.map([], unmapped(1)).result(timeout=LONG)

    assert in_flow(body) == []


def test_a_future_whose_result_is_a_list_is_mapped_over() -> None:
    @task
    def make_list() -> list:
        return [1, 2, 3]

    def body() -> list:
        return add.map(make_list.submit(), 10).result(timeout=LONG)

    assert in_flow(body) == [11, 12, 13]


def test_a_future_whose_result_is_not_iterable_goes_whole_to_every_run() -> None:
    @task
    def make_text() -> str:
        return "shared"

    def body() -> list:
        return pair.map([1, 2], make_text.submit()).result(timeout=LONG)

    assert in_flow(body) == [(1, "shared"), (2, "shared")]


def test_the_futures_of_a_previous_map_are_mapped_over() -> None:
    def body() -> list:
        first = add.map([1, 2, 3], 1)
        return add.map(first, 100).result(timeout=LONG)

    assert in_flow(body) == [102, 103, 104]


def test_kwargs_values_are_mapped_when_iterable_and_broadcast_otherwise() -> None:
    def body() -> list:
        return echo.map([1, 2], k=["x", "y"], flag=True, text="abc", whole=unmapped([0])).result(timeout=LONG)

    assert in_flow(body) == [
        ((1,), {"k": "x", "flag": True, "text": "abc", "whole": [0]}),
        ((2,), {"k": "y", "flag": True, "text": "abc", "whole": [0]}),
    ]


def test_parameter_defaults_are_not_mapped_over() -> None:
    @task
    def with_default(x: int, extra: tuple = (1, 2, 3, 4, 5)) -> tuple:
        return (x, extra)

    def body() -> list:
        return with_default.map([1, 2]).result(timeout=LONG)

    assert in_flow(body) == [(1, (1, 2, 3, 4, 5)), (2, (1, 2, 3, 4, 5))]


def _refused_map(call: Callable[[Callable[..., Any]], Any]) -> tuple[BaseException, list]:
    """Call `call(record.map)` in a flow; return its error and what ran by the flow's end."""
    ran: list = []

    @task
    def record(*args: Any, **kwargs: Any) -> None:
        ran.append((args, kwargs))

    def body() -> BaseException:
        with pytest.raises(MappingError) as caught:
            call(record.map)
        return caught.value

    # The flow waits for every run it submitted, so `ran` is complete when it returns.
    error = in_flow(body)
    return error, ran


def test_a_length_mismatch_raises_before_anything_runs() -> None:
    error, ran = _refused_map(lambda m: m([1, 2, 3], [1, 2], k=[5, 6, 7]))
    assert isinstance(error, MappingLengthMismatch)
    assert isinstance(error, ValueError)
    assert "3 items" in str(error) and "2 items" in str(error)
    assert "unmapped" in str(error)
    assert ran == []


def test_a_kwargs_length_mismatch_names_the_keyword() -> None:
    error, ran = _refused_map(lambda m: m([1, 2], extra=[1, 2, 3]))
    assert isinstance(error, MappingLengthMismatch)
    assert "extra" in str(error)
    assert ran == []


def test_no_iterable_argument_raises_before_anything_runs() -> None:
    error, ran = _refused_map(lambda m: m(1, "abc", b"x", unmapped([1, 2])))
    assert isinstance(error, MappingMissingIterable)
    assert "record.submit()" in str(error)
    assert ran == []


def test_no_argument_at_all_raises_missing_iterable() -> None:
    error, ran = _refused_map(lambda m: m())
    assert isinstance(error, MappingMissingIterable)
    assert ran == []


def test_map_outside_a_flow_raises_no_active_flow_error() -> None:
    with pytest.raises(NoActiveFlowError, match=r"add\.map\(\)"):
        add.map([1], [2])


def test_wait_for_applies_to_every_mapped_run() -> None:
    @task
    def held(gate: threading.Event) -> str:
        assert gate.wait(LONG)
        return "upstream"

    def body() -> tuple:
        gate = threading.Event()
        upstream = held.submit(gate)
        children = add.map([1, 2, 3], 1, wait_for=[upstream])
        try:
            while_blocked = [child.state.type for child in children]
        finally:
            gate.set()
        values = children.result(timeout=LONG)
        end = upstream.task_run.end
        started_after = all(child.task_run.start >= end for child in children)
        return while_blocked, values, started_after

    while_blocked, values, started_after = in_flow(body)
    assert while_blocked == [StateType.PENDING] * 3
    assert values == [2, 3, 4]
    assert started_after


def test_wait_for_a_failed_run_fails_every_mapped_run() -> None:
    ran: list = []

    @task
    def record(value: int) -> None:
        ran.append(value)

    def body() -> list:
        upstream = fail_on.submit(0, 0)
        children = record.map([1, 2], wait_for=[upstream])
        children.wait(LONG)
        return [upstream.state, *(child.state for child in children)]

    states = in_flow(body)
    assert [s.name for s in states[1:]] == ["UpstreamFailed", "UpstreamFailed"]
    assert all(isinstance(s.exception, UpstreamFailedError) for s in states[1:])
    assert ran == []


def test_wait_for_an_allowed_failure_lets_every_mapped_run_run() -> None:
    def body() -> list:
        upstream = fail_on.map([1, 2], 1)
        return add.map([1, 2], 1, wait_for=[allow_failure(upstream)]).result(timeout=LONG)

    assert in_flow(body) == [2, 3]


@pytest.mark.parametrize("wrap", ["future", "allow_failure"])
def test_wait_for_given_as_one_object_works_for_map_as_for_submit(wrap: str) -> None:
    def body() -> tuple:
        upstream = add.submit(0, 0)
        wait_for: Any = upstream if wrap == "future" else allow_failure(upstream)
        single = add.submit(0, 1, wait_for=wait_for).result(timeout=LONG)
        return single, add.map([1, 2], 1, wait_for=wait_for).result(timeout=LONG)

    assert in_flow(body) == (1, [2, 3])


def test_allow_failure_over_a_list_of_futures_passes_each_failed_elements_exception() -> None:
    @task
    def receive(value: Any) -> Any:
        return value

    def body() -> tuple:
        upstream = fail_on.map([1, 2, 3], 2)
        children = receive.map(allow_failure(upstream))
        return upstream[1].result(raise_on_failure=False), children.result(timeout=LONG)

    error, values = in_flow(body)
    assert isinstance(error, ValueError)
    assert values == [1, error, 3]
    assert values[1] is error


def test_without_allow_failure_only_the_child_of_the_failed_element_fails() -> None:
    def body() -> list:
        upstream = fail_on.map([1, 2, 3], 2)
        upstream.wait(LONG)
        children = add.map(upstream, 10)
        children.wait(LONG)
        return [child.state for child in children]

    states = in_flow(body)
    assert [s.type for s in states] == [StateType.COMPLETED, StateType.FAILED, StateType.COMPLETED]
    assert states[1].name == "UpstreamFailed"
    assert [states[0].result(), states[2].result()] == [11, 13]


def test_allow_failure_of_one_failed_future_broadcast_gives_every_child_the_exception() -> None:
    def body() -> tuple:
        failed = fail_on.submit(5, 5)
        children = pair.map([1, 2], allow_failure(failed))
        return failed.result(raise_on_failure=False), children.result(timeout=LONG)

    error, values = in_flow(body)
    assert values == [(1, error), (2, error)]


@pytest.mark.parametrize("wrap", [lambda f: f, unmapped], ids=["plain", "unmapped"])
def test_a_failed_future_broadcast_fails_every_child_upstream_failed(wrap: Callable[[Any], Any]) -> None:
    ran: list = []

    @task
    def record(x: int, y: Any) -> None:
        ran.append((x, y))

    def body() -> tuple:
        failed = fail_on.submit(5, 5)
        children = record.map([1, 2], wrap(failed))
        children.wait(LONG)
        return failed.task_run, [child.state for child in children]

    upstream_run, states = in_flow(body)
    assert [s.name for s in states] == ["UpstreamFailed", "UpstreamFailed"]
    assert all(isinstance(s.exception, UpstreamFailedError) for s in states)
    assert all(s.exception.upstream is upstream_run for s in states)
    assert ran == []
