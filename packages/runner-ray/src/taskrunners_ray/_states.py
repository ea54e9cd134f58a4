"""Final states whose value stays in Ray's object store until someone reads it.

The remote function returns one object: the run's final `State`, pickled. When the
flow's process learns that a run ended, it asks Ray for the object's size, which Ray
knows without moving the object. A small object (Ray sends objects under 100 KiB
inline to the process that owns them, so it is here already) is read at once. A large
one is a completed run's value (the worker keeps failed states small, see `portable`):
the future gets a `RayState` that fetches it on the first `result()`. So a large value
moves from the worker that made it to the workers that use it, and reaches the flow's
process only if asked for.
"""

from __future__ import annotations

import pickle
import time
from typing import Any

from taskrunners import State, StateType, TaskRunInfo

__all__ = ["LAZY_MIN_BYTES", "RayState", "portable"]

_COMPLETED = StateType.COMPLETED

#: Objects of at least this size are left in the object store until read.
LAZY_MIN_BYTES = 64 * 1024
#: A failed state larger than this once pickled has its exception replaced by a short one.
FAILURE_MAX_BYTES = 8 * 1024


def portable(state: State[Any]) -> State[Any]:
    """`state`, or a copy whose exception can be pickled and is small.

    Only called for states with an exception. The flow's process tells a completed
    run's large value from a failure by size alone, so a failure must stay small.
    """
    exc = state.exception
    problem: str | None = None
    try:
        size = len(pickle.dumps(exc, pickle.HIGHEST_PROTOCOL))
    except Exception as error:
        try:
            import cloudpickle  # type: ignore[import-untyped]

            size = len(cloudpickle.dumps(exc, pickle.HIGHEST_PROTOCOL))
        except Exception:
            problem = f"it cannot be pickled: {error!r}"
            size = 0
    if problem is None and size <= FAILURE_MAX_BYTES:
        return state
    if problem is None:
        problem = f"it is {size:,} bytes once pickled, more than {FAILURE_MAX_BYTES:,}"
    text = str(exc)
    if len(text) > 2000:
        text = text[:2000] + "..."
    replacement = RuntimeError(
        f"{type(exc).__module__}.{type(exc).__qualname__}: {text} (the original exception "
        f"does not travel back from the Ray worker: {problem})"
    )
    return State(
        state.type,
        exception=replacement,
        name=state.name,
        message=state.message,
        attempt=state.attempt,
        started=state.started,
        timestamp=state.timestamp,
    )


class RayState(State[Any]):
    """A COMPLETED state whose value (and attempt count) stays in Ray's object store
    until first used; `result()` fetches it."""

    __slots__ = ("__weakref__", "_ref", "_run")

    def __init__(self, ref: Any, run: TaskRunInfo) -> None:
        super().__init__(_COMPLETED, timestamp=time.time())
        self._ref = ref
        self._run = run

    @property
    def fetched(self) -> bool:
        """Whether the value is in this process already."""
        return self._ref is None

    def fetch(self) -> None:
        """Bring the value into this process (a no-op once done).

        Raises:
            RuntimeError: Ray is no longer running or connected in this process.
        """
        ref = self._ref
        if ref is None:
            return
        import ray

        if not ray.is_initialized():
            raise RuntimeError(
                f"the value of task run {self._run.name!r} stayed in Ray's object store, and "
                "this process is no longer connected to Ray; read results before the Ray "
                "they ran on shuts down"
            )
        self.adopt(ray.get(ref))

    def adopt(self, pickled: bytes) -> None:
        """Take the value (and the attempt count, start time) from the pickled state."""
        from ._pickling import loads

        full: State[Any] = loads(pickled)
        self._data = full._data
        self.attempt = full.attempt
        self.started = full.started
        if self._run.start is None:
            self._run.start = full.started
        self._ref = None

    def result(self, raise_on_failure: bool = True) -> Any:
        if self._ref is not None:
            self.fetch()
        return self._data

    def __reduce__(self) -> Any:
        # Sent elsewhere (to a run of another runner, say): as a plain state, value included.
        self.fetch()
        return (_plain, (self.attempt, self.started, self.timestamp, self._data))

    def __repr__(self) -> str:
        if self._ref is not None:
            return "Completed(result=<in Ray's object store>)"
        return super().__repr__()


def _plain(attempt: int, started: float | None, timestamp: float, data: Any) -> State[Any]:
    return State(_COMPLETED, data=data, attempt=attempt, started=started, timestamp=timestamp)
