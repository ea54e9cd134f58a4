"""What is running where: the current flow run, the current task run, and blocking hooks.

Two context variables say which flow run (and so which runner) `.submit()` reaches, and
which task run the code is part of. They travel with `contextvars.copy_context()`, so a
runner that runs a task in another thread of this process passes them on by running the
task inside the context captured at submit time.

The thread-local `blocking` hook lets a runner's worker thread lend its slot while the
task it runs waits on a future (see `blocking()`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ._errors import NoActiveFlowError

if TYPE_CHECKING:
    from ._engine import TaskRunInfo
    from ._runner import TaskRunner

current_runner_var: ContextVar[TaskRunner | None] = ContextVar("taskrunners_runner", default=None)
current_task_run_var: ContextVar[TaskRunInfo | None] = ContextVar("taskrunners_task_run", default=None)

_thread = threading.local()


def require_runner(task_name: str, method: str) -> TaskRunner:
    """The runner of the flow run the caller is inside.

    Raises:
        NoActiveFlowError: No flow is running here.
    """
    runner = current_runner_var.get()
    if runner is None:
        raise NoActiveFlowError(
            f"{task_name}.{method}() needs a running flow to hand the run to its task "
            f"runner, and none is running here. Call it inside a function decorated with "
            f"@flow, or call the task directly ({task_name}(...)) to run it in this thread."
        )
    return runner


def track_prepared() -> list[Any] | None:
    """Start collecting the calls that runners prepare in this thread; returns the
    previous collector, for `stop_tracking`."""
    previous = getattr(_thread, "prepared", None)
    _thread.prepared = []
    return previous


def prepared_calls() -> list[Any]:
    """The runs prepared in this thread since `track_prepared`."""
    return getattr(_thread, "prepared", None) or []


def stop_tracking(previous: list[Any] | None) -> None:
    _thread.prepared = previous


def set_blocking_hook(hook: Callable[[], contextlib.AbstractContextManager[Any]] | None) -> None:
    """Install, in the calling thread, what to do while this thread waits on a future.

    A runner's worker thread installs a hook that lends its slot to another worker for
    the duration of the wait, so that a task which submits tasks and waits for them
    cannot deadlock a bounded pool.
    """
    _thread.blocking = hook
    _thread.depth = 0


def blocking_hook() -> Callable[[], contextlib.AbstractContextManager[Any]] | None:
    """The hook installed in the calling thread, to hand on to a helper thread."""
    return getattr(_thread, "blocking", None)


def begin_blocking() -> None:
    """The calling thread starts waiting on another run (calls nest and interleave)."""
    hook = getattr(_thread, "blocking", None)
    if hook is None:
        return
    _thread.depth += 1
    if _thread.depth == 1:
        manager = hook()
        manager.__enter__()
        _thread.lent = manager


def end_blocking() -> None:
    """The calling thread stops waiting (pairs with one `begin_blocking`)."""
    if getattr(_thread, "blocking", None) is None:
        return
    _thread.depth -= 1
    if _thread.depth == 0:
        manager, _thread.lent = _thread.lent, None
        manager.__exit__(None, None, None)


@contextlib.contextmanager
def blocking() -> Iterator[None]:
    """Mark the calling thread as blocked (waiting on another run) for the `with` body.

    Waits may nest (a wait inside a retry delay) or interleave (coroutines of one async
    task awaiting futures on the thread's event loop): the thread lends its slot once,
    from the first wait that begins to the last that ends.
    """
    begin_blocking()
    try:
        yield
    finally:
        end_blocking()
