"""Readable tracebacks: the task's own frames, without the engine's, on every runner.

Two things happen to the exception of a failed run:

- Its traceback loses the frames of taskrunners itself (the engine, a runner's
  plumbing), wherever they sit in the chain, so that what is left is the task's own
  code. `taskrunners.testing` is not internal: its tasks are user code.
- Where the run executed in another process (no flow run in the context), the trimmed
  traceback is also written out as text, in the exception's `__dict__`, which pickles
  with it. In the flow's process `restore` sets that text as the exception's
  `__cause__`, a `RemoteTraceback`, the way `concurrent.futures` shows a worker's
  traceback: the frames, files and source lines of the task survive the trip even
  though a traceback object cannot be pickled.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

__all__ = ["RemoteTraceback", "attach_text", "restore", "trim"]

#: Where the text travels: a key of the exception's `__dict__`.
_KEY = "_taskrunners_traceback"


class RemoteTraceback(Exception):
    """The traceback of a run's exception as the process that ran it formatted it.

    Set as the `__cause__` of the exception of a run that failed in another process
    (a worker process, a Dask or Ray worker), so that the task's frames, with their
    files and source lines, show where Python prints the exception.

    Attributes:
        text: The formatted traceback.
    """

    __module__ = "taskrunners"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


def _internal(tb: TracebackType) -> bool:
    name = tb.tb_frame.f_globals.get("__name__", "")
    return (
        isinstance(name, str)
        and name.startswith("taskrunners")
        and not name.startswith("taskrunners.testing")
    )


def trim(tb: TracebackType | None) -> TracebackType | None:
    """`tb` without the frames of taskrunners' own modules (a new chain if any go)."""
    frames: list[TracebackType] = []
    dropped = False
    while tb is not None:
        if _internal(tb):
            dropped = True
        else:
            frames.append(tb)
        tb = tb.tb_next
    if not dropped:
        return frames[0] if frames else None
    head: TracebackType | None = None
    for entry in reversed(frames):
        head = TracebackType(head, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return head


def trimmed(exc: BaseException) -> BaseException:
    """`exc` with its traceback trimmed (the same object, for `raise`)."""
    tb = exc.__traceback__
    if tb is not None:
        exc.__traceback__ = trim(tb)
    return exc


def attach_text(exc: BaseException) -> None:
    """Write `exc`'s (trimmed) traceback as text into its `__dict__`, to travel with it."""
    state = getattr(exc, "__dict__", None)
    if state is None or _KEY in state:
        return
    import traceback

    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # noqa: BLE001 # pragma: no cover - formatting must never break a run
        return
    state[_KEY] = text


def restore(exc: BaseException, here: bool = False) -> None:
    """In the flow's process: turn the text that `attach_text` wrote into the
    exception's `__cause__` (a `RemoteTraceback`). With `here`, the run executed in
    this process (its traceback is whole): the text is only dropped."""
    state = getattr(exc, "__dict__", None)
    if not state:
        return
    text = state.pop(_KEY, None)
    if text is None or here:
        return
    if isinstance(exc.__cause__, RemoteTraceback):
        return
    exc.__cause__ = RemoteTraceback(text)


def format_exception(exc: BaseException) -> str:
    """The traceback text for a log record: the remote text if the exception has one."""
    import traceback

    if isinstance(exc.__cause__, RemoteTraceback) and exc.__traceback__ is None:
        return exc.__cause__.text.rstrip()
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def exc_info(exc: BaseException) -> tuple[type[BaseException], BaseException, Any]:
    """`exc` as an `exc_info` triple for a log record."""
    return (type(exc), exc, exc.__traceback__)
