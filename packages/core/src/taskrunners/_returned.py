"""What a run ends in when its function returns States or futures (Prefect's rules).

- A returned `State` is the run's final state (a copy of it).
- A returned `Future` is waited for; the run ends as that run ended (its type, name,
  message and exception), with its value as data.
- A returned list, tuple or set whose every item is a `State` or a `Future` ends in
  their aggregate: COMPLETED "All states completed." when all completed; else FAILED
  "n/N states failed." when any failed or crashed; else CANCELLED "n/N states
  cancelled." when any was cancelled; else FAILED "n/N states are not final.". Its
  data is the collection, each future replaced by its value (or its exception, for a
  run that did not complete), each State kept as it is.

Anything else is ordinary data: `returned_state` answers `None` and the caller makes
the usual COMPLETED state.
"""

from __future__ import annotations

from typing import Any

from ._errors import FailedRun
from ._futures import Future
from ._states import _FINAL, State, StateType

__all__ = ["MARKERS", "aggregate", "returned_state"]

#: The types whose instances may change how a run ends when returned.
MARKERS = (State, Future, list, tuple, set, frozenset)
_ITEMS = (State, Future)


def returned_state(value: Any, attempt: int | None = None, started: float | None = None) -> State[Any] | None:
    """The final state of a run whose function returned `value`, or `None` when
    `value` is plain data (the run completes with it).

    `attempt` and `started` are the run's (a task's); `None` keeps those of a returned
    state (a flow's)."""
    if isinstance(value, State):
        return _adopt(value, value, attempt, started)
    if isinstance(value, Future):
        value.wait()
        value._observed = True  # returned: the run answers for its failure
        return _adopt(value.peek(), _value_of(value), attempt, started)
    if isinstance(value, (list, tuple, set, frozenset)) and value:
        for item in value:
            if not isinstance(item, _ITEMS):
                return None
        state = aggregate(value)
        if attempt is not None:
            state.attempt = attempt
            state.started = started
        return state
    return None


def aggregate(items: Any) -> State[Any]:
    """The aggregate state of a non-empty collection of States and futures.

    Futures are waited for first. See the module docstring for the rules.
    """
    states: list[State[Any]] = []
    data: list[Any] = []
    for item in items:
        if isinstance(item, Future):
            item.wait()
            item._observed = True
            states.append(item.peek())
            data.append(_value_of(item))
        else:
            states.append(item)
            data.append(item)
    rebuilt = _like(items, data)
    total = len(states)
    failed = [s for s in states if s.type is StateType.FAILED or s.type is StateType.CRASHED]
    if not failed and all(s.type is StateType.COMPLETED for s in states):
        return State(StateType.COMPLETED, data=rebuilt, message="All states completed.")
    if failed:
        message = f"{len(failed)}/{total} states failed."
        return State(
            StateType.FAILED, data=rebuilt, message=message, exception=_exception(failed[0], message)
        )
    cancelled = [s for s in states if s.type is StateType.CANCELLED]
    if cancelled:
        message = f"{len(cancelled)}/{total} states cancelled."
        return State(
            StateType.CANCELLED, data=rebuilt, message=message, exception=_exception(cancelled[0], message)
        )
    unfinished = sum(1 for s in states if s.type not in _FINAL)
    message = f"{unfinished}/{total} states are not final."
    return State(StateType.FAILED, data=rebuilt, message=message, exception=FailedRun(message))


def _adopt(source: State[Any], data: Any, attempt: int | None, started: float | None) -> State[Any]:
    """A fresh final state like `source` (which a user may share between runs)."""
    if attempt is None:
        attempt, started = source.attempt, source.started
    if source.type is StateType.COMPLETED:
        value = source.result() if data is source else data
        return State(
            StateType.COMPLETED,
            data=value,
            name=source.name,
            message=source.message,
            attempt=attempt,
            started=started,
        )
    if source.type in _FINAL:
        return State(
            source.type,
            data=None if data is source else source._data,
            exception=_exception(source, source.message),
            name=source.name,
            message=source.message,
            attempt=attempt,
            started=started,
        )
    message = (
        f"the run returned a {source.type.value} state ({source.name}), which is not final; "
        "return a final state (Completed, Failed, Crashed or Cancelled)"
    )
    return State(
        StateType.FAILED, exception=FailedRun(message), message=message, attempt=attempt, started=started
    )


def _exception(state: State[Any], message: str) -> BaseException:
    exc = state.exception
    if exc is not None:
        return exc
    return FailedRun(message or f"the run returned a {state.type.value} state")


def _value_of(future: Future[Any]) -> Any:
    state = future.peek()
    return state.result(raise_on_failure=False) if state.type is StateType.COMPLETED else state.exception


def _like(items: Any, data: list[Any]) -> Any:
    cls = type(items)
    if isinstance(items, list):
        return data
    if isinstance(items, tuple):
        if hasattr(cls, "_fields"):
            return cls(*data)
        return tuple(data)
    if isinstance(items, frozenset):
        return frozenset(data)
    return set(data)
