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

from . import _context
from ._engine import PreparedRun, RunSpec, TaskRunInfo
from ._errors import DependencyError, RunnerLifecycleError, UnobservedFailureWarning
from ._futures import Future, FutureList
from ._states import _NOT_OK, State

if TYPE_CHECKING:
    from types import FrameType, TracebackType

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
    #: Accepts per-run resource requests (CPUs, GPUs, memory).
    RESOURCE_REQUESTS = "resource-requests"
    #: Can cancel a run that is already executing.
    CANCELS_RUNNING = "cancels-running"


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
            interrupted: An interrupt (`KeyboardInterrupt`, `SystemExit`) is unwinding:
                do not wait for anything more. Runs still open after `shutdown`
                returns end CRASHED.
        """

    def take_back_unstarted(self) -> Iterable[PreparedRun]:
        """Withdraw the runs handed over that have not started; hook for implementations.

        Called when an interrupt unwinds through the runner's `with` block: the base
        crashes the runs returned, and waits for the others. The default withdraws
        nothing. A runner with a queue of its own returns what it removed from it; a
        runner whose engine can cancel runs cancels them there and returns them.
        """
        return ()

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self: Self) -> Self:
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

        When an interrupt (`KeyboardInterrupt`, `SystemExit`) is unwinding, or arrives
        while waiting, the runs that `take_back_unstarted()` returns end CRASHED, and
        so does every run still open once `shutdown(interrupted=True)` returns.
        """
        interrupted = exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit))
        try:
            if interrupted:
                assert exc_type is not None
                self.__crash_unstarted(f"the flow was interrupted by {exc_type.__name__}")
            try:
                self.wait_idle()
            except BaseException as waiting:
                interrupted = True
                self.__crash_unstarted(f"the flow was interrupted by {type(waiting).__name__}")
                raise
        finally:
            try:
                self.shutdown(interrupted)
            finally:
                if interrupted:
                    self.abandon("the flow was interrupted before the run finished")
                self.__started = False
        if exc_type is None or issubclass(exc_type, Exception):
            self.__warn_unobserved()

    def __crash_unstarted(self, reason: str) -> None:
        for run in self.take_back_unstarted():
            run.crash(reason)

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
            RunnerLifecycleError: The runner is not started.
            DependencyError: The run would depend on the task run submitting it.
        """
        if not self.__started:
            raise RunnerLifecycleError(
                f"{type(self).__name__} is not started: a runner accepts runs only inside "
                "its `with` block. Use it as a flow's task_runner, or `with runner: ...`."
            )
        info = TaskRunInfo(task.name, task.tags)
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
