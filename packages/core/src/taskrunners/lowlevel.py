"""The runner-author API: what a task runner may use beyond the user-facing names.

Everything here is public and stable across 0.x minor versions; a runner package needs
nothing else from the core (no `taskrunners._*` module, no private attribute). The
guide is `docs/writing-a-runner.md`.

- Runs: `TaskRunner.prepare` gives a `PreparedRun` (the future, the upstream futures,
  and the methods that move the future); its `spec`, a `RunSpec`, is the picklable
  part to ship and `execute` wherever code runs.
- States: `State(...)` and `State.from_fields` build one, `State.fields()` reads one;
  a `DeferredState` holds a value that stays on a cluster until read.
- Context: `current_runner()`, `current_task_run()`, `using_runner()`.
- Slot lending: `blocking()` marks a wait on another run; a runner's worker threads
  install a hook with `worker_thread()` or `lending()` to lend their slot meanwhile.
- Shipping: `dumps` and `loads` (standard pickle, cloudpickle where it must);
  `RunSpec.not_serializable` and `RunSpec.dumps_state` turn an argument or a return
  value that cannot be pickled into a FAILED run that names it, the same on every
  runner; `State.to_wire` sends exceptions so that they always arrive, as themselves
  or as a `taskrunners.RemoteError` stand-in, with a `RemoteTraceback` as cause.
- Run logs: a run executed where no flow run is current returns its log records in
  its final state (`State.logs`, part of `State.fields()` and of its pickle), and a
  failure's traceback as text inside its exception; ship the state home whole and
  `PreparedRun.set_state` delivers both to the flow's loggers. `current_flow_run()`
  names the flow run in the flow's process.
- Engine options: `RunOptions` for context managers like `dask_options(...)`.
- Where runs ran: `add_location_hook` adds what only the runner knows (a worker's
  address) to the `RunLocation` the engine records for each run (`State.where`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import _context, _engine, _logging
from ._engine import PreparedRun, RunSpec
from ._location import LocationHook, RunLocation
from ._location import add_location_hook as _add_location_hook
from ._options import OptionSet, RunOptions
from ._runner import Capability, TaskRunner
from ._states import DeferredState, State, StateFields
from ._tracebacks import RemoteTraceback
from ._wire import dumps, loads

if TYPE_CHECKING:
    from ._engine import TaskRunInfo
    from ._logging import FlowRunInfo

__all__ = [
    "BlockingHook",
    "Capability",
    "DeferredState",
    "LocationHook",
    "OptionSet",
    "PreparedRun",
    "RemoteTraceback",
    "RunLocation",
    "RunOptions",
    "RunSpec",
    "State",
    "StateFields",
    "TaskRunner",
    "add_location_hook",
    "blocking",
    "blocking_hook",
    "current_flow_run",
    "current_runner",
    "current_task_run",
    "dumps",
    "lending",
    "loads",
    "using_runner",
    "worker_thread",
]

#: What a runner installs to lend a worker's slot: called when the thread starts
#: waiting on another run, it returns a context manager that is exited when the wait
#: ends.
BlockingHook = Callable[[], contextlib.AbstractContextManager[Any]]


def current_runner() -> TaskRunner | None:
    """The runner that `.submit()` and `.map()` reach here, or `None` outside any flow."""
    return _context.current_runner_var.get()


def current_flow_run() -> FlowRunInfo | None:
    """The `FlowRunInfo` of the flow run whose code (or task runs) runs here, or `None`
    (on a worker in another process there is none)."""
    return _logging.current_flow_run()


def current_task_run() -> TaskRunInfo | None:
    """The `TaskRunInfo` of the task run whose code runs here, or `None`."""
    return _context.current_task_run_var.get()


@contextlib.contextmanager
def using_runner(runner: TaskRunner | None) -> Iterator[None]:
    """Make `runner` the one that `.submit()` and `.map()` reach, for the `with` body.

    For a runner that executes code where no flow is running (a worker process or
    machine) and wants tasks there to submit to a runner of its own.
    """
    token = _context.current_runner_var.set(runner)
    try:
        yield
    finally:
        _context.current_runner_var.reset(token)


def blocking() -> contextlib.AbstractContextManager[None]:
    """Mark the calling thread as waiting on another run for the `with` body.

    `Future.result()`, `wait` and `as_completed` do it already; a runner calls it
    around any other wait of its own that runs in a task's thread (a client call that
    waits on the cluster, say). Waits may nest and interleave: the thread's hook lends
    its slot once, from the first wait that begins to the last that ends.
    """
    return _context.blocking()


def blocking_hook() -> BlockingHook | None:
    """The hook installed in the calling thread (to hand on to a helper thread)."""
    return _context.blocking_hook()


@contextlib.contextmanager
def lending(hook: BlockingHook | None) -> Iterator[None]:
    """Install `hook` in the calling thread for the `with` body, then restore the
    previous one.

    While the thread waits on another run (inside `blocking()`), the context manager
    that `hook()` returns is open: a Dask worker secedes from its pool there, a
    thread pool starts another worker.
    """
    previous = _context.blocking_hook()
    _context.set_blocking_hook(hook)
    try:
        yield
    finally:
        _context.set_blocking_hook(previous)


@contextlib.contextmanager
def worker_thread(hook: BlockingHook | None = None) -> Iterator[None]:
    """Set up a runner's long-lived worker thread for the `with` body.

    Installs `hook` (see `lending`) and runs the thread's async tasks on one event
    loop kept for the body, instead of a new loop per run; the loop is closed at the
    end.
    """
    previous = _context.blocking_hook()
    _context.set_blocking_hook(hook)
    _engine.keep_thread_event_loop()
    try:
        yield
    finally:
        _engine.close_thread_event_loop()
        _context.set_blocking_hook(previous)


def add_location_hook(hook: LocationHook) -> None:
    """Register a "where am I" hook in this process: what only the runner knows of
    where a run executes, for the run report.

    A runner's worker-side code calls it once per process (registering the same hook
    again does nothing). As a task run starts, the engine records its `RunLocation`:
    host, process id, thread name and id, and the `details` that the hooks return,
    called in the thread that runs the task. Keys are strings: `"worker"` names the
    worker (one row of the report's timeline); the Dask runner gives `dask_worker`, the
    Ray runner `ray_node` and `ray_worker`. The answer is computed once per thread and
    kept, so a hook must not depend on the run; one that raises, or that runs outside
    the runner's workers, is ignored (return `{}` there).

    A runner that sends final states as `State.fields()` sends `state.where` beside
    them and passes it to `State.from_fields(fields, where)` (a `DeferredState` takes
    `where=` too); pickled states carry it already.

    Args:
        hook: Called with no arguments in a worker thread; returns string keys and values.
    """
    _add_location_hook(hook)
