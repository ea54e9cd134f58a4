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
import itertools
import logging
import os
import socket
import sys
import threading
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from . import _context, _tracebacks
from ._errors import NoActiveFlowError

if TYPE_CHECKING:
    from ._engine import PreparedRun, TaskRunInfo
    from ._states import State

__all__ = [
    "LEVEL_ENV",
    "LOG_PRINTS_ENV",
    "FlowRunInfo",
    "RunLogger",
    "get_run_logger",
]

#: The environment variable with the level of the `taskrunners` logger (a name or number).
LEVEL_ENV = "TASKRUNNERS_LOGGING_LEVEL"
#: The environment variable that turns `log_prints` on for flows that do not set it.
LOG_PRINTS_ENV = "TASKRUNNERS_LOGGING_LOG_PRINTS"

root_logger = logging.getLogger("taskrunners")
flow_logger = logging.getLogger("taskrunners.flow_runs")
task_logger = logging.getLogger("taskrunners.task_runs")

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

_HOST = socket.gethostname()


class FlowRunInfo:
    """Identity of one flow run.

    Attributes:
        flow_name: The name of the flow.
        number: A number unique to the run within this process.
        name: The run's name: the flow's name and that number.
        id: A `uuid.UUID` that identifies the run.
        log_prints: Whether `print` in the flow, and in its tasks that do not set
            their own, goes to the run logger.
    """

    __slots__ = ("flow_name", "number", "log_prints")

    def __init__(self, flow_name: str, log_prints: bool = False) -> None:
        self.log_prints = log_prints
        self.flow_name = flow_name
        self.number = next(_flow_numbers)

    @property
    def name(self) -> str:
        """The run's name: the flow's name and a number unique in this process."""
        return f"{self.flow_name}-{self.number}"

    @property
    def id(self) -> Any:
        """A `uuid.UUID` for the run, made like a task run's (`TaskRunInfo.id`)."""
        import uuid

        from ._engine import _id_base

        return uuid.UUID(int=_id_base() | (1 << 63) | self.number)  # apart from task runs' ids

    def __repr__(self) -> str:
        return f"FlowRunInfo(name={self.name!r})"


_flow_numbers = itertools.count(1)


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
                info = runner._flow_run = FlowRunInfo(runner._flow.name, runner._log_prints)
    return info


def current_flow_run() -> FlowRunInfo | None:
    """The flow run whose runner is current here: in the flow's code and its task runs
    in this process; `None` elsewhere (on a worker, outside any flow)."""
    runner = _context.current_runner_var.get()
    return None if runner is None else flow_run_of(runner)




def worker_label() -> str:
    """Where the calling code runs: `host:pid/thread`."""
    return f"{_HOST}:{os.getpid()}/{threading.current_thread().name}"


# -- the run logger -------------------------------------------------------------------


class RunLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger for the current run: its records carry the run's names and ids.

    What `get_run_logger()` returns. Use it like a `logging.Logger` (`info`,
    `warning`, `exception`, ...). In a worker elsewhere, its records are kept and sent
    home with the run's final state, whatever the worker's own logging configuration.
    """

    def __init__(self, logger: logging.Logger, extra: dict[str, Any]) -> None:
        super().__init__(logger, extra)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        given = kwargs.get("extra")
        kwargs["extra"] = dict(self.extra or {}, **given) if given else self.extra
        return msg, kwargs

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        if capture_var.get() is not None:
            return True  # the flow's process applies its level on delivery
        return bool(self.logger.isEnabledFor(level))

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        msg, processed = self.process(msg, kwargs)
        processed["stacklevel"] = processed.get("stacklevel", 1) + 1
        buffer = capture_var.get()
        if buffer is None:
            self.logger.log(level, msg, *args, **processed)
            return
        _capturing(self.logger.name).log(level, msg, *args, **processed)


def get_run_logger() -> RunLogger:
    """The logger of the task run or flow run whose code calls it.

    In a task, its records go to `taskrunners.task_runs`; in a flow, to
    `taskrunners.flow_runs`. Each carries `flow_run_name`, `flow_run_id`,
    `task_run_name`, `task_run_id` and `worker`. Records made on a worker in another
    process reach the flow's process and its handlers, in order, with the run's final
    state.

    Raises:
        NoActiveFlowError: No task run or flow run is running here.
    """
    task_run = _context.current_task_run_var.get()
    flow_run = current_flow_run()
    if task_run is not None:
        return RunLogger(task_logger, _extra(flow_run, task_run))
    if flow_run is not None:
        return RunLogger(flow_logger, _extra(flow_run, None))
    raise NoActiveFlowError(
        "get_run_logger() needs a task run or flow run to name its records, and none is running "
        "here. Call it inside a function decorated with @task or @flow, or use logging.getLogger()."
    )


def _extra(flow_run: FlowRunInfo | None, task_run: TaskRunInfo | None) -> dict[str, Any]:
    return {
        "flow_run_name": flow_run.name if flow_run is not None else None,
        "flow_run_id": str(flow_run.id) if flow_run is not None else None,
        "task_run_name": task_run.name if task_run is not None else None,
        "task_run_id": str(task_run.id) if task_run is not None else None,
        "worker": worker_label(),
    }


# -- capture (on a worker) and delivery (in the flow's process) -----------------------


class _CaptureHandler(logging.Handler):
    """Turns each record into a plain dict in the run's capture."""

    def emit(self, record: logging.LogRecord) -> None:
        buffer = capture_var.get()
        if buffer is None:  # pragma: no cover - the capturing loggers run only inside a capture
            return
        entry = {key: value if type(value) in _PLAIN else repr(value) for key, value in record.__dict__.items()}
        entry["msg"] = record.getMessage()
        entry["args"] = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            entry["exc_text"] = record.exc_text
        entry["exc_info"] = None
        entry.pop("message", None)
        buffer.append(entry)


