"""Prefect's state constructors and helpers, for code ported from `prefect.states`.

A task or flow that returns a `State` ends in it; one that returns a list, tuple or
set of States (or of futures) ends in their aggregate::

    from taskrunners import flow
    from taskrunners.states import Completed, Failed

    @flow
    def check() -> list:
        return [Completed(data=1), Failed(message="no disk")]

    state = check(return_state=True)
    assert state.is_failed() and state.message == "1/2 states failed."

The constructors take Prefect's keywords `data`, `message` and `name`. A state that
did not complete raises from `result()`: the exception given as `data` (Prefect's
way to attach one), else a `FailedRun`, `TaskRunCrashed` or `TaskRunCancelled`
carrying the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._errors import FailedRun, TaskRunCancelled, TaskRunCrashed
from ._returned import aggregate
from ._states import _FINAL, State, StateType

__all__ = [
    "AwaitingRetry",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "Late",
    "Paused",
    "Pending",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateGroup",
    "StateType",
    "exception_to_crashed_state",
    "exception_to_failed_state",
    "get_state_exception",
    "is_state",
    "is_state_iterable",
    "raise_state_exception",
    "return_value_to_state",
]


def Completed(*, data: Any = None, message: str | None = None, name: str | None = None) -> State[Any]:
    """A COMPLETED state holding `data` (the run's value)."""
    return State(StateType.COMPLETED, data=data, message=message or "", name=name)


def Failed(*, data: Any = None, message: str | None = None, name: str | None = None) -> State[Any]:
    """A FAILED state. Its `result()` raises `data` if it is an exception, else a
    `FailedRun` with `message`."""
    return _not_ok(StateType.FAILED, data, message, name, FailedRun)


def Crashed(*, data: Any = None, message: str | None = None, name: str | None = None) -> State[Any]:
    """A CRASHED state. Its `result()` raises `data` if it is an exception, else a
    `TaskRunCrashed` with `message`."""
    return _not_ok(StateType.CRASHED, data, message, name, TaskRunCrashed)


def Cancelled(*, data: Any = None, message: str | None = None, name: str | None = None) -> State[Any]:
    """A CANCELLED state. Its `result()` raises `data` if it is an exception, else a
    `TaskRunCancelled` with `message`."""
    return _not_ok(StateType.CANCELLED, data, message, name, TaskRunCancelled)


def Pending(*, message: str | None = None, name: str | None = None) -> State[Any]:
    """A PENDING state (not final)."""
    return State(StateType.PENDING, message=message or "", name=name)


def Running(*, message: str | None = None, name: str | None = None) -> State[Any]:
    """A RUNNING state (not final)."""
    return State(StateType.RUNNING, message=message or "", name=name)


def Retrying(*, message: str | None = None) -> State[Any]:
    """A RUNNING state named "Retrying" (not final)."""
    return State(StateType.RUNNING, message=message or "", name="Retrying")


def Scheduled(*, message: str | None = None, name: str | None = None) -> State[Any]:
    """A SCHEDULED state (not final; no run of ours is ever scheduled)."""
    return State(StateType.SCHEDULED, message=message or "", name=name)


def AwaitingRetry(*, message: str | None = None) -> State[Any]:
    """A SCHEDULED state named "AwaitingRetry" (not final)."""
    return State(StateType.SCHEDULED, message=message or "", name="AwaitingRetry")


def Late(*, message: str | None = None) -> State[Any]:
    """A SCHEDULED state named "Late" (not final)."""
    return State(StateType.SCHEDULED, message=message or "", name="Late")


def Paused(*, message: str | None = None, name: str | None = None) -> State[Any]:
    """A PAUSED state (not final; runs of ours never pause)."""
    return State(StateType.PAUSED, message=message or "", name=name)


def Cancelling(*, message: str | None = None, name: str | None = None) -> State[Any]:
    """A CANCELLING state (not final)."""
    return State(StateType.CANCELLING, message=message or "", name=name)


def _not_ok(
    kind: StateType, data: Any, message: str | None, name: str | None, error: type[BaseException]
) -> State[Any]:
    text = message or ""
    if isinstance(data, BaseException):
        return State(kind, exception=data, message=text, name=name)
    exception = error(text or f"the run ended {kind.value}")
    return State(kind, data=data, exception=exception, message=text, name=name)


# -- helpers ----------------------------------------------------------------------------


def is_state(obj: Any) -> bool:
    """Whether `obj` is a `State`."""
    return isinstance(obj, State)


def is_state_iterable(obj: Any) -> bool:
    """Whether `obj` is a non-empty list, tuple or set of States only."""
    return (
        isinstance(obj, (list, tuple, set, frozenset))
        and bool(obj)
        and all(isinstance(o, State) for o in obj)
    )


def get_state_exception(state: State[Any]) -> BaseException:
    """The exception that `state.result()` would raise.

    Raises:
        ValueError: `state` completed, or is not final: it has no exception.
    """
    exc = state.exception
    if exc is None:
        raise ValueError(f"{state!r} has no exception: only a FAILED, CRASHED or CANCELLED state has one")
    return exc


def raise_state_exception(state: State[Any]) -> None:
    """Raise the exception of a state that did not complete; do nothing otherwise.

    Raises:
        BaseException: The state's exception.
    """
    if state.type in _FINAL and state.type is not StateType.COMPLETED:
        raise get_state_exception(state)


def return_value_to_state(value: Any) -> State[Any]:
    """The final state of a run that returned `value`, by the rules of the module
    docstring of `taskrunners._returned` (a State as is, an aggregate for a
    collection of States or futures, else COMPLETED with `value`)."""
    from ._returned import returned_state

    state = returned_state(value)
    return state if state is not None else State(StateType.COMPLETED, data=value)


def exception_to_failed_state(exc: BaseException, message: str | None = None) -> State[Any]:
    """A FAILED state whose `result()` raises `exc`."""
    return State(StateType.FAILED, exception=exc, message=message or f"{type(exc).__name__}: {exc}")


def exception_to_crashed_state(exc: BaseException, message: str | None = None) -> State[Any]:
    """A CRASHED state whose `result()` raises `exc`."""
    return State(StateType.CRASHED, exception=exc, message=message or f"{type(exc).__name__}: {exc}")


class StateGroup:
    """Counts over a collection of states, as Prefect's `StateGroup` gives them.

    Attributes:
        states: The states.
        total_count: How many there are.
        fail_count: How many are FAILED or CRASHED.
    """

    def __init__(self, states: Iterable[State[Any]]) -> None:
        self.states: list[State[Any]] = list(states)
        self.total_count: int = len(self.states)
        self.fail_count: int = sum(1 for s in self.states if s.type in (StateType.FAILED, StateType.CRASHED))

    def all_completed(self) -> bool:
        return all(s.type is StateType.COMPLETED for s in self.states)

    def any_failed(self) -> bool:
        return self.fail_count > 0

    def any_cancelled(self) -> bool:
        return any(s.type is StateType.CANCELLED for s in self.states)

    def all_final(self) -> bool:
        return all(s.type in _FINAL for s in self.states)

    def aggregate(self) -> State[Any]:
        """The aggregate state, with Prefect's rules and messages.

        Raises:
            ValueError: The group is empty.
        """
        if not self.states:
            raise ValueError("an empty StateGroup has no aggregate state")
        return aggregate(self.states)
