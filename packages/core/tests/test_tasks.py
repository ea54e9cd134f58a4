"""Tasks: definition, options, direct calls, signatures, retries, timeouts, pickling."""

from __future__ import annotations

import asyncio
import pickle
import threading
import warnings

import pytest
from taskrunners import (
    DefinitionError,
    ParameterError,
    ReservedArgumentError,
    State,
    StateType,
    Task,
    TaskTimeoutError,
    UnobservedFailureWarning,
    UpstreamFailedError,
    WaitTimeout,
    flow,
    task,
)
from taskrunners_threads import ThreadPoolTaskRunner

RUNNER = ThreadPoolTaskRunner(max_workers=4)


@task
def module_level_add(x: int, y: int = 1) -> int:
    return x + y


@task(name="renamed", retries=2)
def module_level_with_options(x: int) -> int:
    return x


# -- definition -------------------------------------------------------------------


def test_bare_decorator_makes_a_task_with_default_options() -> None:
    @task
    def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    assert isinstance(double, Task)
    assert double.name == "double"
    assert double.retries == 0
    assert double.retry_delay_seconds == 0
    assert double.timeout_seconds is None
    assert double.tags == frozenset()
    assert double.__doc__ == "Twice x."
    assert double(4) == 8


def test_decorator_with_options() -> None:
    @task(name="custom", retries=3, retry_delay_seconds=[0, 0.5], timeout_seconds=2, tags={"a", "b"})
    def fn() -> None:
        pass

    assert fn.name == "custom"
    assert fn.retries == 3
    assert tuple(fn.retry_delay_seconds) == (0.0, 0.5)
    assert fn.timeout_seconds == 2
    assert fn.tags == frozenset({"a", "b"})


def test_a_single_string_tag_is_one_tag() -> None:
    @task(tags="io")
    def fn() -> None:
        pass

    assert fn.tags == frozenset({"io"})


def test_with_options_returns_a_changed_copy() -> None:
    @task(retries=1, tags=["x"])
    def fn(v: int) -> int:
        return v

    other = fn.with_options(name="other", retries=5, timeout_seconds=3)
    assert other is not fn
    assert (other.name, other.retries, other.timeout_seconds, other.tags) == ("other", 5, 3, frozenset({"x"}))
    assert (fn.name, fn.retries, fn.timeout_seconds) == ("fn", 1, None)
    assert other.fn is fn.fn
    assert other(7) == 7


def test_with_options_rejects_unknown_options() -> None:
    @task
    def fn() -> None:
        pass

    with pytest.raises(TypeError, match="retires"):
        fn.with_options(retires=3)


def test_with_options_checks_the_new_values() -> None:
    @task
    def fn() -> None:
        pass

    with pytest.raises(DefinitionError, match="retries"):
        fn.with_options(retries=-1)


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"retries": True}, "retries"),
        ({"retry_delay_seconds": -1}, "retry_delay_seconds"),
        ({"retry_delay_seconds": [1, -2]}, "retry_delay_seconds"),
        ({"retry_delay_seconds": "1"}, "retry_delay_seconds"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": -3}, "timeout_seconds"),
        ({"timeout_seconds": "5"}, "timeout_seconds"),
    ],
)
def test_invalid_option_values_raise_definition_error_naming_the_task(options: dict, option: str) -> None:
    def my_function() -> None:
        pass

    with pytest.raises(DefinitionError) as caught:
        task(**options)(my_function)
    assert "my_function" in str(caught.value)
    assert option in str(caught.value)


def test_a_non_callable_is_refused() -> None:
    with pytest.raises(DefinitionError):
        task(42)  # type: ignore[call-overload]


@pytest.mark.parametrize("reserved", ["wait_for", "return_state"])
@pytest.mark.parametrize("decorator", [task, flow], ids=["task", "flow"])
def test_a_function_declaring_a_reserved_name_is_refused(reserved: str, decorator: object) -> None:
    namespace: dict = {}
    exec(f"def uses_reserved(x, {reserved}=None):\n    return x", namespace)
    with pytest.raises(ReservedArgumentError, match=reserved) as caught:
        decorator(namespace["uses_reserved"])  # type: ignore[operator]
    assert "uses_reserved" in str(caught.value)
    assert isinstance(caught.value, DefinitionError)


# -- calling a task directly ----------------------------------------------------------


def test_direct_call_outside_a_flow_returns_the_value() -> None:
    assert module_level_add(1, y=2) == 3


def test_direct_call_raises_the_tasks_own_exception_object() -> None:
    raised = []

    @task
    def fails() -> None:
        error = ValueError("mine")
        raised.append(error)
        raise error

    with pytest.raises(ValueError) as caught:
        fails()
    assert caught.value is raised[0]


