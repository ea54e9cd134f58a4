"""Interrupts and termination: Ctrl-C and SIGTERM during a flow.

A flow run turns SIGTERM into `Terminated` (a `SystemExit` with status 143) while it
runs, in the main thread, unless the program has a SIGTERM handler of its own; Ctrl-C
is Python's `KeyboardInterrupt`. Either one unwinds through the runner's `with` block,
where `TaskRunner.__exit__` ends the runs that have not started, waits up to the grace
period for those that have, and shuts the runner down (see `docs/when-things-go-wrong.md`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = [
    "DEFAULT_SHUTDOWN_GRACE",
    "SHUTDOWN_GRACE_ENV",
    "SigtermGuard",
    "Terminated",
    "check_grace",
    "held_signals",
    "interrupt_name",
    "is_interrupt",
    "shutdown_grace",
]


def logger() -> Any:
    """The `taskrunners` logger (`logging` is imported on first use: `import
    taskrunners` stays light)."""
    import logging

    return logging.getLogger("taskrunners")


#: The environment variable that sets the grace period, in seconds, of runners whose
#: `shutdown_grace` is `None`.
SHUTDOWN_GRACE_ENV = "TASKRUNNERS_SHUTDOWN_GRACE"
#: Seconds that running runs get to finish after an interrupt, unless set otherwise.
DEFAULT_SHUTDOWN_GRACE = 5.0
#: The exit status of a process stopped by SIGTERM, as shells report it (128 + 15).
SIGTERM_STATUS = 128 + int(signal.SIGTERM)


class Terminated(SystemExit):
    """The process received SIGTERM while a flow ran.

    A `SystemExit` with status 143 (128 + SIGTERM): uncaught, the program exits with
    the status that a process killed by SIGTERM has, after the flow's runner has ended
    its runs and stopped its workers. Raised in the main thread by the handler a flow
    installs for the duration of its run (only if the program has none of its own).
    """

    def __init__(self) -> None:
        super().__init__(SIGTERM_STATUS)

    def __str__(self) -> str:
        return "the process received SIGTERM"


def interrupt_name(exc: BaseException | type[BaseException]) -> str:
    """How an interrupt is named in the reasons of the runs it ends: `SIGINT (Ctrl-C)`,
    `SIGTERM`, asyncio's cancellation of an async flow, or the exception's type (a
    `SystemExit` the program raised, say)."""
    kind = exc if isinstance(exc, type) else type(exc)
    if issubclass(kind, KeyboardInterrupt):
        return "SIGINT (Ctrl-C)"
    if issubclass(kind, Terminated):
        return "SIGTERM"
    if _is_cancellation(kind):
        return "asyncio cancellation (asyncio.run sends it on Ctrl-C)"
    return kind.__name__


def is_interrupt(kind: type[BaseException]) -> bool:
    """Whether `kind` unwinds a runner's `with` block as an interrupt: Ctrl-C, SIGTERM,
    an exit, or asyncio's cancellation of an async flow (`asyncio.run` on Ctrl-C)."""
    return issubclass(kind, (KeyboardInterrupt, SystemExit)) or _is_cancellation(kind)


def _is_cancellation(kind: type[BaseException]) -> bool:
    asyncio = sys.modules.get("asyncio")  # not imported for this: `import taskrunners` stays light
    return asyncio is not None and issubclass(kind, asyncio.CancelledError)


def check_grace(value: object, what: str) -> float:
    """`value` as a number of seconds >= 0.

    Raises:
        ValueError: `value` is not a number >= 0 (`what` names where it came from).
    """
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{what} must be a number of seconds >= 0, got {value!r}")
    return seconds


def shutdown_grace(configured: float | None) -> float:
    """The grace period in seconds: `configured`, else `TASKRUNNERS_SHUTDOWN_GRACE`, else
    `DEFAULT_SHUTDOWN_GRACE`. A bad environment value is logged and the default used
    (an interrupt is no time to raise)."""
    if configured is not None:
        return configured
    text = os.environ.get(SHUTDOWN_GRACE_ENV, "").strip()
    if not text:
        return DEFAULT_SHUTDOWN_GRACE
    try:
        return check_grace(text, SHUTDOWN_GRACE_ENV)
    except ValueError as exc:
        logger().warning("%s; using %g s", exc, DEFAULT_SHUTDOWN_GRACE)
        return DEFAULT_SHUTDOWN_GRACE


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


_raw: Any
try:  # the C functions: `signal.signal` converts to and from enums, 4x the cost per flow
    _raw = importlib.import_module("_signal")
except ImportError:  # pragma: no cover - another interpreter
    _raw = signal
_SIGTERM = int(signal.SIGTERM)
_DEFAULT = _raw.SIG_DFL


class SigtermGuard:
    """Turns SIGTERM into `Terminated` for the length of a flow run.

    Installs its handler only in the main thread, and only if SIGTERM has its default
    action there (a program with a handler of its own keeps it); `restore` puts the
    previous handler back. `reclaim` re-installs it if the runner's engine replaced it
    while starting (Ray's driver sets one of its own).
    """

    __slots__ = ("_previous",)

    def __init__(self) -> None:
        self._previous: Any = None
        if threading.get_ident() != threading.main_thread().ident:
            return
        try:
            if _raw.getsignal(_SIGTERM) != _DEFAULT:  # the program's own, or an outer flow's
                return
            _raw.signal(_SIGTERM, _raise_terminated)
        except (ValueError, OSError):  # no signals here (an embedded interpreter)
            return
        self._previous = _DEFAULT

    def reclaim(self) -> None:
        """Install the handler again if something replaced it since."""
        if self._previous is not None and _raw.getsignal(_SIGTERM) is not _raise_terminated:
            _raw.signal(_SIGTERM, _raise_terminated)

    def restore(self) -> None:
        """Put back the handler that was there before."""
        if self._previous is not None:
            _raw.signal(_SIGTERM, self._previous)
            self._previous = None


def _hold(signum: int, frame: FrameType | None) -> None:
    logger().warning("taskrunners: still stopping the runner's workers (signal %d ignored meanwhile)", signum)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Ignore Ctrl-C and our SIGTERM for the `with` body, in the main thread.

    For the few, bounded steps that stop a runner's workers after an interrupt: a
    further Ctrl-C there would leave worker processes behind. Handlers other than
    Python's and ours stay as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    swapped: list[tuple[signal.Signals, Any]] = []
    candidates: tuple[tuple[signal.Signals, Any], ...] = (
        (signal.SIGINT, signal.default_int_handler),
        (signal.SIGTERM, _raise_terminated),
    )
    for signum, ours in candidates:
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signum) is ours:
                signal.signal(signum, _hold)
                swapped.append((signum, ours))
    try:
        yield
    finally:
        for held, handler in swapped:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(held, handler)
