"""Flows: choosing a runner, a fresh runner per run, waiting at exit, return values,
unobserved failures, sync and async flows, and the runner lifecycle guards."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import taskrunners.plugins
from taskrunners import (
    DefinitionError,
    Flow,
    Future,
    FutureList,
    NoActiveFlowError,
    RunnerLifecycleError,
    RunnerLookupError,
    StateType,
    TaskRunner,
    UnobservedFailureWarning,
    allow_failure,
    flow,
    task,
)
from taskrunners_threads import ThreadPoolTaskRunner

LONG = 10
RUNNER_ENV = "TASKRUNNERS_RUNNER"


@task
def identity(value: Any) -> Any:
    return value


@task
def fail(error: BaseException) -> None:
    raise error


@task
def owner_of_current_run() -> TaskRunner:
    """The runner of the flow run that this task run belongs to, as seen from inside."""
    inner = identity.submit(None)  # a submit from inside a task goes to the flow's runner
    inner.wait(LONG)
    return inner.owner


class Box:
    """Carries objects out of a flow without the flow resolving futures inside."""

    def __init__(self, *items: Any) -> None:
        self.items = items


@pytest.fixture
def recording_runner() -> type[ThreadPoolTaskRunner]:
    """A fresh `ThreadPoolTaskRunner` subclass that records its instances and entries."""

    class RecordingRunner(ThreadPoolTaskRunner):
        created: list = []
        entered: list = []

        def __init__(self, max_workers: int | None = None) -> None:
            super().__init__(max_workers)
            RecordingRunner.created.append(self)

        def __enter__(self) -> RecordingRunner:
            RecordingRunner.entered.append(self)
            return super().__enter__()  # type: ignore[return-value]

    return RecordingRunner


@pytest.fixture
def no_runner_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    yield


# -- choosing the runner -----------------------------------------------------------------


def test_task_runner_given_as_an_instance_is_duplicated_never_entered(recording_runner: type) -> None:
    instance = recording_runner(max_workers=3)

    @flow(task_runner=instance)
    def body() -> Box:
        future = identity.submit(1)
        return Box(future.owner, instance.started)

    owner, instance_started = body().items
    assert type(owner) is recording_runner
    assert owner is not instance
    assert owner == instance  # same configuration
    assert owner.max_workers == 3
    assert instance_started is False
    assert len(recording_runner.entered) == 1
    assert recording_runner.entered[0] is owner  # and so the instance itself was never entered


def test_each_flow_run_gets_a_fresh_runner(recording_runner: type) -> None:
    instance = recording_runner(max_workers=2)

    @flow(task_runner=instance)
    def body() -> Box:
        return Box(identity.submit(1).owner)

    (first,) = body().items
    (second,) = body().items
    assert first is not second
    assert [id(r) for r in recording_runner.entered] == [id(first), id(second)]
    assert instance is not first and instance is not second
    assert not first.started and not second.started  # both shut down at the end of their run


def test_task_runner_given_as_a_class_is_instantiated(recording_runner: type) -> None:
    @flow(task_runner=recording_runner)
    def body() -> Box:
        return Box(identity.submit(1).owner)

    (owner,) = body().items
    assert type(owner) is recording_runner
    assert len(recording_runner.created) == 1 and recording_runner.created[0] is owner


def test_task_runner_given_by_name(no_runner_env: None) -> None:
    @flow(task_runner="threads")
    def body() -> Box:
        return Box(identity.submit(1).owner)

    (owner,) = body().items
    assert type(owner) is ThreadPoolTaskRunner


def test_without_a_task_runner_the_default_is_threads(no_runner_env: None) -> None:
    @flow
    def body() -> Box:
        return Box(identity.submit(1).owner)

    (owner,) = body().items
    assert type(owner) is ThreadPoolTaskRunner


def test_without_a_task_runner_the_environment_variable_names_it(
    monkeypatch: pytest.MonkeyPatch, recording_runner: type
) -> None:
    # Register a runner name without installing a distribution: put the class where
    # load_runner keeps the classes it has loaded.
    monkeypatch.setitem(taskrunners.plugins._loaded, "recording-for-env", recording_runner)
    monkeypatch.setenv(RUNNER_ENV, "recording-for-env")

    @flow
    def body() -> Box:
        return Box(identity.submit(1).owner)

    (owner,) = body().items
    assert type(owner) is recording_runner


def test_an_explicit_task_runner_wins_over_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNNER_ENV, "no-such-runner-anywhere")

    @flow(task_runner=ThreadPoolTaskRunner)
    def body() -> int:
        return identity.submit(1).result(timeout=LONG)

    assert body() == 1


def test_an_unknown_runner_name_in_the_environment_variable_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNNER_ENV, "no-such-runner-anywhere")
    ran = []

    @flow
    def body() -> None:
        ran.append(True)

    with pytest.raises(RunnerLookupError, match="no-such-runner-anywhere"):
        body()
    assert ran == []


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("quantum", 'pip install "taskrunners[quantum]"'),
        ("mypool", "taskrunners.runners"),
    ],
)
def test_an_unknown_runner_name_lists_the_installed_runners_and_a_hint(
    name: str, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskrunners import plugins

    # Stands for a runner this project maintains that is not installed here.
    monkeypatch.setitem(plugins._KNOWN, "quantum", "taskrunners[quantum]")

    @flow(task_runner=name)
    def body() -> None:
        pass

    with pytest.raises(RunnerLookupError) as caught:
        body()
    message = str(caught.value)
    assert repr(name) in message
    assert "installed: " in message and "threads" in message
    assert hint in message
    assert isinstance(caught.value, LookupError)


@pytest.mark.parametrize("spec", [42, object(), int, print], ids=["int", "object", "class", "function"])
def test_a_task_runner_that_is_no_runner_is_refused_at_definition(spec: Any) -> None:
    def body() -> None:
        pass

    with pytest.raises(DefinitionError, match="task_runner"):
        flow(task_runner=spec)(body)


# -- nested flows ---------------------------------------------------------------------------


def test_a_nested_flow_runs_on_its_own_runner(recording_runner: type) -> None:
    shared = recording_runner(max_workers=2)

    @flow(task_runner=shared)
    def child() -> Box:
        return Box(identity.submit(1).owner, owner_of_current_run.submit().result(timeout=LONG))

    @flow(task_runner=shared)
    def parent() -> Box:
        before = identity.submit(1).owner
        child_owner, seen_in_child_task = child().items
        after = identity.submit(2).owner
        seen_in_parent_task = owner_of_current_run.submit().result(timeout=LONG)
        return Box(before, after, seen_in_parent_task, child_owner, seen_in_child_task)

    before, after, seen_in_parent_task, child_owner, seen_in_child_task = parent().items
    assert before is after is seen_in_parent_task
    assert child_owner is seen_in_child_task
    assert child_owner is not before
    assert shared is not before and shared is not child_owner
    assert [id(r) for r in recording_runner.entered] == [id(before), id(child_owner)]


# -- waiting at exit ---------------------------------------------------------------------------


def test_a_flow_waits_at_exit_for_runs_nobody_waited_for() -> None:
    finished: list = []
    gate = threading.Event()

    @task
    def slow(index: int) -> None:
        assert gate.wait(LONG)
        finished.append(index)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> str:
        for index in range(5):  # more runs than workers: some are still queued at exit
            slow.submit(index)
        threading.Thread(target=gate.set).start()  # released while the flow is returning
        return "returned"

    assert body() == "returned"
    assert sorted(finished) == [0, 1, 2, 3, 4]


def test_a_flow_waits_at_exit_for_runs_submitted_by_its_tasks() -> None:
    finished = threading.Event()
    gate = threading.Event()

    @task
    def grandchild() -> None:
        assert gate.wait(LONG)
        finished.set()

    @task
    def child() -> None:
        grandchild.submit()  # not waited for by anyone

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> None:
        child.submit().result(timeout=LONG)
        threading.Thread(target=gate.set).start()

    body()
    assert finished.is_set()


def test_a_flow_that_raises_still_waits_for_its_runs_and_raises_the_same_exception() -> None:
    finished: list = []
    gate = threading.Event()
    error = RuntimeError("flow body failed")

    @task
    def slow() -> None:
        assert gate.wait(LONG)
        finished.append(True)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> None:
        slow.submit()
        threading.Thread(target=gate.set).start()
        raise error

    with pytest.raises(RuntimeError) as caught:
        body()
    assert caught.value is error
    assert finished == [True]


def test_an_async_flow_waits_at_exit_for_runs_nobody_waited_for() -> None:
    finished: list = []
    gate = threading.Event()

    @task
    def slow(index: int) -> None:
        assert gate.wait(LONG)
        finished.append(index)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def body() -> str:
        for index in range(4):
            slow.submit(index)
        threading.Thread(target=gate.set).start()
        return "returned"

    assert asyncio.run(body()) == "returned"
    assert sorted(finished) == [0, 1, 2, 3]


# -- return values and states ---------------------------------------------------------------------


def test_futures_in_the_return_value_are_resolved_to_results() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> Any:
        one = identity.submit(1)
        many = identity.map([2, 3])
        return {"one": one, "many": many, "nested": [one, (many, {"k": identity.submit("v")})], "plain": 4}

    result = body()
    assert result == {"one": 1, "many": [2, 3], "nested": [1, ([2, 3], {"k": "v"})], "plain": 4}
    assert type(result["many"]) is list


@dataclasses.dataclass(frozen=True)
class Frozen:
    first: Any
    rest: Any = None


Pair = collections.namedtuple("Pair", "left right")


def test_futures_in_returned_dataclasses_named_tuples_sets_and_dict_keys_are_resolved() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> tuple:
        return (
            Frozen(identity.submit(1), [identity.submit(2)]),
            Pair(identity.submit(3), 4),
            {identity.submit(5)},
            frozenset([identity.submit(6)]),
            {identity.submit("k"): identity.submit("v")},
        )

    frozen, pair, a_set, a_frozenset, a_dict = body()
    assert frozen == Frozen(1, [2])
    assert pair == Pair(3, 4) and type(pair) is Pair
    assert a_set == {5} and a_frozenset == frozenset({6})
    assert a_dict == {"k": "v"}


def test_a_returned_future_list_becomes_a_plain_list() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> FutureList:
        return identity.map([1, 2, 3])

    result = body()
    assert result == [1, 2, 3]
    assert type(result) is list


def test_a_returned_single_future_becomes_its_result() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> Future:
        return identity.submit("value")

    assert body() == "value"


def test_a_flow_whose_returned_future_failed_raises_that_exception() -> None:
    error = KeyError("returned and failed")

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> list:
        return [identity.submit(1), fail.submit(error)]

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnobservedFailureWarning)  # returning it observes it
        with pytest.raises(KeyError) as caught:
            body()
    assert caught.value is error


def test_return_state_gives_a_completed_state() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body(x: int) -> Future:
        return identity.submit(x)

    state = body(5, return_state=True)
    assert state.type is StateType.COMPLETED
    assert state.result() == 5


def test_return_state_gives_a_failed_state_without_raising() -> None:
    error = ValueError("in the flow")

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def raises() -> None:
        raise error

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def returns_failed() -> Future:
        return fail.submit(error)

    for body in (raises, returns_failed):
        state = body(return_state=True)
        assert state.type is StateType.FAILED
        assert state.exception is error


def test_flow_arguments_are_passed_through() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body(a: int, /, b: int, *, c: int = 0) -> tuple:
        return (a, b, c)

    assert body(1, b=2, c=3) == (1, 2, 3)


# -- futures passed to a flow ------------------------------------------------------------------------


@flow
def add(x: Any, y: Any) -> Any:
    return x + y


def test_futures_passed_to_a_nested_flow_arrive_as_their_values() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def parent() -> tuple:
        a, b = identity.submit(1), identity.submit(2)
        return add(a, y=b), add([a, {"b": b}], [3])

    assert parent() == (3, [1, {"b": 2}, 3])


def test_a_nested_flow_whose_input_failed_does_not_run_and_names_the_upstream() -> None:
    ran = []

    @flow
    def child(x: Any) -> None:
        ran.append(x)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def parent() -> Any:
        return child(fail.submit(ValueError("no input")), return_state=True)

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnobservedFailureWarning)  # the flow's state reports it
        state = parent(return_state=True)  # the parent ends in the State it returned
    assert not ran
    assert state.is_failed() and state.name == "UpstreamFailed"
    error = state.exception
    assert isinstance(error, taskrunners.UpstreamFailedError)
    assert "'child'" in str(error) and "allow_failure" in str(error)
    assert error.upstream.name.startswith("fail-")
    assert isinstance(error.__cause__, ValueError)


def test_a_nested_flow_called_without_return_state_raises_the_upstream_error() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def parent() -> None:
        failed = fail.submit(ValueError("no input"))
        with pytest.raises(taskrunners.UpstreamFailedError):
            add(failed, 1)
        failed.wait()
        assert failed.state.is_failed()

    parent()


def test_allow_failure_passes_a_failed_input_to_a_nested_flow_as_its_exception() -> None:
    @flow
    def child(x: Any) -> Any:
        return x

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def parent() -> Any:
        return child(allow_failure(fail.submit(ValueError("kept"))))

    received = parent()
    assert isinstance(received, ValueError) and str(received) == "kept"


def test_a_nested_flow_starts_after_its_wait_for_runs_are_final() -> None:
    release = threading.Event()
    order = []

    @task
    def slow() -> None:
        assert release.wait(LONG)
        order.append("task")

    @flow
    def child() -> None:
        order.append("flow")

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def parent() -> None:
        upstream = slow.submit()
        release.set()
        child(wait_for=[upstream])

    parent()
    assert order == ["task", "flow"]


def test_a_failed_wait_for_run_stops_a_nested_flow_unless_allowed_to_fail() -> None:
    @flow
    def child() -> str:
        return "ran"

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def parent() -> tuple:
        failed = fail.submit(ValueError("x"))
        stopped = child(wait_for=[failed], return_state=True)
        return stopped, child(wait_for=[allow_failure(failed)])

    stopped, allowed = parent()
    assert stopped.is_failed() and isinstance(stopped.exception, taskrunners.UpstreamFailedError)
    assert allowed == "ran"


def test_an_async_nested_flow_receives_values_and_honours_wait_for() -> None:
    @flow
    async def child(x: Any) -> Any:
        return x * 10

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def parent() -> tuple:
        value = identity.submit(4)
        failed = fail.submit(ValueError("x"))
        stopped = await child(1, wait_for=[failed], return_state=True)
        return await child(value), stopped

    value, stopped = asyncio.run(parent())
    assert value == 40
    assert stopped.is_failed() and isinstance(stopped.exception, taskrunners.UpstreamFailedError)


# -- unobserved failures ---------------------------------------------------------------------------


def test_an_unobserved_failed_run_triggers_a_warning_naming_it() -> None:
    names = []

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> str:
        future = fail.submit(ValueError("nobody looked"))
        names.append(future.task_run.name)
        identity.submit(1)
        return "flow value"

    with pytest.warns(UnobservedFailureWarning) as record:
        assert body() == "flow value"  # the flow itself does not fail
    assert len(record) == 1
    message = str(record[0].message)
    assert repr(names[0]) in message
    assert "nobody looked" in message
    assert record[0].filename == __file__  # points at the caller, not into taskrunners


def test_the_warning_counts_beyond_the_runs_it_names() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> None:
        fail.map([ValueError(str(n)) for n in range(7)])

    with pytest.warns(UnobservedFailureWarning, match=r"7 task run\(s\).* and 2 more"):
        body()


def test_an_unobserved_failure_in_an_async_flow_triggers_the_warning() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def body() -> None:
        fail.submit(ValueError("async nobody"))

    with pytest.warns(UnobservedFailureWarning, match="async nobody"):
        asyncio.run(body())


@pytest.mark.parametrize("observe", ["result", "state", "downstream-allowed", "returned-in-state"])
def test_no_warning_when_the_failure_was_observed(observe: str) -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> Any:
        future = fail.submit(ValueError("seen"))
        if observe == "result":
            future.result(raise_on_failure=False)
        elif observe == "state":
            future.wait(LONG)
            assert future.state.is_failed()
        elif observe == "downstream-allowed":
            identity.submit(allow_failure(future)).result(timeout=LONG)
        else:
            return future
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnobservedFailureWarning)
        if observe == "returned-in-state":
            assert body(return_state=True).is_failed()
        else:
            body()


def test_a_failed_downstream_nobody_read_is_the_one_named() -> None:
    names = []

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> None:
        upstream = fail.submit(ValueError("root cause"))
        downstream = identity.submit(upstream)
        names.extend([upstream.task_run.name, downstream.task_run.name])

    with pytest.warns(UnobservedFailureWarning) as record:
        body()
    message = str(record[0].message)
    assert message.startswith("1 task run(s)")
    assert repr(names[1]) in message and "UpstreamFailed" in message


# -- sync and async flows ---------------------------------------------------------------------------


def test_an_async_flow_returns_a_coroutine_and_resolves_futures() -> None:
    @task
    async def async_double(x: int) -> int:
        return 2 * x

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def body(x: int) -> Any:
        return {
            "sync": identity.submit(x),
            "async": async_double.submit(x),
            "mapped": async_double.map([1, 2]),
        }

    pending = body(3)
    assert asyncio.iscoroutine(pending)
    assert asyncio.run(pending) == {"sync": 3, "async": 6, "mapped": [2, 4]}


def test_an_async_flow_raises_and_returns_states_like_a_sync_one() -> None:
    error = ValueError("async flow")

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def raises() -> None:
        raise error

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def returns_failed() -> Future:
        return fail.submit(error)

    with pytest.raises(ValueError) as caught:
        asyncio.run(raises())
    assert caught.value is error
    state = asyncio.run(returns_failed(return_state=True))
    assert state.type is StateType.FAILED and state.exception is error


def test_flow_decorator_forms_and_with_options() -> None:
    def body() -> int:
        return 1

    bare = flow(body)
    named = flow(name="named", task_runner="threads")(body)
    changed = named.with_options(name="changed")
    assert isinstance(bare, Flow) and bare.name == "body" and bare.task_runner is None
    assert (named.name, named.task_runner) == ("named", "threads")
    assert (changed.name, changed.task_runner) == ("changed", "threads")
    assert changed is not named
    assert changed() == 1


# -- outside flows and the runner lifecycle ------------------------------------------------------------


def test_submit_outside_a_flow_raises_with_a_hint() -> None:
    with pytest.raises(NoActiveFlowError) as caught:
        identity.submit(1)
    message = str(caught.value)
    assert "identity.submit()" in message
    assert "@flow" in message
    assert "identity(...)" in message  # the other way out: call it directly
    assert isinstance(caught.value, RuntimeError)


def test_submit_after_the_flow_ended_raises_no_active_flow_error() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> int:
        return identity.submit(1).result(timeout=LONG)

    body()
    with pytest.raises(NoActiveFlowError):
        identity.submit(1)


def test_a_runner_used_without_with_raises() -> None:
    runner = ThreadPoolTaskRunner(max_workers=1)
    with pytest.raises(RunnerLifecycleError, match="with"):
        runner.submit(identity, {"value": 1})
    assert isinstance(RunnerLifecycleError("x"), RuntimeError)


def test_a_runner_used_after_its_with_block_raises() -> None:
    runner = ThreadPoolTaskRunner(max_workers=1)
    with runner:
        assert runner.submit(identity, {"value": 1}).result(timeout=LONG) == 1
    with pytest.raises(RunnerLifecycleError):
        runner.submit(identity, {"value": 2})


def test_entering_a_runner_twice_raises() -> None:
    runner = ThreadPoolTaskRunner(max_workers=1)
    with runner:
        with pytest.raises(RunnerLifecycleError, match="already started"):
            runner.__enter__()
        assert runner.started
        assert runner.submit(identity, {"value": 3}).result(timeout=LONG) == 3
    assert not runner.started


def test_a_runner_that_raises_in_submit_does_not_leave_the_run_open() -> None:
    """A bug in a runner's submit ends the prepared run CRASHED; the flow still exits."""
    from taskrunners.testing import run_with_deadline

    prepared: list[Any] = []

    class RaisesAfterPrepare(ThreadPoolTaskRunner):
        def submit(self, task: Any, parameters: Any, wait_for: Any = None) -> Any:
            prepared.append(self.prepare(task, parameters, wait_for))
            raise RuntimeError("runner bug")

    @flow(task_runner=RaisesAfterPrepare())
    def body() -> None:
        with pytest.raises(RuntimeError, match="runner bug"):
            identity.submit(1)
        with pytest.raises(RuntimeError, match="runner bug"):
            identity.map([1, 2])

    with pytest.warns(UnobservedFailureWarning):
        run_with_deadline(body, 30)
    assert len(prepared) == 2
    for call in prepared:
        assert call.future.state.is_crashed() and "raised while accepting it" in str(
            call.future.state.exception
        )
