"""taskrunners.states: Prefect's constructors and helpers, and returned States."""

from __future__ import annotations

from typing import Any

import pytest
from taskrunners import FailedRun, StateType, TaskRunCancelled, TaskRunCrashed, flow, task
from taskrunners import states as s
from taskrunners_threads import ThreadPoolTaskRunner

RUNNER = ThreadPoolTaskRunner(max_workers=4)


def test_constructors_make_states_of_their_type_and_name() -> None:
    made = {
        s.Completed(data=1): (StateType.COMPLETED, "Completed"),
        s.Failed(message="x"): (StateType.FAILED, "Failed"),
        s.Crashed(message="x"): (StateType.CRASHED, "Crashed"),
        s.Cancelled(message="x"): (StateType.CANCELLED, "Cancelled"),
        s.Pending(): (StateType.PENDING, "Pending"),
        s.Running(): (StateType.RUNNING, "Running"),
        s.Retrying(): (StateType.RUNNING, "Retrying"),
        s.Scheduled(): (StateType.SCHEDULED, "Scheduled"),
        s.AwaitingRetry(): (StateType.SCHEDULED, "AwaitingRetry"),
        s.Late(): (StateType.SCHEDULED, "Late"),
        s.Paused(): (StateType.PAUSED, "Paused"),
        s.Cancelling(): (StateType.CANCELLING, "Cancelling"),
    }
    for state, (kind, name) in made.items():
        assert (state.type, state.name) == (kind, name)
    assert s.Completed(data=1).result() == 1
    assert not s.Scheduled().is_final() and s.Scheduled().is_scheduled()


def test_a_state_that_did_not_complete_raises_its_data_or_an_error_with_its_message() -> None:
    error = ValueError("given")
    with pytest.raises(ValueError, match="given"):
        s.Failed(data=error).result()
    with pytest.raises(FailedRun, match="no disk"):
        s.Failed(message="no disk").result()
    with pytest.raises(TaskRunCrashed, match="lost"):
        s.Crashed(message="lost").result()
    with pytest.raises(TaskRunCancelled, match="stop"):
        s.Cancelled(message="stop").result()
    assert s.Failed(data=error).result(raise_on_failure=False) is error


def test_helpers() -> None:
    failed = s.Failed(message="x")
    assert s.is_state(failed) and not s.is_state(1)
    assert s.is_state_iterable([failed, s.Completed()]) and not s.is_state_iterable([failed, 1])
    assert not s.is_state_iterable([])
    assert isinstance(s.get_state_exception(failed), FailedRun)
    with pytest.raises(ValueError):
        s.get_state_exception(s.Completed())
    with pytest.raises(FailedRun):
        s.raise_state_exception(failed)
    s.raise_state_exception(s.Completed())  # nothing to raise
    assert s.return_value_to_state(3).result() == 3
    assert s.return_value_to_state([failed, s.Completed()]).message == "1/2 states failed."
    assert s.exception_to_failed_state(KeyError("k")).is_failed()
    assert s.exception_to_crashed_state(KeyError("k")).is_crashed()
    group = s.StateGroup([failed, s.Completed(), s.Cancelled()])
    assert (group.total_count, group.fail_count, group.any_cancelled()) == (3, 1, True)
    assert group.aggregate().message == "1/3 states failed."


@pytest.mark.parametrize(
    ("returned", "kind", "message"),
    [
        (lambda: [s.Completed(data=1), s.Completed(data=2)], StateType.COMPLETED, "All states completed."),
        (lambda: (s.Completed(), s.Failed(), s.Crashed()), StateType.FAILED, "2/3 states failed."),
        (lambda: {s.Completed(), s.Cancelled()}, StateType.CANCELLED, "1/2 states cancelled."),
        (lambda: [s.Completed(), s.Pending(), s.Running()], StateType.FAILED, "2/3 states are not final."),
    ],
)
def test_a_flow_returning_states_ends_in_their_aggregate(
    returned: Any, kind: StateType, message: str
) -> None:
    @flow(task_runner=RUNNER)
    def several() -> Any:
        return returned()

    state = several(return_state=True)
    assert (state.type, state.message) == (kind, message)
    plain = several()  # a plain call returns the States, as in Prefect
    assert all(s.is_state(item) for item in plain)


def test_a_flow_returning_one_state_ends_in_it() -> None:
    @flow(task_runner=RUNNER)
    def gives_up() -> Any:
        return s.Failed(message="x")

    @flow(task_runner=RUNNER)
    def stops() -> Any:
        return s.Cancelled()

    @flow(task_runner=RUNNER)
    def completes() -> Any:
        return s.Completed(data=5, message="fine")

    state = gives_up(return_state=True)
    assert state.is_failed() and state.message == "x"
    with pytest.raises(FailedRun, match="x"):
        gives_up()
    assert stops(return_state=True).is_cancelled()
    assert completes() == 5 and completes(return_state=True).message == "fine"


def test_a_flow_returning_futures_keeps_their_values_and_reports_the_aggregate() -> None:
    @task
    def fails(x: int) -> int:
        raise ValueError(x)

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow(task_runner=RUNNER)
    def mixed() -> Any:
        return double.submit(1), fails.submit(2), double.submit(3)

    @flow(task_runner=RUNNER)
    def fine() -> Any:
        return double.map([1, 2])

    state = mixed(return_state=True)
    assert state.is_failed() and state.message == "1/3 states failed."
    values = state.result(raise_on_failure=False)
    assert values[0] == 2 and isinstance(values[1], ValueError) and values[2] == 6
    with pytest.raises(ValueError):
        mixed()
    assert fine() == [2, 4]
    assert fine(return_state=True).message == "All states completed."


def test_a_task_returning_states_ends_in_them() -> None:
    @task
    def gives_up() -> Any:
        return s.Failed(message="nope")

    @task
    def several() -> Any:
        return [s.Completed(data=1), s.Failed(message="a")]

    @task(retries=2)
    def not_retried() -> Any:
        calls.append(1)
        return s.Failed(message="returned, not raised")

    calls: list[int] = []
    assert gives_up(return_state=True).message == "nope"
    assert several(return_state=True).message == "1/2 states failed."
    assert not_retried(return_state=True).is_failed() and calls == [1]
    assert gives_up(return_state=True).name == "Failed"


def test_a_state_given_to_a_flow_passes_its_value() -> None:
    @flow(task_runner=RUNNER)
    def child(x: int) -> int:
        return x + 1

    assert child(s.Completed(data=1)) == 2
    state = child(s.Failed(message="no"), return_state=True)
    assert state.is_failed() and state.name == "UpstreamFailed"
