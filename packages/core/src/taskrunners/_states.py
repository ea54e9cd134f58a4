"""States: where a task run stands, and what it produced.

A run moves through these types::

    PENDING ──> RUNNING ──> COMPLETED
       │           │  ╰───> FAILED      the task's code raised (after its retries)
       │           ╰──────> CRASHED     something outside its code ended it
       ├──────────────────> FAILED      an upstream run did not complete (never ran)
       ╰──────────────────> CRASHED / CANCELLED

A RUNNING run that is retried stays RUNNING, with `attempt` counting up. COMPLETED,
FAILED, CRASHED and CANCELLED are final: a run never leaves them.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from ._errors import TaskRunnersError
from ._location import RunLocation

__all__ = ["DeferredState", "State", "StateFields", "StateType"]

R = TypeVar("R", covariant=True)  # a State holds its value read-only


class StateType(enum.Enum):
    """The kind of a `State`.

    The engine moves runs through PENDING, RUNNING and the four final types.
    SCHEDULED, PAUSED and CANCELLING exist so that states made with Prefect's
    constructors (`taskrunners.states.Scheduled`, `Paused`, `Cancelling`) keep their
    type; no run of ours enters them.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"
    SCHEDULED = "SCHEDULED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"

    # Members are singletons: identity hashing keeps `state.type in ...` at C speed.
    if TYPE_CHECKING:

        def __hash__(self) -> int: ...

    else:
        __hash__ = object.__hash__

    @property
    def is_final(self) -> bool:
        """Whether a run in this state type will never change state again."""
        return self in _FINAL


_FINAL = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
_NOT_OK = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
_TITLES = {member: member.value.title() for member in StateType}


class StateFields(NamedTuple):
    """Every field of a `State`, as plain values: what `State.fields()` returns and
    `State.from_fields()` takes.

    It is also the start of a state's wire form (`State.to_wire()`): these nine values
    (the `StateType` as its string value), then where the run ran, so a runner whose
    engine has its own serializer can send states as tuples of builtins. `logs` may be
    left out (eight values), and so may `where`.
    """

    type: StateType
    name: str
    message: str
    timestamp: float
    attempt: int
    started: float | None
    data: Any
    exception: BaseException | None
    logs: tuple[dict[str, Any], ...] = ()


