"""Futures: handles on task runs that were handed to a runner.

Every runner returns the same `Future` class. A runner creates it (through
`TaskRunner.prepare`) and moves it along with `Future.set_state`; users only read it.
Reading is local: `.state` and `.done()` never do I/O, whatever the runner.

All futures share one lock for their state changes and their lists of waiters and
callbacks. The critical sections are a few attribute writes long, so one lock costs
less than allocating a condition per future, and it lets one waiter watch many futures
(`wait`, `as_completed`, `FutureList.result`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from . import _context
from ._errors import DependencyError, WaitTimeout
from ._states import _FINAL, _NOT_OK, State, StateType

if TYPE_CHECKING:
    from ._engine import TaskRunInfo
    from ._runner import TaskRunner

__all__ = ["DoneAndNotDone", "Future", "FutureList", "as_completed", "wait"]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)  # a Future[bool] is a Future[int]: lists of mixed futures type-check

_lock = threading.Lock()


class _Waiter:
    """An auto-reset signal that collects the futures that finished since the last take."""

    __slots__ = ("_signal", "_signalled", "finished")

    def __init__(self) -> None:
        self._signal = threading.Lock()
        self._signal.acquire()
        self._signalled = False
        self.finished: list[Future[Any]] = []

    def notify(self, future: Future[Any]) -> None:  # called with _lock held
        self.finished.append(future)
        if not self._signalled:
            self._signalled = True
            self._signal.release()

    def take(self, timeout: float | None) -> list[Future[Any]]:
        """Wait for at least one notification (or the timeout); return and forget them."""
        got = self._signal.acquire(True, -1 if timeout is None else max(timeout, 0.0))
        with _lock:
            if got or self._signalled:
                if not got:  # signalled between our timeout and taking the lock: re-arm
                    self._signal.acquire(False)
                self._signalled = False
            finished, self.finished = self.finished, []
        return finished


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


def _check_not_self(futures: Iterable[Future[Any]]) -> None:
    current = _context.current_task_run_var.get()
    if current is None:
        return
    for future in futures:
        if future.task_run is current:
            raise DependencyError(
                f"task run {current.name!r} waits for its own result, so it would never "
                "finish. Wait for its future from outside the task instead."
            )


def _watch(
    futures: list[Future[Any]],
    timeout: float | None,
    on_finished: Callable[[Future[Any]], bool],
) -> bool:
    """Wait on unfinished `futures` until `on_finished` returns True or the timeout ends.

    `on_finished` is called once per future as it finishes; `futures` must all be
    unfinished when passed in. Returns whether `on_finished` asked to stop.
    """
    _check_not_self(futures)
    waiter = _Waiter()
    watching: list[Future[Any]] = []
    already: list[Future[Any]] = []  # final by the time we registered
    with _lock:
        for future in futures:
            state = future._state
            if state is not None and state.type in _FINAL:
                already.append(future)
            else:
                if future._waiters is None:
                    future._waiters = [waiter]
                else:
                    future._waiters.append(waiter)
                watching.append(future)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for future in already:
            if on_finished(future):
                return True
        remaining = len(watching)
        if remaining == 0:
            return False
        with _context.blocking():
            while remaining:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    finished = waiter.take(0)
                    if not finished:
                        return False
                else:
                    finished = waiter.take(left)
                for future in finished:
                    remaining -= 1
                    if on_finished(future):
                        return True
            return False
    finally:
        with _lock:
            for future in watching:
                if future._waiters is not None:
                    try:
                        future._waiters.remove(waiter)
                    except ValueError:
                        pass


class Future(Generic[R_co]):
    """A handle on one task run that was handed to a task runner.

    Futures are created by task runners, never by users: `Task.submit` and `Task.map`
    return them. Pass a future to another task to make that task wait for this run
    and receive its value.

    Attributes:
        task_run: The `TaskRunInfo` of the run (id, name, start and end time).
        native: The runner's own handle on the run (a `distributed.Future`, a Ray
            `ObjectRef`), or `None` for runners that have none.
    """

    __slots__ = (
        "task_run",
        "native",
        "_state",
        "_waiters",
        "_callbacks",
        "_owner",
        "_observed",
        "__weakref__",
    )

    def __init__(self, task_run: TaskRunInfo, owner: TaskRunner | None = None) -> None:
        self.task_run: TaskRunInfo = task_run
        self.native: Any = None
        self._state: State[R_co] | None = None
        self._waiters: list[_Waiter] | None = None
        self._callbacks: list[Callable[[Future[R_co]], object]] | None = None
        self._owner = owner
        self._observed = False

    # -- reading ----------------------------------------------------------------------

    @property
    def state(self) -> State[R_co]:
        """The run's current state: a local read, no I/O."""
        self._observed = True
        return self.peek()

    def peek(self) -> State[R_co]:
        """The run's current state, without marking the run as looked at.

        For runner implementations and tools: reading `state` or `result()` tells the
        runner that someone saw the outcome, so a failure is not reported as
        unobserved at the end of the flow; `peek()` leaves that as it is.
        """
        state = self._state
        return state if state is not None else State(StateType.PENDING, timestamp=self.task_run.created)

    def done(self) -> bool:
        """Whether the run is in a final state."""
        state = self._state
        return state is not None and state.type in _FINAL

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the run is final, or until `timeout` seconds have passed.

        Never raises on timeout: check `done()` or `state` afterwards.

        Raises:
            ValueError: `timeout` is negative.
            DependencyError: Called from inside this very run.
        """
        _check_timeout(timeout)
        if not self.done():
            _watch([self], timeout, lambda _: True)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R_co:
        """Wait for the run to finish and return its value.

        Args:
            timeout: Seconds to wait at most, the fetching of a value held on a
                cluster included; `None` waits as long as it takes.
            raise_on_failure: If the run did not complete, raise its exception (the
                very object the task raised) if true, return it if false.

        Returns:
            The task's return value (or its exception, see `raise_on_failure`).

        Raises:
            WaitTimeout: The run did not finish within `timeout`; it goes on running.
            BaseException: The exception of a run that did not complete.
            ValueError: `timeout` is negative.
            DependencyError: Called from inside this very run.
        """
        state = self._state
        deadline = None if timeout is None else time.monotonic() + timeout
        if state is None or state.type not in _FINAL:
            _check_timeout(timeout)
            _watch([self], timeout, lambda _: True)
            state = self._state
            if state is None or state.type not in _FINAL:
                raise WaitTimeout(
                    f"task run {self.task_run.name!r} did not finish within {timeout} s; it "
                    "is still running. Wait longer, or use future.wait(timeout) to poll."
                )
        if deadline is not None and type(state) is not State:  # a value held elsewhere
            _load_by([self], deadline, timeout)
        self._observed = True
        return state.result(raise_on_failure)

    def add_done_callback(self, fn: Callable[[Future[R_co]], object]) -> None:
        """Call `fn(future)` when the run is final (at once if it already is).

        An exception raised by `fn` is logged and otherwise ignored.
        """
        with _lock:
            state = self._state
            if state is None or state.type not in _FINAL:
                if self._callbacks is None:
                    self._callbacks = [fn]
                else:
                    self._callbacks.append(fn)
                return
        _invoke(fn, self)

    def __await__(self) -> Generator[Any, None, R_co]:
        if not self.done():
            import asyncio

            loop = asyncio.get_running_loop()
            waiter = loop.create_future()

            def wake(_: Future[R_co]) -> None:
                try:
                    loop.call_soon_threadsafe(_resolve, waiter)
                except RuntimeError:  # the loop was closed meanwhile: nobody awaits anymore
                    pass

            self.add_done_callback(wake)
            _context.begin_blocking()  # the loop's thread waits: a pool worker lends its slot
            try:
                yield from waiter
            finally:
                _context.end_blocking()
        return self.result()

    # -- for runners ------------------------------------------------------------------

    def set_state(self, state: State[R_co]) -> None:
        """Move the run to `state`. For use by `TaskRunner` implementations only.

        A final state wakes the waiters, then runs the done-callbacks.

        Raises:
            RuntimeError: The run is already in a final state.
        """
        with _lock:
            current = self._state
            if current is not None and current.type in _FINAL:
                raise RuntimeError(f"{self!r} is already final; it cannot become {state.name}")
            self._state = state
            if state.type not in _FINAL:
                return
            run = self.task_run
            run.end = state.timestamp
            run.start = state.started
            waiters, self._waiters = self._waiters, None
            if waiters:
                for waiter in waiters:
                    waiter.notify(self)
            callbacks, self._callbacks = self._callbacks, None
        owner = self._owner
        if owner is not None:
            owner._run_final(self, state)
        if callbacks:
            for fn in callbacks:
                _invoke(fn, self)

    @property
    def owner(self) -> TaskRunner | None:
        """The runner the run was handed to (`None` for a run made outside runners).

        A runner compares it with itself to tell its own runs (whose `native` handles
        its engine understands) from another runner's.
        """
        return self._owner

    def __repr__(self) -> str:
        state = self._state
        kind = "PENDING" if state is None else state.type.value
        return f"<Future {self.task_run.name!r} {kind}>"


def _invoke(fn: Callable[[Future[Any]], object], future: Future[Any]) -> None:
    try:
        fn(future)
    except Exception:
        import logging

        logging.getLogger("taskrunners").exception("done-callback %r of %r raised", fn, future)


def _resolve(waiter: Any) -> None:
    if not waiter.done():
        waiter.set_result(None)


class FutureList(list[Future[R]]):
    """A list of futures, as returned by `Task.map`, with helpers to wait for all of them."""

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every run is final, or until `timeout` seconds have passed.

        Never raises on timeout.

        Raises:
            ValueError: `timeout` is negative.
        """
        wait(self, timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        """Wait for every run and return their values in list order.

        Fail-fast: with `raise_on_failure`, the first run to fail raises at once, even
        if runs before it in the list are still going.

        Args:
            timeout: Seconds to wait at most for all of them, the fetching of values
                held on a cluster included (one deadline for the whole list).
            raise_on_failure: Raise the exception of a run that did not complete (true)
                or put the exception in its place in the returned list (false).

        Returns:
            The values, in the order of the list.

        Raises:
            WaitTimeout: Not every run finished within `timeout`.
            BaseException: The exception of the first run that did not complete.
            ValueError: `timeout` is negative.
        """
        _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = [f for f in dict.fromkeys(self) if not f.done()]

        def stop(future: Future[Any]) -> bool:
            return raise_on_failure and future._state.type in _NOT_OK  # type: ignore[union-attr]

        if raise_on_failure:
            for future in self:
                if future.done() and stop(future):
                    future.result()  # raises the run's exception
        if pending:
            if _watch(pending, timeout, stop):
                for future in pending:
                    if future.done() and stop(future):
                        future.result()  # raises
            unfinished = sum(1 for f in pending if not f.done())
            if unfinished:
                raise WaitTimeout(
                    f"timed out waiting for all futures to complete within {timeout} s: "
                    f"{unfinished} (of {len(self)}) unfinished"
                )
        if deadline is not None:
            _load_by(self, deadline, timeout)
        return [future.result(raise_on_failure=raise_on_failure) for future in self]


def _load_by(futures: list[Future[Any]], deadline: float, timeout: float | None) -> None:
    """Bring the values still held elsewhere (deferred states) here before `deadline`.

    The fetching runs in a helper thread; if it is not done in time, it goes on there
    and the caller gets `WaitTimeout`.

    Raises:
        WaitTimeout: The values did not arrive before `deadline`.
    """
    from ._states import DeferredState

    deferred: list[DeferredState[Any]] = [
        s for s in (f._state for f in dict.fromkeys(futures)) if isinstance(s, DeferredState) and not s.loaded
    ]
    if not deferred:
        return
    finished = threading.Event()

    def load() -> None:
        try:
            for state in deferred:
                try:
                    state.load()
                except Exception:  # noqa: BLE001, S110 - reading that future's result raises it
                    pass
        finally:
            finished.set()

    threading.Thread(target=load, name="taskrunners-fetch-results", daemon=True).start()
    with _context.blocking():
        arrived = finished.wait(max(0.0, deadline - time.monotonic()))
    if not arrived:
        missing = len([s for s in deferred if not s.loaded])
        raise WaitTimeout(
            f"timed out waiting for all futures to complete within {timeout} s: the runs are "
            f"final, but {missing} (of {len(futures)}) values were still being fetched"
        )


if TYPE_CHECKING or sys.version_info >= (3, 11):

    class DoneAndNotDone(NamedTuple, Generic[R]):
        """The two sets returned by `wait`.

        Generic in the futures' value type (`DoneAndNotDone[int]`; subscripting it at
        run time needs Python 3.11, annotations work on 3.10).
        """

        done: set[Future[R]]
        not_done: set[Future[R]]

else:  # Python 3.10: a NamedTuple cannot be generic at run time

    class DoneAndNotDone(NamedTuple):
        """The two sets returned by `wait`."""

        done: set[Future[Any]]
        not_done: set[Future[Any]]


def wait(
    futures: Iterable[Future[R]], timeout: float | None = None, progress: bool = False
) -> DoneAndNotDone[R]:
    """Wait until every future is final, or until `timeout` seconds have passed.

    Args:
        futures: The futures to wait for.
        timeout: Seconds to wait at most; `None` waits as long as it takes.
        progress: Show a progress row for these runs while waiting: in the flow's
            progress display if one is shown, else in one of its own (drawn once the
            wait has lasted half a second; needs the extra `taskrunners-core[progress]`).

    Returns:
        `(done, not_done)`: the futures that are final, and those that are not.

    Raises:
        ValueError: `timeout` is negative.
    """
    _check_timeout(timeout)
    futures = set(futures)
    pending = [f for f in futures if not f.done()]
    if progress:
        from . import _progress

        display = _progress.track("wait", futures)
        try:
            if pending:
                _watch(pending, timeout, lambda _: False)
        finally:
            if display is not None:
                _progress.close_display(display)
    elif pending:
        _watch(pending, timeout, lambda _: False)
    done = {f for f in futures if f.done()}
    return DoneAndNotDone(done, futures - done)


def as_completed(
    futures: Iterable[Future[R]], timeout: float | None = None, progress: bool = False
) -> Iterator[Future[R]]:
    """Yield the futures as their runs finish, those already final first.

    Args:
        futures: The futures to watch; a future given twice is yielded once.
        timeout: Seconds, counted from the call, after which to stop waiting.
        progress: Show a progress row for these runs while iterating (as for `wait`).

    Raises:
        WaitTimeout: Some runs had not finished when `timeout` passed.
        ValueError: `timeout` is negative.
    """
    _check_timeout(timeout)
    futures = list(dict.fromkeys(futures))
    if progress:
        return _as_completed_shown(futures, timeout)
    return _as_completed(futures, timeout)


def _as_completed_shown(futures: list[Future[R]], timeout: float | None) -> Iterator[Future[R]]:
    from . import _progress

    display = _progress.track("as_completed", futures)
    try:
        yield from _as_completed(futures, timeout)
    finally:
        if display is not None:
            _progress.close_display(display)


def _as_completed(futures: list[Future[R]], timeout: float | None) -> Iterator[Future[R]]:
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = []
    for future in futures:
        if future.done():
            yield future
        else:
            pending.append(future)
    if not pending:
        return
    _check_not_self(pending)
    waiter = _Waiter()
    with _lock:
        for future in pending:
            state = future._state
            if state is not None and state.type in _FINAL:
                waiter.finished.append(future)
            elif future._waiters is None:
                future._waiters = [waiter]
            else:
                future._waiters.append(waiter)
    remaining = len(pending)
    try:
        while remaining:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                finished = waiter.take(0)
            else:
                with _context.blocking():
                    finished = waiter.take(left)
            if not finished and left is not None and deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"{remaining} (of {len(futures)}) futures unfinished after {timeout} s")
            for future in finished:
                remaining -= 1
                yield future
    finally:
        with _lock:
            for future in pending:
                if future._waiters is not None and waiter in future._waiters:
                    future._waiters.remove(waiter)
