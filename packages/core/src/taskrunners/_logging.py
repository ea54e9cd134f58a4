"""Run logs: `get_run_logger()`, `log_prints`, the engine's lines, and their way home.

Loggers: `taskrunners.flow_runs` (a flow run's lines) and `taskrunners.task_runs` (a
task run's), both under `taskrunners`. Each record made through a run logger carries
`flow_run_name`, `flow_run_id`, `task_run_name`, `task_run_id` and `worker` (host, process
id and thread where the code ran).

The way home: a run that executes where no flow run is current (a worker process, a
Dask or Ray worker, a Dask worker thread) runs with a *capture* in its context: its
records are kept as plain dicts, in order, and travel back in its final `State`
(`State.logs`, part of the state's fields and so of its pickle), whatever the state.
`PreparedRun.set_state` delivers them in the flow's process, before the run's future
becomes final, to the loggers and handlers there, filling in the flow run. The level
is applied there, by the flow process's own logging configuration. A runner with a
channel home passes `RunSpec.execute(log_sink=...)` instead: the capture is then a
`Streaming` one that hands each record to the sink as it is made, and the flow's
process gets them through `PreparedRun.deliver_logs` (a worker that dies mid-run has
sent what its run logged).

The default: when the application has not configured logging (the root logger has no
handler) and stderr is a terminal (or `TASKRUNNERS_LOGGING_LEVEL` is set), the first
flow run puts a readable handler on the `taskrunners` logger, at INFO (or that
variable's level). Each flow run checks again, and takes the handler away once the
application has configured logging itself.

Levels: a flow run's start and end at INFO; a task run's start and end at DEBUG (a
10,000-run map would print 20,000 lines at INFO, and formatting them would cost more
than the runs); a retry at WARNING; a final failure or crash at ERROR, with the
traceback. Per-run lines are only made when DEBUG is on for `taskrunners.task_runs`
when the flow run starts: the hot path reads one module flag.
"""

from __future__ import annotations

import builtins
import os
import sys
import threading
from contextvars import ContextVar
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import _context
from ._flowrun import FlowRunInfo

if TYPE_CHECKING:
    import logging

    from ._engine import PreparedRun, TaskRunInfo
    from ._states import State

__all__ = ["LEVEL_ENV", "LOG_PRINTS_ENV", "FlowRunInfo", "get_run_logger"]

#: The environment variable with the level of the `taskrunners` logger (a name or number).
LEVEL_ENV = "TASKRUNNERS_LOGGING_LEVEL"


#: The environment variable that turns `log_prints` on for flows that do not set it.
LOG_PRINTS_ENV = "TASKRUNNERS_LOGGING_LOG_PRINTS"


#: Records of the run executing in this context, when they must travel home.
capture_var: ContextVar[list[dict[str, Any]] | None] = ContextVar("taskrunners_log_capture", default=None)


#: Whether `print` goes to the run logger here, as a task run set it (`None`: as the
#: flow run says).
log_prints_var: ContextVar[bool | None] = ContextVar("taskrunners_log_prints", default=None)


#: Whether task runs' DEBUG lines are wanted (read when each flow run starts).
per_run = False


#: Whether flow runs' INFO lines are wanted (read when each flow run starts).
flow_lines = False


#: `TASKRUNNERS_LOGGING_LOG_PRINTS`, as read when the first flow run started.
log_prints_default = False


_flow_run_lock = threading.Lock()


def flow_run_of(runner: Any) -> FlowRunInfo | None:
    """The `FlowRunInfo` of the flow run that `runner` serves (made on first use:
    a flow run nobody logs from costs no object), or `None` for a runner of no flow
    (used directly, or on a worker)."""
    info: FlowRunInfo | None = runner._flow_run
    if info is None and runner._flow is not None:
        with _flow_run_lock:
            info = runner._flow_run
            if info is None:
                info = runner._flow_run = FlowRunInfo(runner._flow.name, {}, frozenset())
                info.log_prints = runner._log_prints
    return info


def current_flow_run() -> FlowRunInfo | None:
    """The flow run whose runner is current here: in the flow's code and its task runs
    in this process; `None` elsewhere (on a worker, outside any flow)."""
    runner = _context.current_runner_var.get()
    return None if runner is None else flow_run_of(runner)


class Streaming(list):  # type: ignore[type-arg]
    """A capture that hands each record to `sink` at once instead of keeping it."""

    def __init__(self, sink: Any) -> None:
        super().__init__()
        self.sink = sink

    def append(self, entry: Any) -> None:
        self.sink((entry,))

    def extend(self, entries: Any) -> None:
        entries = tuple(entries)
        if entries:
            self.sink(entries)


_last_streaming: list[Streaming] = []


