"""What a flow run keeps of its task runs while it runs, for its report.

A `Recording` is made per flow run and attached to the flow's runner; the runner adds
one small tuple per task run as the run becomes final (no value, no exception object:
their text only, so that the recording keeps nothing alive). The public side, a
`FlowRun` made from it on request, is `taskrunners.report`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import _context, _progress
from ._states import DeferredState, State, StateType

if TYPE_CHECKING:
    from ._engine import TaskRunInfo
    from ._location import RunLocation
    from ._progress import Display
    from ._runner import TaskRunner
    from .report import FlowRun

__all__ = ["FlowState", "Recording"]

_current_runner = _context.current_runner_var.get
_COMPLETED = StateType.COMPLETED

#: One task run, as recorded: (info, state type, state name, attempts, where, error text).
Entry = tuple["TaskRunInfo", StateType, str, int, "RunLocation | None", "str | None"]


class Recording:
    """The task runs of one flow run, as they become final (filled by its runner).

    It is also what the flow run sets up around its body to be seen: made by `begin`,
    it records from then on and shows progress if asked, until `close`.
    """

    __slots__ = (
        "_run",
        "children",
        "display",
        "end",
        "entries",
        "flow_name",
        "late",
        "runner",
        "start",
        "state",
    )

    def __init__(self, flow_name: str, runner: TaskRunner) -> None:
        self.flow_name = flow_name
        self.runner: type[TaskRunner] = type(runner)
        self.start = time.time()
        self.end: float | None = None
        self.state: State[Any] | None = None
        self.entries: list[Entry] = []
        self.children: list[Recording] = []
        self.late: dict[int, RunLocation] = {}  # run number -> where, learnt with a deferred value
        self.display: Display | None = None
        self._run: FlowRun | None = None

    @classmethod
    def begin(cls, name: str, runner: TaskRunner, progress: bool | None) -> Recording:
        """Start recording the runs of `runner` for a flow run named `name`, showing
        progress if `progress` (or, for `None`, the environment) says so."""
        recording = cls(name, runner)
        runner._record_into(recording)
        outer = _current_runner()  # the runner of the flow run this one is nested in, if any
        if outer is not None:
            parent = outer._recording()
            if parent is not None:
                parent.children.append(recording)
        if _progress.enabled(progress):
            recording.display = _progress.flow_display(name, runner, recording)
        return recording

    def close(self) -> None:
        """The flow's body and its runs are over: stop showing progress."""
        if self.display is not None:
            _progress.close_display(self.display)

    def outcome(self, state: State[Any], return_state: bool) -> Any:
        """The flow call's return: its state with the report (`return_state`), or its value."""
        self.end = time.time()
        self.state = state
        if return_state:
            return FlowState.of(state, self)
        return state.result()

    def add(self, info: TaskRunInfo, state: State[Any]) -> None:
        """Record a run that became final (called by the runner, once per run: keep it cheap)."""
        kind = state.type
        where = state.where
        if kind is _COMPLETED:
            if where is None and type(state) is not State:
                self._later(info, state)
            self.entries.append((info, kind, state.name, state.attempt, where, None))
            return
        exc = state.exception
        error = None if exc is None else f"{type(exc).__qualname__}: {exc}"
        self.entries.append((info, kind, state.name, state.attempt, where, error))

    def _later(self, info: TaskRunInfo, state: State[Any]) -> None:
        if isinstance(state, DeferredState) and not state.loaded:
            number = info.number  # where it ran comes with its value, if someone reads it
            state._on_fill = lambda filled: self._filled(number, filled)

    def _filled(self, number: int, state: DeferredState[Any]) -> None:
        if state.where is not None:
            self.late[number] = state.where

    def location(self, info: TaskRunInfo, where: RunLocation | None) -> RunLocation | None:
        """Where a recorded run ran: as recorded, or as learnt later with its value."""
        if where is None and self.late:
            return self.late.get(info.number)
        return where

    @property
    def runner_name(self) -> str:
        """The runner's class as `package.Class`."""
        return f"{self.runner.__module__.split('.')[0]}.{self.runner.__qualname__}"

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