class State(Generic[R]):
    """Where a task run (or flow run) stands; a final state also holds its outcome.

    States are immutable snapshots created by the engine; users read them.

    Attributes:
        type: The `StateType`.
        name: A short label, usually the type's title ("Completed"), or a more precise
            one such as "UpstreamFailed" or "TimedOut".
        message: A human-readable explanation, empty when there is nothing to add.
        timestamp: When the run entered this state (seconds since the epoch).
        attempt: How many attempts had started when this state was entered (0 for a
            run that never started).
        started: When the first attempt started, or `None` if the run never started.
        where: Where the run executed (a `RunLocation`: host, process, thread and
            what the runner adds), on the final state the engine made there; `None` for a
            run that never started, or a state made elsewhere.
        logs: Log records the run made where it executed (a worker elsewhere), as
            dicts of `logging.LogRecord` attributes, not yet delivered to the flow's
            process; empty once delivered (see `get_run_logger`).
    """

    __slots__ = (
        "type",
        "name",
        "message",
        "timestamp",
        "attempt",
        "started",
        "_data",
        "_exception",
        "where",
        "logs",
    )

    def __init__(
        self,
        type: StateType,
        *,
        data: Any = None,
        exception: BaseException | None = None,
        name: str | None = None,
        message: str = "",
        attempt: int = 0,
        started: float | None = None,
        timestamp: float | None = None,
        where: RunLocation | None = None,
        logs: tuple[dict[str, Any], ...] = (),
    ) -> None:
        self.type: StateType = type
        self.name: str = name or _TITLES[type]
        self.message: str = message
        self.timestamp: float = time.time() if timestamp is None else timestamp
        self.attempt: int = attempt
        self.started: float | None = started
        self.where: RunLocation | None = where
        self._data = data
        self._exception = exception
        self.logs: tuple[dict[str, Any], ...] = logs

    # -- predicates -------------------------------------------------------------------

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_final(self) -> bool:
        return self.type in _FINAL

    # -- outcome ----------------------------------------------------------------------

    @property
    def exception(self) -> BaseException | None:
        """The exception of a FAILED, CRASHED or CANCELLED state, else `None`."""
        return self._exception

    def result(self, raise_on_failure: bool = True) -> R:
        """The value the run returned.

        Args:
            raise_on_failure: For a FAILED, CRASHED or CANCELLED state, raise its
                exception (the very object the task raised) if true, return it if false.

        Returns:
            The run's return value, or its exception when `raise_on_failure` is false;
            but a state that did not complete and holds data (the aggregate of the
            runs a flow returned, say) returns that data.

        Raises:
            BaseException: The run's exception, for a state that did not complete.
            TaskRunnersError: The state is not final, so there is no result yet.
        """
        if self.type is StateType.COMPLETED:
            data: R = self._data
            return data
        if self.type in _NOT_OK:
            exc = self._exception
            if exc is None:  # pragma: no cover - every non-completed final state has one
                exc = TaskRunnersError(f"run ended {self.type.value} without an exception")
            if raise_on_failure:
                raise exc
            if self._data is not None:
                return self._data  # type: ignore[no-any-return]
            return exc  # type: ignore[return-value]
        raise TaskRunnersError(
            f"the run is {self.type.value}, so it has no result yet; "
            "wait for its future (future.result()) instead of reading a state snapshot"
        )

    # -- fields, for runner implementations -------------------------------------------

    def fields(self) -> StateFields:
        """Every field of the state, the value included (a `DeferredState` loads it).

        Raises:
            TaskRunnersError: A `DeferredState` whose value cannot be fetched.
        """
        return StateFields(
            self.type,
            self.name,
            self.message,
            self.timestamp,
            self.attempt,
            self.started,
            self._data,
            self._exception,
            self.logs,
        )

    @classmethod
    def from_fields(
        cls, fields: StateFields | tuple[Any, ...], where: RunLocation | None = None
    ) -> State[Any]:
        """A plain `State` with these fields (the inverse of `fields()`).

        `type` may be a `StateType` or its string value (the wire form). `fields` may
        have eight items (no `logs`), nine, or ten: `State.to_wire()`'s form, whose
        tenth is where the run ran. A runner that sends `where` beside the fields (a
        `RunLocation` is a tuple of builtins) passes it as `where`.

        Raises:
            ValueError: `type` names no `StateType`.
        """
        if len(fields) > 9:  # `to_wire()` form: the state's `where` follows its fields
            carried = tuple(fields)[9]
            if where is None and carried is not None:
                where = carried if type(carried) is RunLocation else RunLocation(*carried)
        if len(fields) == 8:
            kind, name, message, timestamp, attempt, started, data, exception = fields
            logs: tuple[Any, ...] = ()
        else:
            kind, name, message, timestamp, attempt, started, data, exception, logs = fields[:9]
        if type(kind) is not StateType:
            kind = StateType(kind)
        state: State[Any] = object.__new__(State)
        state.type = kind
        state.name = name
        state.message = message
        state.timestamp = timestamp
        state.attempt = attempt
        state.started = started
        state.where = where
        state._data = data
        state._exception = exception
        state.logs = logs
        return state

    def to_wire(self) -> tuple[Any, ...]:
        """The state as it travels: `fields()` with the type as its string value and
        the exception wrapped so that it always pickles, and unpickles to itself where
        it can be rebuilt, or to a `RemoteError` stand-in that keeps its type's name,
        its message and its traceback as text; then `where` (a tuple of builtins, or
        `None`) as a tenth item. `State.from_fields` takes it back; a `State` pickles as
        this tuple.

        Raises:
            TaskRunnersError: A `DeferredState` whose value cannot be fetched.
        """
        fields = self.fields()
        exception = fields[7]
        if exception is not None:
            from ._portable import portable

            fields = fields._replace(exception=portable(exception))
        return (fields[0].value, *fields[1:], None if self.where is None else tuple(self.where))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_state_from_wire, self.to_wire())

    def __repr__(self) -> str:
        if self.type is StateType.COMPLETED:
            detail = f"result={_short_repr(self._data)}"
        elif self._exception is not None:
            detail = f"exception={self._exception!r}"
        else:
            detail = ""
        if self.message:
            detail = f"{detail}, message={self.message!r}" if detail else f"message={self.message!r}"
        return f"{self.name}({detail})"


def _state_from_wire(*fields: Any) -> State[Any]:
    state: State[Any] = State.from_fields(fields)
    return state