#: What a captured record keeps as itself (anything else becomes its `repr`, so that
#: the records always pickle).
_PLAIN = frozenset({str, int, float, bool, type(None)})


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


_capturing_loggers: dict[str, logging.Logger] = {}
_capture_handler = _CaptureHandler()


def _capturing(name: str) -> logging.Logger:
    """A logger outside the hierarchy, at every level, whose handler keeps records in
    the current capture (the worker's own configuration plays no part)."""
    logger = _capturing_loggers.get(name)
    if logger is None:
        logger = logging.Logger(name, logging.DEBUG)
        logger.addHandler(_capture_handler)
        logger.propagate = False
        _capturing_loggers[name] = logger
    return logger


def engine_record(logger: logging.Logger, level: int, msg: str, info: TaskRunInfo | None, **extra: Any) -> None:
    """An engine line about a task run, kept in the capture or logged here."""
    fields = _extra(current_flow_run(), info)
    fields.update(extra)
    if capture_var.get() is not None:
        _capturing(logger.name).log(level, msg, extra=fields)
    elif logger.isEnabledFor(level):
        logger.log(level, msg, extra=fields)


def deliver(entries: tuple[dict[str, Any], ...], flow_run: FlowRunInfo | None) -> None:
    """Hand records captured elsewhere to this process's loggers, in order."""
    buffer = capture_var.get()
    if buffer is not None:  # still away from the flow: pass them on with this run's
        buffer.extend(entries)
        return
    for entry in entries:
        logger = logging.getLogger(entry.get("name", "taskrunners.task_runs"))
        if not logger.isEnabledFor(entry.get("levelno", logging.INFO)):
            continue
        record = logging.makeLogRecord(entry)
        if getattr(record, "flow_run_name", None) is None and flow_run is not None:
            record.flow_run_name = flow_run.name
            record.flow_run_id = str(flow_run.id)
        logger.handle(record)


# -- the engine's lines ---------------------------------------------------------------


def task_run_final(run: PreparedRun, state: State[Any], previous: State[Any] | None) -> None:
    """Log a task run's end in the flow's process (and its start, if not seen)."""
    from ._states import StateType

    info = run.spec.info
    owner = run.future.owner
    flow_run = None if owner is None else flow_run_of(owner)
    kind = state.type
    if kind is StateType.COMPLETED:
        if per_run:
            if previous is None and state.started is not None:
                _task_line(logging.DEBUG, "Started", info, flow_run, created=state.started)
            _task_line(logging.DEBUG, f"Finished in state {state!r}", info, flow_run)
        return
    exc = state.exception
    if state.name == "UpstreamFailed":
        _task_line(logging.INFO, f"Did not run: {exc}", info, flow_run)
        return
    if kind is StateType.FAILED:
        retried = " - Retries are exhausted" if run.spec.task.retries else ""
        message = f"Task run failed with exception: {exc!r}{retried}"
    elif kind is StateType.CANCELLED:
        message = f"Cancelled: {exc}"
    else:
        message = f"Crashed: {exc}"
    level = logging.WARNING if kind is StateType.CANCELLED else logging.ERROR
    _task_line(level, message, info, flow_run, exc=exc)
    _task_line(level, f"Finished in state {state.name}", info, flow_run)


def task_run_running(run: PreparedRun, state: State[Any]) -> None:
    """Log the start of an attempt, in the flow's process (in-process runners)."""
    if state.attempt == 1:
        owner = run.future.owner
        _task_line(logging.DEBUG, "Started", run.spec.info, None if owner is None else flow_run_of(owner))


def _task_line(
    level: int,
    msg: str,
    info: TaskRunInfo,
    flow_run: FlowRunInfo | None,
    exc: BaseException | None = None,
    created: float | None = None,
) -> None:
    if not task_logger.isEnabledFor(level):
        return
    fields = _extra(flow_run, info)
    fields["worker"] = None
    record = task_logger.makeRecord(
        task_logger.name, level, __file__, 0, msg, (),
        _tracebacks.exc_info(exc) if exc is not None else None, extra=fields,
    )  # fmt: skip
    if created is not None:
        record.created = created
        record.msecs = (created - int(created)) * 1000
    task_logger.handle(record)


