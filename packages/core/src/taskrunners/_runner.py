"""`TaskRunner`: the abstract base that every runner plugin implements.

A runner decides *where* task runs execute; the core decides *what* a run does (the
engine in `RunSpec.execute`). A plugin implements:

- `duplicate()`: a fresh, unstarted runner with the same configuration. Each flow run
  works on its own duplicate.
- `start()` and `shutdown(interrupted)`: acquire and release its resources. The base
  owns `__enter__` and `__exit__`: it guards the lifecycle, calls `start()` (and rolls
  the runner back to unstarted if it raises), waits in `__exit__` until every run
  handed to the runner is final, then calls `shutdown()`.
- `submit(task, parameters, wait_for)`: call `self.prepare(...)` to get a
  `PreparedRun`, arrange for `run.spec.execute(upstream_states)` to run once the
  upstream runs are final, then `run.set_state(final_state)`; return `run.future`.
- optionally `map(task, parameter_sets, wait_for)` (the default calls `submit` per
  run) and `take_back_unstarted()` (the runs an interrupt may crash before they start).

Native dependencies: `run.upstream` lists the upstream futures in the order `execute`
expects their states. A runner whose engine passes results between its own tasks
(Dask, Ray) stores its engine's handle in `Future.native`, and asks
`run.native_upstreams(self)` for the handles to give its engine in place of states:
the engine resolves them on the worker to the upstream's final `State`, and data
moves worker to worker. Upstream runs of other runners (a parent flow's, say) are
waited for locally (`when_ready`) and their states passed instead (`final_upstreams`).
"""

from __future__ import annotations

import abc
import enum
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import _context, _interrupts
from ._engine import PreparedRun, RunSpec, TaskRunInfo
from ._errors import DependencyError, RunnerLifecycleError, UnobservedFailureWarning
from ._futures import Future, FutureList
from ._states import _NOT_OK, State
from ._tags import _tags_var

if TYPE_CHECKING:
    from types import FrameType, TracebackType

    from ._record import Recording
    from ._tasks import Task

__all__ = ["Capability", "TaskRunner"]

Self = TypeVar("Self", bound="TaskRunner")


class Capability(str, enum.Enum):
    """What a runner may do beyond what every runner must do.

    A runner declares them once, in its class's `capabilities` attribute; a test of the
    conformance suite that needs one the runner lacks is skipped, naming it.
    """

    #: Runs tasks in threads of the flow's own process: context variables and objects
    #: in memory (events, locks) reach the task.
    IN_PROCESS = "in-process"
    #: Runs the Python code of several runs at once, in separate processes.
    PARALLEL = "parallel"
    #: A worker process that dies in the middle of a run crashes that run only (or
    #: retries it when the task asks for retries); the other runs complete.
    SURVIVES_WORKER_LOSS = "survives-worker-loss"
    #: Results move between workers through the engine, not through the flow's process.
    NATIVE_DEPENDENCIES = "native-dependencies"
    #: Accepts per-run resource requests (CPUs, GPUs, memory, custom resources).
    RESOURCE_REQUESTS = "resource-requests"
    #: Runs execute in other processes: arguments, return values and exceptions are
    #: pickled to travel (and what cannot be pickled fails the run, naming it).
    OUT_OF_PROCESS = "out-of-process"


#: What unwinds through a runner's `with` block as an interrupt (Ctrl-C, SIGTERM, exit).
_INTERRUPTS = (KeyboardInterrupt, SystemExit)

#: How many unobserved failed runs a warning names before it only counts the rest.
_NAMED_IN_WARNING = 5