def test_direct_async_call_outside_an_event_loop_returns_the_value() -> None:
    @task
    async def async_add(x: int, y: int) -> int:
        await asyncio.sleep(0)
        return x + y

    assert async_add(1, 2) == 3


def test_direct_async_call_raises_the_tasks_own_exception() -> None:
    @task
    async def fails() -> None:
        raise LookupError("async")

    with pytest.raises(LookupError, match="async"):
        fails()


def test_direct_call_inside_a_sync_flow_runs_in_the_callers_thread() -> None:
    @task
    def where() -> threading.Thread:
        return threading.current_thread()

    @flow(task_runner=RUNNER)
    def body() -> threading.Thread:
        return where()

    assert body() is threading.current_thread()


def test_direct_async_call_inside_a_sync_flow_returns_the_value() -> None:
    @task
    async def async_triple(x: int) -> int:
        await asyncio.sleep(0)
        return 3 * x

    @flow(task_runner=RUNNER)
    def body() -> int:
        return async_triple(2)

    assert body() == 6


def test_direct_call_inside_a_flow_raises_the_tasks_exception() -> None:
    @task
    def fails() -> None:
        raise KeyError("in flow")

    @flow(task_runner=RUNNER)
    def body() -> str:
        try:
            fails()
        except KeyError:
            return "caught"
        return "not raised"

    assert body() == "caught"


def test_direct_async_call_inside_an_async_flow_returns_a_coroutine() -> None:
    @task
    async def async_double(x: int) -> int:
        return 2 * x

    @task
    async def async_fails() -> None:
        raise OSError("nope")

    @flow(task_runner=RUNNER)
    async def body() -> tuple:
        pending = async_double(4)
        assert asyncio.iscoroutine(pending)
        value = await pending
        with pytest.raises(OSError, match="nope"):
            await async_fails()
        return value, await async_double(1, return_state=True)

    value, state = asyncio.run(body())
    assert value == 8
    assert isinstance(state, State) and state.is_completed() and state.result() == 2


def test_direct_sync_call_inside_an_async_flow_returns_the_value() -> None:
    @flow(task_runner=RUNNER)
    async def body() -> int:
        return module_level_add(2)

    assert asyncio.run(body()) == 3


def test_direct_call_with_return_state_returns_the_state() -> None:
    @task
    def fails() -> None:
        raise ValueError("kept")

    completed = module_level_add(1, return_state=True)
    assert isinstance(completed, State)
    assert completed.type is StateType.COMPLETED
    assert completed.result() == 2
    assert completed.attempt == 1
    failed = fails(return_state=True)
    assert failed.type is StateType.FAILED
    assert isinstance(failed.exception, ValueError)


@pytest.mark.parametrize("as_list", [True, False], ids=["list", "one-future"])
def test_direct_call_with_wait_for_waits_for_those_runs(as_list: bool) -> None:
    gate = threading.Event()
    order = []

    @task
    def first() -> None:
        assert gate.wait(5)
        order.append("first")

    @task
    def second() -> str:
        order.append("second")
        return "done"

    @flow(task_runner=RUNNER)
    def body() -> str:
        upstream = first.submit()
        threading.Timer(0, gate.set).start()  # released while the direct call waits
        return second(wait_for=[upstream] if as_list else upstream)

    assert body() == "done"
    assert order == ["first", "second"]


def test_direct_call_with_wait_for_a_failed_run_raises_upstream_failed() -> None:
    @task
    def fails() -> None:
        raise ValueError("upstream")

    ran = []

    @task
    def downstream() -> None:
        ran.append(True)

    @flow(task_runner=RUNNER)
    def body() -> tuple:
        upstream = fails.submit()
        with pytest.raises(UpstreamFailedError) as caught:
            downstream(wait_for=[upstream])
        state = downstream(wait_for=[upstream], return_state=True)
        return caught.value, state, upstream.task_run

    error, state, upstream_run = body()
    assert upstream_run.name in str(error)
    assert error.upstream is upstream_run
    assert state.type is StateType.FAILED and state.name == "UpstreamFailed"
    assert ran == []


@pytest.mark.parametrize("how", ["argument", "wait_for"])
def test_direct_call_using_a_failed_future_counts_as_observing_it(how: str) -> None:
    @task
    def fails() -> None:
        raise ValueError("upstream")

    @task
    def downstream(value: object = None) -> None:
        pass

    @flow(task_runner=RUNNER)
    def body() -> None:
        upstream = fails.submit()
        upstream.wait(5)
        with pytest.raises(UpstreamFailedError):
            if how == "argument":
                downstream(upstream)
            else:
                downstream(wait_for=[upstream])

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnobservedFailureWarning)
        body()


