"""State and StateType: types, predicates, finality, results and repr."""

from __future__ import annotations

import pytest
from taskrunners import State, StateType, TaskRunnersError

FINAL_TYPES = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]
NOT_FINAL_TYPES = [
    StateType.PENDING,
    StateType.RUNNING,
    StateType.SCHEDULED,
    StateType.PAUSED,
    StateType.CANCELLING,
]
NOT_OK_TYPES = [StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]

PREDICATES = {
    StateType.PENDING: "is_pending",
    StateType.RUNNING: "is_running",
    StateType.COMPLETED: "is_completed",
    StateType.FAILED: "is_failed",
    StateType.CRASHED: "is_crashed",
    StateType.CANCELLED: "is_cancelled",
    StateType.SCHEDULED: "is_scheduled",
    StateType.PAUSED: "is_paused",
    StateType.CANCELLING: "is_cancelling",
}


def test_state_type_members_and_values() -> None:
    assert [member.value for member in StateType] == [
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CRASHED",
        "CANCELLED",
        "SCHEDULED",
        "PAUSED",
        "CANCELLING",
    ]
    assert StateType("FAILED") is StateType.FAILED


@pytest.mark.parametrize("kind", FINAL_TYPES)
def test_final_state_types_are_final(kind: StateType) -> None:
    assert kind.is_final is True
    assert State(kind, exception=ValueError() if kind is not StateType.COMPLETED else None).is_final()


@pytest.mark.parametrize("kind", NOT_FINAL_TYPES)
def test_pending_and_running_are_not_final(kind: StateType) -> None:
    assert kind.is_final is False
    assert State(kind).is_final() is False


@pytest.mark.parametrize("kind", list(StateType))
def test_exactly_one_type_predicate_is_true(kind: StateType) -> None:
    state = State(kind)
    answers = {name: getattr(state, name)() for name in PREDICATES.values()}
    assert answers == {name: other is kind for other, name in PREDICATES.items()}


def test_default_name_is_the_type_title_and_a_given_name_wins() -> None:
    assert State(StateType.COMPLETED).name == "Completed"
    assert State(StateType.PENDING).name == "Pending"
    named = State(StateType.FAILED, exception=ValueError("x"), name="UpstreamFailed")
    assert named.name == "UpstreamFailed"
    assert named.type is StateType.FAILED


def test_fields_given_to_the_constructor_are_kept() -> None:
    state = State(StateType.RUNNING, message="going", attempt=2, started=10.0, timestamp=12.5)
    assert (state.message, state.attempt, state.started, state.timestamp) == ("going", 2, 10.0, 12.5)


def test_defaults_of_a_fresh_state() -> None:
    state = State(StateType.PENDING)
    assert state.message == ""
    assert state.attempt == 0
    assert state.started is None
    assert isinstance(state.timestamp, float)
    assert state.exception is None


def test_completed_result_returns_the_data() -> None:
    data = {"answer": [42]}
    state = State(StateType.COMPLETED, data=data)
    assert state.result() is data
    assert state.result(raise_on_failure=False) is data
    assert state.exception is None


@pytest.mark.parametrize("kind", NOT_OK_TYPES)
def test_result_of_a_failed_state_raises_its_exception_object(kind: StateType) -> None:
    error = KeyError("boom")
    state = State(kind, exception=error)
    with pytest.raises(KeyError) as caught:
        state.result()
    assert caught.value is error
    assert state.exception is error


@pytest.mark.parametrize("kind", NOT_OK_TYPES)
def test_result_without_raise_on_failure_returns_the_exception(kind: StateType) -> None:
    error = ValueError("boom")
    state = State(kind, exception=error)
    assert state.result(raise_on_failure=False) is error


@pytest.mark.parametrize("kind", NOT_FINAL_TYPES)
@pytest.mark.parametrize("raise_on_failure", [True, False])
def test_result_of_a_state_that_is_not_final_raises(kind: StateType, raise_on_failure: bool) -> None:
    with pytest.raises(TaskRunnersError, match=kind.value) as caught:
        State(kind).result(raise_on_failure=raise_on_failure)
    assert "future.result()" in str(caught.value)


def test_repr_of_a_completed_state_shows_the_result() -> None:
    assert repr(State(StateType.COMPLETED, data=3)) == "Completed(result=3)"


def test_repr_shortens_a_long_result() -> None:
    text = repr(State(StateType.COMPLETED, data="x" * 500))
    assert text.startswith("Completed(result='xxx")
    assert text.endswith("...)")
    assert len(text) < 100


def test_repr_of_a_failed_state_shows_name_exception_and_message() -> None:
    state = State(StateType.FAILED, exception=ValueError("bad"), name="TimedOut", message="too slow")
    assert repr(state) == "TimedOut(exception=ValueError('bad'), message='too slow')"


def test_repr_of_a_pending_state() -> None:
    assert repr(State(StateType.PENDING)) == "Pending()"
    assert repr(State(StateType.PENDING, message="queued")) == "Pending(message='queued')"