class TaskRunner(abc.ABC):
    """Abstract base of task runners: where the runs of a flow's tasks execute.

    Attributes:
        capabilities: What the runner can do beyond what every runner must do.
        known_conformance_failures: Conformance tests the runner is known to fail,
            by test name, with the reason; the suite applies them as strict xfails.
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    known_conformance_failures: ClassVar[Mapping[str, str]] = {}
    __started = False
    __grace: float | None = None
    __interruption: str | None = None
    __recording: Recording | None = None
    #: The flow whose run this runner serves, whether that run has `log_prints` on,
    #: and its `FlowRunInfo`, made on first use (set by the flow; never by a runner).
    _flow: Any = None
    _log_prints = False
    _flow_run: Any = None

    # -- to implement -----------------------------------------------------------------

    @abc.abstractmethod
    def duplicate(self: Self) -> Self:
        """A new, unstarted runner with the same configuration (it compares equal)."""

    @abc.abstractmethod
    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        """Hand one run of `task` to the runner and return its future without blocking.

        Args:
            task: The task to run.
            parameters: Its arguments by parameter name; futures may sit at any depth.
            wait_for: Futures (possibly in `allow_failure`) that must be final first.

        Raises:
            RunnerLifecycleError: The runner is not started.
            DependencyError: The run would depend on the run submitting it.
        """

    def map(
        self,
        task: Task[Any, Any],
        parameter_sets: Sequence[dict[str, Any]],
        wait_for: Iterable[Any] | None = None,
    ) -> FutureList[Any]:
        """Hand one run per parameter dict to the runner; the default submits each.

        Raises:
            RunnerLifecycleError: The runner is not started.
        """
        return FutureList(self.submit(task, parameters, wait_for) for parameters in parameter_sets)

    def start(self) -> None:
        """Acquire the runner's resources (a pool, a cluster, a client). Hook for
        implementations, called by `__enter__`; the default does nothing.

        If it raises, the runner is back to unstarted (it may be entered again), and
        `shutdown` is not called: release what `start` acquired before raising.
        """

    def shutdown(self, interrupted: bool) -> None:
        """Release the runner's resources. Hook for implementations, called by
        `__exit__` once every run handed to the runner is final; the default does
        nothing.

        Args:
            interrupted: An interrupt (`KeyboardInterrupt`, `SystemExit`) is unwinding
                and the grace period is over: do not wait for runs any more, stop the
                workers, pools and clusters the runner started (leaving no process
                behind), in bounded time. Runs still open after `shutdown` returns end
                CRASHED.
        """

    def take_back_unstarted(self) -> Iterable[PreparedRun]:
        """Withdraw the runs handed over that have not started; hook for implementations.

        Called when an interrupt unwinds through the runner's `with` block (with
        `interruption` set): the base crashes the runs returned, and those waiting for
        upstream runs, then waits up to `shutdown_grace` seconds for the others. The
        default withdraws nothing. A runner with a queue of its own returns what it
        removed from it, and starts nothing more; a runner whose engine can cancel runs
        cancels them there and returns them. Runs that come back later (a worker hands
        back runs it had not started) are crashed by the runner with `interruption`.
        """
        return ()

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self: Self) -> Self:  # noqa: PYI019 - typing.Self needs Python 3.11
        if self.__started:
            raise RunnerLifecycleError(
                f"{type(self).__name__} is already started; use runner.duplicate() for another one"
            )
        self.__lock = threading.Lock()
        self.__idle = threading.Condition(self.__lock)
        self.__runs: dict[int, PreparedRun] = {}
        self.__idle_waiters = 0
        self.__failed: list[Future[Any]] = []
        self.__idle_callbacks: list[Callable[[], object]] = []
        self.__interruption = None
        self.__started = True
        try:
            self.start()
        except BaseException:
            self.__started = False
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Wait until every run handed to this runner is final, shut the runner down,
        then warn about failed runs that nobody looked at.

        When an interrupt (`KeyboardInterrupt`, `SystemExit`, `Terminated`) is
        unwinding, or arrives while waiting: the runs that `take_back_unstarted()`
        returns, and those still waiting for upstream runs, end CRASHED naming the
        interrupt; the runs that are running get up to `shutdown_grace` seconds to
        finish (a second interrupt ends the wait); then `shutdown(interrupted=True)`
        stops the runner, and the runs still open end CRASHED.
        """
        interrupt = None
        if exc_type is not None and _interrupts.is_interrupt(exc_type):
            interrupt = exc if exc is not None else exc_type()
        reason = ""
        try:
            if interrupt is not None:
                reason = self.__interrupted(interrupt)
            else:
                try:
                    self.wait_idle()
                except BaseException as waiting:
                    interrupt = waiting
                    reason = self.__interrupted(waiting)
                    raise
        finally:
            try:
                if interrupt is None:
                    self.shutdown(False)
                else:
                    with _interrupts.held_signals():  # stopping workers: a Ctrl-C must not cut it short
                        try:
                            self.shutdown(True)
                        finally:
                            self.abandon(reason or f"{self.__interruption} before the run finished")
            finally:
                self.__started = False
        if exc_type is None or issubclass(exc_type, Exception):
            self.__warn_unobserved()

    def __interrupted(self, interrupt: BaseException) -> str:
        """End the runs that have not started, give the running ones the grace period,
        and return the reason to crash those still open with."""
        self.__interruption = f"the flow was interrupted by {_interrupts.interrupt_name(interrupt)}"
        unstarted = f"{self.__interruption} before the run started"
        try:
            # Taken back: not started, or (Dask, Ray) cancelled by the engine while running.
            withdrawn = f"{self.__interruption} before the run finished"
            crashed = sum(run.crash(withdrawn) for run in self.take_back_unstarted())
            for run in self.open_runs():  # runs waiting for upstream runs cannot have started
                if run.upstream and not all(future.done() for future in run.upstream):
                    crashed += run.crash(unstarted)
            running = len(self.open_runs())
            grace = _interrupts.shutdown_grace(self.__grace)
            _interrupts.logger().warning(
                "taskrunners: %s: %d run(s) end CRASHED without finishing; %s",
                self.__interruption,
                crashed,
                f"waiting up to {grace:g} s for {running} run(s) in progress (interrupt again to stop them now)"
                if running
                else "no run is in progress",
            )
            if not running or self.wait_idle(grace):
                return ""
            _interrupts.logger().warning(
                "taskrunners: %d run(s) did not finish within the %g s grace period; stopping them",
                len(self.open_runs()),
                grace,
            )
            return f"{self.__interruption}, and the run did not finish within the {grace:g} s grace period"
        except _INTERRUPTS as again:
            return (
                f"{self.__interruption}, and a second interrupt ({_interrupts.interrupt_name(again)}) "
                "stopped the run before it finished"
            )

    @property
    def interruption(self) -> str | None:
        """Why the runner is winding down after an interrupt, e.g. `"the flow was
        interrupted by SIGINT (Ctrl-C)"`; `None` while no interrupt has reached it.

        Set before `take_back_unstarted()` is called, for implementations that end runs
        themselves later (a worker hands back runs it had not started).
        """
        return self.__interruption if self.__started else None

    @property
    def shutdown_grace(self) -> float | None:
        """Seconds that running runs get to finish after an interrupt before the runner
        stops them; `None` (the default) takes `TASKRUNNERS_SHUTDOWN_GRACE` from the
        environment, else 5 seconds. Copied by the flow to the runner it starts.

        Raises:
            ValueError: Set to something other than `None` or a number of seconds >= 0.
        """
        return self.__grace

    @shutdown_grace.setter
    def shutdown_grace(self, seconds: float | None) -> None:
        self.__grace = None if seconds is None else _interrupts.check_grace(seconds, "shutdown_grace")

    def abandon(self, reason: str, cause: BaseException | None = None) -> int:
        """End every open run of this runner CRASHED, for `reason`; returns how many.

        For implementations: the one way to give up on runs the runner can no longer
        finish (its cluster went away, its pool broke). The base calls it for the runs
        still open after an interrupted `shutdown`.
        """
        with self.__lock:
            runs = list(self.__runs.values())
        return sum(run.crash(reason, cause) for run in runs)

    def open_runs(self) -> list[PreparedRun]:
        """The runs handed to this runner that are not final yet (for implementations)."""
        with self.__lock:
            return list(self.__runs.values())

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every run handed to this runner is final. Returns whether it is."""
        with self.__idle:
            self.__idle_waiters += 1
            try:
                return self.__idle.wait_for(lambda: not self.__runs, timeout)
            finally:
                self.__idle_waiters -= 1

    @property
    def started(self) -> bool:
        """Whether the runner is inside its `with` block."""
        return self.__started

    # -- for implementations ----------------------------------------------------------

    def prepare(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> PreparedRun:
        """Make the `PreparedRun` (spec and future) of one run, counted as open until final.

        Raises:
            RunnerLifecycleError: The runner is not started, or an interrupt reached it.
            DependencyError: The run would depend on the task run submitting it.
        """
        if not self.__started:
            raise RunnerLifecycleError(
                f"{type(self).__name__} is not started: a runner accepts runs only inside "
                "its `with` block. Use it as a flow's task_runner, or `with runner: ...`."
            )
        if self.__interruption is not None:
            raise RunnerLifecycleError(
                f"{type(self).__name__} takes no new runs ({task.name!r}): {self.__interruption}"
            )
        if task.task_run_name is None and not _tags_var.get():
            info = TaskRunInfo(task.name, task.tags)
        else:
            info = task._run_info(parameters)  # a run name to make, or tags() blocks open
        spec, upstream = task._prepare(parameters, wait_for, info)
        if upstream:
            _refuse_self_dependency(spec, upstream)
        run = PreparedRun(spec, Future(info, self), upstream)
        with self.__lock:
            self.__runs[info.number] = run
        collector = getattr(_context._thread, "prepared", None)
        if collector is not None:
            collector.append(run)
        return run

    def _run_final(self, future: Future[Any], state: State[Any]) -> None:
        """Called by `Future.set_state` when one of this runner's runs becomes final."""
        recording = self.__recording
        if recording is not None:
            recording.add(future.task_run, state)
        with self.__lock:
            if state.type in _NOT_OK:
                self.__failed.append(future)
            runs = self.__runs
            runs.pop(future.task_run.number, None)
            if runs:
                return
            if self.__idle_waiters:
                self.__idle.notify_all()
            callbacks = self.__idle_callbacks
            if not callbacks:
                return
            self.__idle_callbacks = []
        for fn in callbacks:
            fn()

    def _record_into(self, recording: Recording | None) -> None:
        """Record each run that becomes final into `recording` (a flow run's report)."""
        self.__recording = recording

    def _recording(self) -> Recording | None:
        """The flow run's recording that this runner records into, if any."""
        return self.__recording

    def _when_idle(self, fn: Callable[[], object]) -> None:
        """Call `fn()` once no run is open (at once if none is); for async flows."""
        with self.__lock:
            if self.__runs:
                self.__idle_callbacks.append(fn)
                return
        fn()

    def __warn_unobserved(self) -> None:
        failed = [f for f in self.__failed if not f._observed]
        self.__failed = []
        if not failed:
            return
        named = ", ".join(
            f"{f.task_run.name!r} ({f.peek().name}: {f.peek().exception!r})"
            for f in failed[:_NAMED_IN_WARNING]
        )
        more = f" and {len(failed) - _NAMED_IN_WARNING} more" if len(failed) > _NAMED_IN_WARNING else ""
        warnings.warn(
            f"{len(failed)} task run(s) did not complete and nobody read their result: "
            f"{named}{more}. Call .result() on their futures, read .state, or return them "
            "from the flow.",
            UnobservedFailureWarning,
            stacklevel=_caller_stacklevel(),
        )


def _caller_stacklevel() -> int:
    """The `stacklevel` that points a warning at the first frame outside taskrunners."""
    import sys

    frame: FrameType | None = sys._getframe(2)  # the caller of warnings.warn's caller
    level = 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith("taskrunners"):
        frame = frame.f_back
        level += 1
    return level


def _refuse_self_dependency(spec: RunSpec, upstream: tuple[Future[Any], ...]) -> None:
    current = _context.current_task_run_var.get()
    if current is None:
        return
    for future in upstream:
        if future.task_run is current:
            raise DependencyError(
                f"task run {spec.info.name!r} would wait for {current.name!r}, the run that "
                "submits it, so it could start only after that run ends. Submit it from "
                "outside the task, or drop the dependency."
            )
