"""The logging side of run logs (see `_logging`): the run logger, the capture of
records on a worker and their delivery home, the engine's lines, the readable
default handler and the level. Imported on first use, so that `import taskrunners`
does not import `logging`."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from . import _context, _logging, _tracebacks
from ._errors import NoActiveFlowError
from ._logging import LEVEL_ENV, FlowRunInfo, capture_var, current_flow_run, flow_run_of

if TYPE_CHECKING:
    from ._engine import PreparedRun, TaskRunInfo
    from ._states import State

root_logger = logging.getLogger("taskrunners")


flow_logger = logging.getLogger("taskrunners.flow_runs")


task_logger = logging.getLogger("taskrunners.task_runs")


_HOST: list[str] = []


def worker_label() -> str:
    """Where the calling code runs: `host:pid/thread`."""
    if not _HOST:
        import socket

        _HOST.append(socket.gethostname())
    return f"{_HOST[0]}:{os.getpid()}/{threading.current_thread().name}"


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

    def isEnabledFor(self, level: int) -> bool:
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


class _CaptureHandler(logging.Handler):
    """Turns each record into a plain dict in the run's capture."""

    def emit(self, record: logging.LogRecord) -> None:
        buffer = capture_var.get()
        if buffer is None:  # pragma: no cover - the capturing loggers run only inside a capture
            return
        entry = {
            key: value if type(value) in _PLAIN else repr(value) for key, value in record.__dict__.items()
        }
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


_capturing_loggers: dict[str, logging.Logger] = {}


_capture_handler = _CaptureHandler()


def _capturing(name: str) -> logging.Logger:
    """A logger outside the hierarchy, at every level, whose handler keeps records in
    the current capture (the worker's own configuration plays no part)."""
    logger = _capturing_loggers.get(name)
    if logger is None:
        logger = logging.Logger(name, logging.DEBUG)  # noqa: LOG001 - deliberately outside the hierarchy
        logger.addHandler(_capture_handler)
        logger.propagate = False
        _capturing_loggers[name] = logger
    return logger


def engine_record(
    logger: logging.Logger, level: int, msg: str, info: TaskRunInfo | None, **extra: Any
) -> None:
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


def task_run_final(run: PreparedRun, state: State[Any], previous: State[Any] | None) -> None:
    """Log a task run's end in the flow's process (and its start, if not seen)."""
    from ._states import StateType

    info = run.spec.info
    owner = run.future.owner
    flow_run = None if owner is None else flow_run_of(owner)
    kind = state.type
    if kind is StateType.COMPLETED:
        if _logging.per_run:
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
    if flow_run is None or (exc is None and not _logging.flow_lines):
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
    """Called as each flow run starts: the default handler and level, and `_logging.per_run`."""
    if (not logging.root.handlers) is _seen_bare and root_logger.level == _seen_level:
        _logging.per_run = task_logger.isEnabledFor(logging.DEBUG)
        _logging.flow_lines = flow_logger.isEnabledFor(logging.INFO)
        return
    _reconfigure()


def _reconfigure() -> None:
    global _handler, _level_set, _seen_bare, _seen_level
    level, _logging.log_prints_default = _logging._settings()
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
    elif _handler is None and not configured and not root_logger.handlers:  # noqa: SIM102 - one case, then its condition
        if level is not None or _terminal():
            _handler = logging.StreamHandler()
            _handler.setFormatter(RunFormatter())
            root_logger.addHandler(_handler)
            if root_logger.level == logging.NOTSET:
                _level_set = logging.INFO
                root_logger.setLevel(logging.INFO)
    _logging.per_run = task_logger.isEnabledFor(logging.DEBUG)
    _logging.flow_lines = flow_logger.isEnabledFor(logging.INFO)
    _seen_bare = not logging.root.handlers
    _seen_level = root_logger.level


def _terminal() -> bool:
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False