class DeferredState(State[R]):
    """A final state whose value stays elsewhere (on a cluster) until someone reads it.

    For runner implementations. A runner that learns that a run completed, without its
    value, makes a `DeferredState` with the engine's handle on the value and a `fetch`
    callable; the first `result()` calls `fetch()`, which returns the run's full final
    state, and keeps its value (and `attempt` and `started`, which only the worker knew
    exactly). A runner may also bring many values at once, before its cluster goes,
    with `load_all()` or `fill()`. Only COMPLETED states are deferred: a failure
    carries its exception.

    Pickling a deferred state fetches the value and sends a plain `State`.

    Args:
        fetch: Returns the run's full final `State` from wherever it is; called at most
            once, in whatever thread first needs the value.
        handle: The engine's own handle on the value (a `distributed.Future`, a Ray
            `ObjectRef`), kept for the runner in `handle` until the value is here.
        name: As for `State`.
        message: As for `State`.
        attempt: As for `State` (the worker's figure replaces it once fetched).
        started: As for `State` (the worker's figure replaces it once fetched).
        timestamp: As for `State`.
        where: As for `State` (the worker's figure replaces it once fetched).
        logs: As for `State`.
    """

    __slots__ = ("__weakref__", "_fetch", "_fetch_lock", "_on_fill", "handle", "_logs_due")

    def __init__(
        self,
        fetch: Callable[[], State[R]],
        *,
        handle: Any = None,
        name: str | None = None,
        message: str = "",
        attempt: int = 0,
        started: float | None = None,
        timestamp: float | None = None,
        where: RunLocation | None = None,
        logs: tuple[dict[str, Any], ...] = (),
    ) -> None:
        super().__init__(
            StateType.COMPLETED,
            name=name,
            message=message,
            attempt=attempt,
            started=started,
            timestamp=timestamp,
            where=where,
            logs=logs,
        )
        self._fetch: Callable[[], State[R]] | None = fetch
        self._fetch_lock = threading.Lock()
        self._on_fill: Callable[[DeferredState[R]], object] | None = None  # the run report's
        self.handle: Any = handle
        self._logs_due = not logs  # the full state's records, if any, are delivered on fill

    @property
    def loaded(self) -> bool:
        """Whether the value is in this process."""
        return self._fetch is None

    def load(self) -> None:
        """Bring the value here (once; later calls return at once).

        Raises:
            TaskRunnersError: `fetch` failed; the message says why and the original
                error is its `__cause__`.
        """
        if self._fetch is None:
            return
        with self._fetch_lock:
            fetch = self._fetch
            if fetch is None:
                return
            try:
                full = fetch()
            except Exception as exc:
                raise TaskRunnersError(
                    f"the value of this run stayed where it ran and cannot be fetched now "
                    f"({type(exc).__name__}: {exc}). Read results while the flow runs, or keep "
                    "its futures until the flow ends: the runner brings held values home then."
                ) from exc
            self.fill(full)

    def fill(self, full: State[R]) -> None:
        """Take the value (and `attempt`, `started`) from `full`, the run's whole final
        state; for a runner that fetched many values at once. Log records in `full`
        that did not come with the deferred state are delivered to this process's
        loggers now (late: when the value is read)."""
        if self._logs_due and full.logs:
            from ._logging import deliver

            deliver(full.logs, None)
        self._logs_due = False
        self._data = full._data
        self.attempt: int = full.attempt
        self.started: float | None = full.started
        if full.where is not None:
            self.where: RunLocation | None = full.where
        self._fetch = None
        self.handle = None
        on_fill, self._on_fill = self._on_fill, None
        if on_fill is not None:
            on_fill(self)

    @staticmethod
    def load_all(
        states: Iterable[DeferredState[Any]], fetch_many: Callable[[list[Any]], Sequence[State[Any]]]
    ) -> None:
        """Bring the values of `states` here, many in one call to the engine.

        For a runner about to leave its cluster: it keeps its deferred states in a
        `weakref.WeakSet`, and loads those that someone still holds, whose values could
        not be read once it has gone. `fetch_many(handles)` gets the `handle`s of the
        states not loaded yet and returns their full final states, in the same order.
        If it returns fewer (the engine skipped values it lost), each state is loaded on
        its own instead, and those that fail stay unloaded (reading them raises).

        Args:
            states: Deferred states; those loaded already, or without a handle, are skipped.
            fetch_many: Returns the full final states of many handles at once.

        Raises:
            Exception: Whatever `fetch_many` raised; no state was loaded.
        """
        pending = [state for state in list(states) if not state.loaded and state.handle is not None]
        if not pending:
            return
        fulls = fetch_many([state.handle for state in pending])
        if len(fulls) == len(pending):
            for state, full in zip(pending, fulls):
                state.fill(full)
            return
        for state in pending:
            try:
                state.load()
            except TaskRunnersError:  # lost with its worker, say: reading it says so
                pass

    def result(self, raise_on_failure: bool = True) -> R:
        if self._fetch is not None:
            self.load()
        return super().result(raise_on_failure)

    def fields(self) -> StateFields:
        if self._fetch is not None:
            self.load()
        return super().fields()

    def __repr__(self) -> str:
        if self._fetch is not None:
            return f"{self.name}(result=<not fetched yet>)"
        return super().__repr__()


def fast_state(
    type: StateType,
    data: Any,
    attempt: int,
    started: float | None,
    where: RunLocation | None = None,
    _now: Any = time.time,
    _new: Any = object.__new__,
) -> State[Any]:
    """`State(type, data=data, attempt=attempt, started=started)`, at half the cost.

    For the engine's hot path (a RUNNING state and a COMPLETED one per run).
    """
    state: State[Any] = _new(State)
    state.type = type
    state.name = _TITLES[type]
    state.message = ""
    state.timestamp = _now()
    state.attempt = attempt
    state.started = started
    state.where = where
    state._data = data
    state._exception = None
    state.logs = ()
    return state


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