def streaming(sink: Any) -> Streaming:
    """A `Streaming` capture for `sink` (the last one is kept: a worker passes the
    same sink for every run, and the capture holds nothing of its own)."""
    if _last_streaming and _last_streaming[0].sink is sink:
        return _last_streaming[0]
    capture = Streaming(sink)
    _last_streaming[:] = [capture]
    return capture


_real_print = builtins.print


_patch_lock = threading.Lock()


def _print(
    *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    if file is None or file is sys.stdout:
        wanted = log_prints_var.get()
        runner = _context.current_runner_var.get()
        flowing = runner is not None and runner._flow is not None
        if wanted is None:
            wanted = runner is not None and flowing and runner._log_prints
        if wanted and (flowing or _context.current_task_run_var.get() is not None):
            text = (" " if sep is None else sep).join(str(arg) for arg in args)
            get_run_logger().info(text, stacklevel=2)
            return
    _real_print(*args, sep=sep, end=end, file=file, flush=flush)


def enable_print_capture() -> None:
    """Route `print` through `_print` in this process (prints outside runs with
    `log_prints` on are unchanged). Again if something replaced it since (`ray.init`
    puts its own `print` in, and `ray.shutdown` puts back the one it found)."""
    if builtins.print is _print:
        return
    with _patch_lock:
        if builtins.print is not _print:
            builtins.print = _print


def env_log_prints() -> bool:
    """The `TASKRUNNERS_LOGGING_LOG_PRINTS` setting (false when unset), as read when
    the first flow run of the process started."""
    return _settings()[1]


_SETTINGS: list[tuple[int | None, bool]] = []


def _settings() -> tuple[int | None, bool]:
    """The environment's level and log_prints settings, read once per process (reading
    the environment costs a microsecond, a tenth of an empty flow run)."""
    if not _SETTINGS:
        value = os.environ.get(LOG_PRINTS_ENV, "").strip().lower()
        _SETTINGS.append((impl()._env_level(), value in ("1", "true", "yes", "on")))
    return _SETTINGS[0]


def reread_environment() -> None:
    """Read `TASKRUNNERS_LOGGING_LEVEL` and `TASKRUNNERS_LOGGING_LOG_PRINTS` again when
    the next flow run starts (they are read once per process); for tests."""
    _SETTINGS.clear()
    impl()._seen_level = -1


# -- the logging side, imported on first use (`import taskrunners` stays light: a
# worker process that logs nothing never imports `logging`) ----------------------------

_IMPL: list[ModuleType] = []


def impl() -> Any:
    """The `_runlog` module (imports `logging` the first time)."""
    if not _IMPL:
        global configure
        from . import _runlog

        _IMPL.append(_runlog)
        configure = _runlog.configure  # from now on, flows call it directly
    return _IMPL[0]


def get_run_logger() -> logging.LoggerAdapter[logging.Logger]:
    """The logger of the task run or flow run whose code calls it.

    In a task, its records go to `taskrunners.task_runs`; in a flow, to
    `taskrunners.flow_runs`. Each carries `flow_run_name`, `flow_run_id`,
    `task_run_name`, `task_run_id` and `worker`. Records made on a worker in another
    process reach the flow's process and its handlers, in order, with the run's final
    state (or as they are made, where the runner streams them).

    Returns:
        A `logging.LoggerAdapter` for the run (use `info`, `warning`, `exception`, ...).

    Raises:
        NoActiveFlowError: No task run or flow run is running here.
    """
    logger: logging.LoggerAdapter[logging.Logger] = impl().get_run_logger()
    return logger


def configure() -> None:  # noqa: F811 - replaced by `_runlog.configure` once loaded (see `impl`)
    """Called as each flow run starts: the default handler and level, and the flags."""
    impl().configure()


def deliver(entries: tuple[dict[str, Any], ...], flow_run: FlowRunInfo | None) -> None:
    """Hand records captured elsewhere to this process's loggers, in order."""
    impl().deliver(entries, flow_run)


def task_run_final(run: PreparedRun, state: State[Any], previous: State[Any] | None) -> None:
    """Log a task run's end in the flow's process (and its start, if not seen)."""
    impl().task_run_final(run, state, previous)


def task_run_running(run: PreparedRun, state: State[Any]) -> None:
    """Log the start of an attempt, in the flow's process."""
    impl().task_run_running(run, state)


def retrying(info: TaskRunInfo, exc: BaseException, attempt: int, retries: int, delay: float) -> None:
    """Log that a failed attempt will be retried (where the run executes)."""
    impl().retrying(info, exc, attempt, retries, delay)


def flow_started(runner: Any) -> None:
    impl().flow_started(runner)


def flow_finished(runner: Any, state: State[Any]) -> None:
    impl().flow_finished(runner, state)