# -- arguments and signatures ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1, 2, 3), {}), ((), {}), ((1,), {"z": 2}), ((1,), {"x": 2})],
    ids=["too-many", "missing", "unexpected", "twice"],
)
def test_arguments_that_do_not_fit_raise_parameter_error(args: tuple, kwargs: dict) -> None:
    with pytest.raises(ParameterError) as caught:
        module_level_add(*args, **kwargs)
    message = str(caught.value)
    assert "module_level_add" in message
    assert "(x: 'int', y: 'int' = 1)" in message or "(x: int, y: int = 1)" in message
    assert isinstance(caught.value, TypeError)


def test_submit_with_arguments_that_do_not_fit_raises_parameter_error() -> None:
    @flow(task_runner=RUNNER)
    def body() -> None:
        module_level_add.submit(1, 2, 3)

    with pytest.raises(ParameterError, match="module_level_add"):
        body()


@task
def positional_only(a: int, b: int = 10, /) -> tuple:
    return (a, b)


@task
def star_args(first: int, *rest: int) -> tuple:
    return (first, rest)


@task
def star_kwargs(a: int, **options: int) -> tuple:
    return (a, options)


@task
def everything(a: int, /, b: int, *args: int, c: int = 3, **kwargs: int) -> tuple:
    return (a, b, args, c, kwargs)


SIGNATURE_CASES = [
    (positional_only, (1,), {}, (1, 10)),
    (positional_only, (1, 2), {}, (1, 2)),
    (star_args, (1, 2, 3), {}, (1, (2, 3))),
    (star_args, (1,), {}, (1, ())),
    (star_kwargs, (1,), {"p": 2, "q": 3}, (1, {"p": 2, "q": 3})),
    (everything, (1, 2, 5, 6), {"c": 7, "d": 8}, (1, 2, (5, 6), 7, {"d": 8})),
    (everything, (1,), {"b": 2, "a": 9}, (1, 2, (), 3, {"a": 9})),
]


@pytest.mark.parametrize(("fn", "args", "kwargs", "expected"), SIGNATURE_CASES)
def test_special_signatures_work_in_direct_calls(
    fn: Task, args: tuple, kwargs: dict, expected: tuple
) -> None:
    assert fn(*args, **kwargs) == expected


@pytest.mark.parametrize(("fn", "args", "kwargs", "expected"), SIGNATURE_CASES)
def test_special_signatures_work_through_submit(fn: Task, args: tuple, kwargs: dict, expected: tuple) -> None:
    @flow(task_runner=RUNNER)
    def body() -> tuple:
        return fn.submit(*args, **kwargs).result(timeout=5)

    assert body() == expected


def test_positional_only_passed_by_keyword_raises_parameter_error() -> None:
    with pytest.raises(ParameterError, match="positional_only"):
        positional_only(a=1)


# -- retries --------------------------------------------------------------------------


def test_retries_run_again_until_success_and_count_attempts() -> None:
    calls = []

    @task(retries=3)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return "ok"

    state = flaky(return_state=True)
    assert state.result() == "ok"
    assert state.attempt == 3
    assert len(calls) == 3


def test_retries_exhausted_fail_with_the_last_exception_and_attempt_count() -> None:
    errors = []

    @task(retries=2)
    def always_fails() -> None:
        errors.append(ValueError(f"attempt {len(errors) + 1}"))
        raise errors[-1]

    state = always_fails(return_state=True)
    assert state.type is StateType.FAILED
    assert state.exception is errors[-1]
    assert state.attempt == 3
    assert len(errors) == 3


def test_a_list_of_retry_delays_is_used_in_order_and_the_last_repeats() -> None:
    @task(retries=4, retry_delay_seconds=[0.5, 0.25])
    def fn() -> None:
        pass

    assert [fn._retry_delay(attempt) for attempt in (1, 2, 3, 4)] == [0.5, 0.25, 0.25, 0.25]


def test_retries_with_a_list_of_delays_end_with_the_attempt_number() -> None:
    attempts = []

    @task(retries=3, retry_delay_seconds=[0.01, 0.02])
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) <= 3:
            raise RuntimeError("again")
        return len(attempts)

    @flow(task_runner=RUNNER)
    def body() -> State:
        future = flaky.submit()
        future.wait(5)
        return future.state

    state = body(return_state=True)  # the flow ends in the State it returned
    assert state.type is StateType.COMPLETED
    assert state.result() == 4
    assert state.attempt == 4


def test_retries_apply_to_async_tasks() -> None:
    attempts = []

    @task(retries=1)
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first")
        return "second"

    state = flaky(return_state=True)
    assert state.result() == "second"
    assert state.attempt == 2


# -- timeouts -------------------------------------------------------------------------


def _run_flow_in_thread(fn: object) -> tuple[threading.Thread, list]:
    outcome: list = []
    # return_state: a flow that returns a failed State ends in it (as in Prefect)
    thread = threading.Thread(target=lambda: outcome.append(fn(return_state=True)), daemon=True)  # type: ignore[operator]
    thread.start()
    return thread, outcome


