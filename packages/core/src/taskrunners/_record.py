"""What a flow run keeps of its task runs while it runs, for its report.

A `Recording` is made per flow run and attached to the flow's runner; the runner adds
one small tuple per task run as the run becomes final (no value, no exception object:
their text only, so that the recording keeps nothing alive). The public side, a
`FlowRun` made from it on request, is `taskrunners.report`.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ._states import _NOT_OK, DeferredState, State

if TYPE_CHECKING:
    from ._engine import TaskRunInfo
    from ._location import RunLocation
    from ._runner import TaskRunner
    from .report import FlowRun

__all__ = ["FlowState", "Recording", "current_recording"]

#: The recording of the flow run whose body runs here (to link a nested flow run to it).
current_recording: ContextVar[Recording | None] = ContextVar("taskrunners_recording", default=None)

#: One task run, as recorded: (info, state type value, state name, attempts, where, error text).
Entry = tuple["TaskRunInfo", str, str, int, "RunLocation | None", "str | None"]


class Recording:
    """The task runs of one flow run, as they become final (filled by its runner)."""

    __slots__ = ("flow_name", "runner", "start", "end", "state", "entries", "children", "late", "_run")

    def __init__(self, flow_name: str, runner: TaskRunner) -> None:
        self.flow_name = flow_name
        self.runner = f"{type(runner).__module__.split('.')[0]}.{type(runner).__qualname__}"
        self.start = time.time()
        self.end: float | None = None
        self.state: State[Any] | None = None
        self.entries: list[Entry] = []
        self.children: list[Recording] = []
        self.late: dict[int, RunLocation] = {}  # run number -> where, learnt with a deferred value
        self._run: FlowRun | None = None

    def add(self, info: TaskRunInfo, state: State[Any]) -> None:
        """Record a run that became final (called by the runner)."""
        error = None
        if state.type in _NOT_OK:
            exc = state.exception
            error = None if exc is None else f"{type(exc).__qualname__}: {exc}"
        where = state.where
        if where is None and isinstance(state, DeferredState) and not state.loaded:
            number = info.number  # where it ran comes with its value, if someone reads it
            state._on_fill = lambda filled: self._filled(number, filled)
        self.entries.append((info, state.type.value, state.name, state.attempt, where, error))

    def _filled(self, number: int, state: DeferredState[Any]) -> None:
        if state.where is not None:
            self.late[number] = state.where

    def location(self, info: TaskRunInfo, where: RunLocation | None) -> RunLocation | None:
        """Where a recorded run ran: as recorded, or as learnt later with its value."""
        if where is None and self.late:
            return self.late.get(info.number)
        return where

    def finish(self, state: State[Any]) -> None:
        """The flow run ended in `state`."""
        self.end = time.time()
        self.state = state

    def flow_run(self) -> FlowRun:
        """The public record (made once, on first request)."""
        if self._run is None:
            from .report import FlowRun

            self._run = FlowRun._from_recording(self)
        return self._run


class FlowState(State[Any]):
    """The final state of a flow run: a `State` with the run's report as `run`."""

    __slots__ = ("_recording",)
    _recording: Recording

    @property
    def run(self) -> FlowRun:
        """The flow run's report (a `taskrunners.report.FlowRun`): every task run, where
        and when it ran, and how it ended."""
        return self._recording.flow_run()

    @classmethod
    def of(cls, state: State[Any], recording: Recording) -> FlowState:
        """`state` with `recording` attached."""
        flow_state: FlowState = object.__new__(cls)
        for name in State.__slots__:
            setattr(flow_state, name, getattr(state, name))
        flow_state._recording = recording
        return flow_state
