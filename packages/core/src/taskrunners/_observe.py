"""What a flow run sets up around its body to be seen: its recording and its progress."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _progress
from ._record import FlowState, Recording, current_recording

if TYPE_CHECKING:
    from ._runner import TaskRunner
    from ._states import State

__all__ = ["FlowWatch"]


class FlowWatch:
    """Records one flow run's task runs and shows its progress, from start to `close`."""

    __slots__ = ("recording", "display", "_token")

    def __init__(self, name: str, runner: TaskRunner, progress: bool | None) -> None:
        recording = self.recording = Recording(name, runner)
        runner._record_into(recording)
        parent = current_recording.get()
        if parent is not None:
            parent.children.append(recording)
        self._token = current_recording.set(recording)
        self.display = _progress.flow_display(name, runner, recording) if _progress.enabled(progress) else None

    def close(self) -> None:
        """The flow's body and its runs are over: stop recording and showing."""
        current_recording.reset(self._token)
        if self.display is not None:
            _progress.close_display(self.display)

    def outcome(self, state: State[Any], return_state: bool) -> Any:
        """The flow call's return: its state with the report (`return_state`), or its value."""
        self.recording.finish(state)
        if return_state:
            return FlowState.of(state, self.recording)
        return state.result()
