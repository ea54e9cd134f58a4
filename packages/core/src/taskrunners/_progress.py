"""Live progress bars: a flow run's runs, each `.map()`, and waits that ask for one.

One display at a time per process, drawn with rich (the optional extra
`taskrunners-core[progress]`) on standard error. A flow run that shows progress opens
it; a nested flow run, a `.map()` or a `wait(..., progress=True)` inside adds a row to
it. Each row counts its runs by state. The display draws nothing for its first
`DELAY` seconds, so quick work prints nothing; a thread of its own polls the runs'
states a few times a second, so a run pays nothing for it, shown or not.

Whether a flow run shows progress: its `progress=` option if given; else the
environment variable `TASKRUNNERS_PROGRESS` (`1`/`0`); else yes at an interactive
terminal (standard error is a TTY, no `CI` variable, `TERM` not `dumb`). Without rich
installed, never.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._futures import Future
    from ._record import Recording
    from ._runner import TaskRunner

__all__ = ["ENV", "Display", "enabled", "flow_display", "track", "track_map"]

#: The environment variable that turns progress on (`1`) or off (`0`) where no
#: `progress=` option decides.
ENV = "TASKRUNNERS_PROGRESS"
#: Seconds before anything is drawn: work that ends sooner prints nothing.
DELAY = 0.5
#: Seconds between two redraws.
REFRESH = 0.2

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})
_tty: list[Any] = [None, False]  # (the stream checked, whether it is an interactive terminal)
_rich: list[bool] = []

#: (total, counts by state type value) of a row, read by the display's thread.
Counter = Callable[[], "tuple[int, dict[str, int]]"]


def _environment_lookup() -> Callable[[], str | None]:
    """A fast read of `ENV`: every flow call asks, and `os.environ.get` of a missing
    variable costs a raised KeyError (half a microsecond). CPython keeps the encoded
    variables in `os.environ._data`; elsewhere, the plain lookup."""
    data = getattr(os.environ, "_data", None)
    encode = getattr(os.environ, "encodekey", None)
    decode = getattr(os.environ, "decodevalue", None)
    if not isinstance(data, dict) or encode is None or decode is None:
        return lambda: os.environ.get(ENV)
    key = encode(ENV)

    def lookup() -> str | None:
        value = data.get(key)
        return None if value is None else str(decode(value))

    return lookup


_environment = _environment_lookup()


def enabled(option: bool | None) -> bool:
    """Whether to show progress, given a `progress=` option (`None`: decide here)."""
    if option is None:
        value = _environment()
        if value is not None and value.strip().lower() in _OFF:
            return False
        if (value is None or value.strip().lower() not in _ON) and not _interactive():
            return False
    elif not option:
        return False
    return _have_rich()


def _interactive() -> bool:
    stream = sys.stderr
    if stream is not _tty[0]:
        try:
            tty = bool(stream.isatty())
        except Exception:  # noqa: BLE001 - a replaced stream without isatty, or a closed one
            tty = False
        tty = tty and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"
        _tty[:] = [stream, tty]
    return bool(_tty[1])


def _have_rich() -> bool:
    if not _rich:
        import importlib.util

        _rich.append(importlib.util.find_spec("rich") is not None)
    return _rich[0]


# -- counting ---------------------------------------------------------------------------


def _count_futures(futures: list[Future[Any]]) -> tuple[int, dict[str, int]]:
    counts: dict[str, int] = {}
    for future in futures:
        state = future._state
        kind = "PENDING" if state is None else state.type.value
        counts[kind] = counts.get(kind, 0) + 1
    return len(futures), counts


def _count_flow(runner: TaskRunner, recording: Recording) -> Counter:
    finished: dict[str, int] = {}
    seen = [0]

    def count() -> tuple[int, dict[str, int]]:
        entries = recording.entries
        end = len(entries)
        for entry in entries[seen[0] : end]:
            kind = entry[1].value
            finished[kind] = finished.get(kind, 0) + 1
        seen[0] = end
        counts = dict(finished)
        for run in runner.open_runs() if runner.started else ():
            state = run.future._state
            kind = "PENDING" if state is None else state.type.value
            counts[kind] = counts.get(kind, 0) + 1
        return sum(counts.values()), counts

    return count


# -- the display -------------------------------------------------------------------------

_STYLES = (
    ("COMPLETED", "green", "done"),
    ("FAILED", "red", "failed"),
    ("CRASHED", "magenta", "crashed"),
    ("CANCELLED", "yellow", "cancelled"),
    ("RUNNING", "cyan", "running"),
    ("PENDING", "dim", "pending"),
)
_FINAL_KINDS = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _describe(counts: dict[str, int]) -> str:
    parts = [f"[{style}]{counts[kind]} {word}[/]" for kind, style, word in _STYLES if counts.get(kind)]
    return " · ".join(parts)


class Display:
    """A live display of progress rows, drawn by a thread of its own after `DELAY`."""

    def __init__(self) -> None:
        self._rows: list[tuple[str, Counter]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="taskrunners-progress", daemon=True)
        self.drawn = False

    def add(self, label: str, counter: Counter) -> None:
        """Add a row: its label, and what counts its runs by state."""
        with self._lock:
            self._rows.append((label, counter))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Draw the rows a last time (if they were shown) and stop."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _main(self) -> None:
        if self._stop.wait(DELAY):
            return  # over before it was worth showing
        try:
            self._draw()
        except Exception:  # progress never fails a flow: without a display, the flow goes on
            import logging

            logging.getLogger("taskrunners").debug("the progress display failed", exc_info=True)

    def _draw(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            auto_refresh=False,
        )
        ids: list[Any] = []
        with progress:
            self.drawn = True
            while True:
                stopping = self._stop.wait(REFRESH)
                with self._lock:
                    rows = list(self._rows)
                for index, (label, counter) in enumerate(rows):
                    total, counts = counter()
                    done = sum(counts.get(kind, 0) for kind in _FINAL_KINDS)
                    if index >= len(ids):
                        ids.append(progress.add_task(label, total=total, counts=""))
                    progress.update(ids[index], total=max(total, 1), completed=done, counts=_describe(counts))
                progress.refresh()
                if stopping:
                    return


_active: list[Display] = []
_active_lock = threading.Lock()


def open_display() -> Display | None:
    """A new display, made the active one; `None` if one is active already."""
    with _active_lock:
        if _active:
            return None
        display = Display()
        _active.append(display)
    display.start()
    return display


def close_display(display: Display) -> None:
    """Stop `display` and make no display active."""
    try:
        display.stop()
    finally:
        with _active_lock:
            if display in _active:
                _active.remove(display)


def active() -> Display | None:
    """The active display, or `None`."""
    return _active[0] if _active else None


def flow_display(name: str, runner: TaskRunner, recording: Recording) -> Display | None:
    """Show a flow run's progress: a row in the active display, or a display of its
    own (returned, for the flow to close)."""
    counter = _count_flow(runner, recording)
    display = active()
    if display is not None:
        display.add(f"flow {name}", counter)
        return None
    display = open_display()
    if display is None:  # another flow opened one meanwhile
        shown = active()
        if shown is not None:
            shown.add(f"flow {name}", counter)
        return None
    display.add(f"flow {name}", counter)
    return display


def track_map(task_name: str, futures: list[Future[Any]]) -> None:
    """Add a row for a `.map()` call to the active display, if one is shown."""
    display = active()
    if display is not None and futures:
        display.add(f"{task_name}.map", lambda: _count_futures(futures))


def track(label: str, futures: Iterable[Future[Any]]) -> Display | None:
    """Add a row for a wait that asked for progress: to the active display, or to a
    display of its own (returned, for the caller to close with `close_display`)."""
    if not _have_rich():
        return None
    watched = list(futures)

    def row() -> tuple[int, dict[str, int]]:
        return _count_futures(watched)

    display = active()
    if display is not None:
        display.add(label, row)
        return None
    display = open_display()
    if display is not None:
        display.add(label, row)
    return display