def test_sync_timeout_fails_the_run_with_task_timeout_error_without_blocking_the_flow() -> None:
    release = threading.Event()

    @task(timeout_seconds=0.2)
    def stuck() -> str:
        release.wait(10)
        return "late"

    @flow(task_runner=RUNNER)
    def body() -> State:
        future = stuck.submit()
        future.wait(5)
        return future.state

    thread, outcome = _run_flow_in_thread(body)
    try:
        thread.join(5)
        assert not thread.is_alive(), "the flow waited for the timed-out task's code"
        (state,) = outcome
        assert state.type is StateType.FAILED
        assert state.name == "TimedOut"
        assert isinstance(state.exception, TaskTimeoutError)
        assert isinstance(state.exception, TimeoutError)
        assert not isinstance(state.exception, WaitTimeout)
    finally:
        release.set()


def test_async_timeout_fails_the_run_with_task_timeout_error() -> None:
    @task(timeout_seconds=0.2)
    async def stuck() -> str:
        await asyncio.get_running_loop().create_future()  # never resolved
        return "unreachable"

    @flow(task_runner=RUNNER)
    def body() -> State:
        future = stuck.submit()
        future.wait(5)
        return future.state

    thread, outcome = _run_flow_in_thread(body)
    thread.join(5)
    assert not thread.is_alive()
    (state,) = outcome
    assert state.type is StateType.FAILED
    assert state.name == "TimedOut"
    assert isinstance(state.exception, TaskTimeoutError)


def test_a_timed_out_attempt_is_retried() -> None:
    release = threading.Event()
    attempts = []

    @task(timeout_seconds=0.2, retries=1)
    def slow_first() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            release.wait(10)
            return "first"
        return "second"

    try:
        state = slow_first(return_state=True)
    finally:
        release.set()
    assert state.type is StateType.COMPLETED
    assert state.result() == "second"
    assert state.attempt == 2


def test_direct_call_timeout_raises_task_timeout_error() -> None:
    release = threading.Event()

    @task(timeout_seconds=0.2)
    def stuck() -> None:
        release.wait(10)

    try:
        with pytest.raises(TaskTimeoutError, match="stuck"):
            stuck()
    finally:
        release.set()


def test_direct_async_call_inside_a_loop_honours_the_timeout() -> None:
    @task(timeout_seconds=0.2)
    async def stuck() -> None:
        await asyncio.get_running_loop().create_future()

    async def main() -> State:
        return await stuck(return_state=True)

    state = asyncio.run(main())
    assert state.name == "TimedOut"
    assert isinstance(state.exception, TaskTimeoutError)


def test_a_task_that_finishes_in_time_is_unaffected_by_its_timeout() -> None:
    @task(timeout_seconds=5)
    def quick(x: int) -> int:
        return x * 3

    @task(timeout_seconds=5)
    async def quick_async(x: int) -> int:
        return x * 4

    assert quick(2) == 6
    assert quick_async(2) == 8


@pytest.mark.parametrize("timeout", [None, 5], ids=["no-timeout", "with-timeout"])
def test_a_timeout_error_raised_by_the_tasks_code_is_not_a_task_timeout(timeout: float | None) -> None:
    own = TimeoutError("the task's own timeout")

    @task(timeout_seconds=timeout)
    def raises_timeout() -> None:
        raise own

    @flow(task_runner=RUNNER)
    def body() -> State:
        future = raises_timeout.submit()
        future.wait(5)
        return future.state

    state = body(return_state=True)  # the flow ends in the State it returned
    assert state.type is StateType.FAILED
    assert state.exception is own
    assert not isinstance(state.exception, TaskTimeoutError)
    assert state.name == "Failed"
    with pytest.raises(TimeoutError) as caught:
        raises_timeout()
    assert caught.value is own


# -- pickling and display ---------------------------------------------------------------


def test_a_module_level_task_pickles_by_reference() -> None:
    assert pickle.loads(pickle.dumps(module_level_add)) is module_level_add
    assert pickle.loads(pickle.dumps(module_level_with_options)) is module_level_with_options


def test_runs_are_named_after_the_task_and_carry_its_tags() -> None:
    tagged = module_level_add.with_options(name="tagged", tags=["io", "db"])

    @flow(task_runner=RUNNER)
    def body() -> tuple:
        future = tagged.submit(1)
        return future.task_run.name, future.task_run.task_name, future.task_run.tags

    name, task_name, tags = body()
    assert task_name == "tagged"
    assert name.startswith("tagged-") and name[len("tagged-") :].isdigit()
    assert tags == frozenset({"io", "db"})


def test_repr_names_the_task() -> None:
    assert repr(module_level_with_options) == "Task('renamed')"