def retrying(info: TaskRunInfo, exc: BaseException, attempt: int, retries: int, delay: float) -> None:
    """Log that a failed attempt will be retried (where the run executes)."""
    when = "immediately" if delay <= 0 else f"in {delay:g} s"
    engine_record(
        task_logger,
        logging.WARNING,
        f"Task run failed with exception: {exc!r} - Retry {attempt}/{retries} will start {when}",
        info,
    )


def flow_started(runner: Any) -> None:
    flow_run = flow_run_of(runner)
    if flow_run is not None and flow_logger.isEnabledFor(logging.INFO):
        flow_logger.info(
            "Beginning flow run %r for flow %r on %s",
            flow_run.name, flow_run.flow_name, type(runner).__name__,
            extra=_extra(flow_run, None),
        )  # fmt: skip


def flow_finished(runner: Any, state: State[Any]) -> None:
    flow_run = flow_run_of(runner)
    exc = state.exception
    if flow_run is None or (exc is None and not flow_lines):
        return
    if exc is not None:
        if flow_logger.isEnabledFor(logging.ERROR):
            flow_logger.error(
                "Finished in state %s: %r",
                state.name,
                exc,
                exc_info=_tracebacks.exc_info(exc),
                extra=_extra(flow_run, None),
            )
        return
    if flow_logger.isEnabledFor(logging.INFO):
        flow_logger.info("Finished in state %s", state.name, extra=_extra(flow_run, None))


# -- log_prints -----------------------------------------------------------------------

_real_print = builtins.print
_patched = False
_patch_lock = threading.Lock()


def _print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
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
    """Route `print` through `_print` in this process (once; prints outside runs with
    `log_prints` on are unchanged)."""
    global _patched
    if _patched:
        return
    with _patch_lock:
        if not _patched:
            builtins.print = _print
            _patched = True


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
        _SETTINGS.append((_env_level(), value in ("1", "true", "yes", "on")))
    return _SETTINGS[0]


def reread_environment() -> None:
    """Read `TASKRUNNERS_LOGGING_LEVEL` and `TASKRUNNERS_LOGGING_LOG_PRINTS` again when
    the next flow run starts (they are read once per process); for tests."""
    global _seen_level
    _SETTINGS.clear()
    _seen_level = -1


# -- the default handler --------------------------------------------------------------


class RunFormatter(logging.Formatter):
    """`12:00:01.234 | INFO    | Task run 'fetch-3' - message`; for records of the
    `taskrunners` loggers and any other."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(run_label)s%(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        task_run = getattr(record, "task_run_name", None)
        flow_run = getattr(record, "flow_run_name", None)
        if task_run:
            label = f"Task run {task_run!r} - "
        elif flow_run:
            label = f"Flow run {flow_run!r} - "
        else:
            label = f"{record.name} - "
        record.run_label = label
        return super().format(record)


_handler: logging.Handler | None = None
_level_set: int | None = None


def _env_level() -> int | None:
    value = os.environ.get(LEVEL_ENV, "").strip()
    if not value:
        return None
    if value.isdigit():
        return int(value)
    level = logging.getLevelName(value.upper())
    if isinstance(level, int):
        return level
    import warnings

    warnings.warn(
        f"{LEVEL_ENV}={value!r} is not a logging level; use DEBUG, INFO, WARNING, ERROR or a number",
        stacklevel=3,
    )
    return None


#: What `configure` saw last: whether the root logger had no handler, and the
#: `taskrunners` logger's level (-1: look again).
_seen_bare = True
_seen_level = -1


def configure() -> None:
    """Called as each flow run starts: the default handler and level, and `per_run`."""
    global per_run, flow_lines
    if (not logging.root.handlers) is _seen_bare and root_logger.level == _seen_level:
        per_run = task_logger.isEnabledFor(logging.DEBUG)
        flow_lines = flow_logger.isEnabledFor(logging.INFO)
        return
    _reconfigure()


def _reconfigure() -> None:
    global _handler, _level_set, per_run, flow_lines, _seen_bare, _seen_level, log_prints_default
    level, log_prints_default = _settings()
    if root_logger.level in (logging.NOTSET, _level_set) and level is not None:
        root_logger.setLevel(level)
        _level_set = level
    configured = bool(logging.root.handlers)
    if _handler is not None and configured:  # the application configured logging since
        root_logger.removeHandler(_handler)
        _handler = None
        if _level_set is not None and level is None and root_logger.level == _level_set:
            root_logger.setLevel(logging.NOTSET)
            _level_set = None
    elif _handler is None and not configured and not root_logger.handlers:
        if level is not None or _terminal():
            _handler = logging.StreamHandler()
            _handler.setFormatter(RunFormatter())
            root_logger.addHandler(_handler)
            if root_logger.level == logging.NOTSET:
                _level_set = logging.INFO
                root_logger.setLevel(logging.INFO)
    per_run = task_logger.isEnabledFor(logging.DEBUG)
    flow_lines = flow_logger.isEnabledFor(logging.INFO)
    _seen_bare = not logging.root.handlers
    _seen_level = root_logger.level


def _terminal() -> bool:
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False
