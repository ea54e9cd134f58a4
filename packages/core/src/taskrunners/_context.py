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


def set_blocking_hook(hook: Callable[[], contextlib.AbstractContextManager[Any]] | None) -> None:
    """Install, in the calling thread, what to do while this thread waits on a future.

    A runner's worker thread installs a hook that lends its slot to another worker for
    the duration of the wait, so that a task which submits tasks and waits for them
    cannot deadlock a bounded pool.
    """
    _thread.blocking = hook


@contextlib.contextmanager
def blocking() -> Iterator[None]:
    """Mark the calling thread as blocked (waiting on another run) for the `with` body."""
    hook = getattr(_thread, "blocking", None)
    if hook is None:
        yield
        return
    with hook():
        yield
