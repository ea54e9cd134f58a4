"""`TaskRunner`: the abstract base that every runner plugin implements.

A runner decides *where* task runs execute; the core decides *what* a run does (the
engine in `TaskCall.execute`). A plugin implements:

- `duplicate()`: a fresh, unstarted runner with the same configuration. Each flow run
  works on its own duplicate.
- `__enter__` / `__exit__`: start and stop its resources. Call `super()` first in
  `__enter__` and first in `__exit__`: the base guards the lifecycle, and its
  `__exit__` waits until every run handed to the runner is final.
- `submit(task, parameters, wait_for)`: call `self.prepare(...)` to get a `TaskCall`
  whose future it returns, and arrange for `call.execute(upstream_states)` to run once
  the upstream runs are final, then `call.future.set_state(final_state)`.
- `map(task, parameter_sets, wait_for)` optionally: the default calls `submit` per run.

Native dependencies: `call.upstream` lists the upstream futures in the order `execute`
expects their states. A runner whose engine passes results between its own tasks
(Dask, Ray) stores its engine's handle in `Future.native` and, for the upstream
futures it owns (`future.owner is self`), hands those handles to its engine in place
of states: the engine resolves them on the worker to the upstream's final `State`
(the value its remote `execute` returned), and data moves worker to worker. Upstream
futures of other runners (a parent flow's, say) are waited for locally and their
`state` passed instead.
"""

from __future__ import annotations

import abc
import enum
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import _context
from ._engine import TaskCall, TaskRunInfo
from ._errors import DependencyError, RunnerLifecycleError, UnobservedFailureWarning
from ._futures import Future, FutureList
from ._states import _NOT_OK, State

if TYPE_CHECKING:
    from types import TracebackType

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
    _started = False

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

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self: Self) -> Self:
        if self._started:
            raise RunnerLifecycleError(
                f"{type(self).__name__} is already started; use runner.duplicate() for "
                "another one"
            )
        self._started = True
        self._open = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._failed: list[Future[Any]] = []
        self._idle_callbacks: list[Callable[[], object]] = []
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Wait until every run handed to this runner is final, then warn about
        failed runs that nobody looked at (unless an interrupt is unwinding).

        When an interrupt (`KeyboardInterrupt`, `SystemExit`) is unwinding, the runs
        that `take_back_unstarted()` returns end CRASHED first; runs already
        executing are waited for.
        """
        if exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            for call in self.take_back_unstarted():
                call.future.set_state(call.crashed(f"the flow was interrupted by {exc_type.__name__}"))  # type: ignore[union-attr]
        try:
            self.wait_idle()
        finally:
            self._started = False
        if exc_type is None or issubclass(exc_type, Exception):
            self._warn_unobserved()

    def take_back_unstarted(self) -> Iterable[TaskCall]:
        """Take back the runs handed over that have not started (an interrupt crashes them).

        Called by `__exit__` when an interrupt is unwinding. The default takes back
        nothing; a runner with a queue of its own returns what it removed from it.
        """
        return ()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every run handed to this runner is final. Returns whether it is."""
        with self._idle:
            return self._idle.wait_for(lambda: self._open == 0, timeout)

    @property
    def started(self) -> bool:
        """Whether the runner is inside its `with` block."""
        return self._started

    # -- for implementations ----------------------------------------------------------

    def prepare(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> TaskCall:
        """Make the `TaskCall` and the future for one run, counted as open until final.

        Raises:
            RunnerLifecycleError: The runner is not started.
            DependencyError: The run would depend on the task run submitting it.
        """
        if not self._started:
            raise RunnerLifecycleError(
                f"{type(self).__name__} is not started: a runner accepts runs only inside "
                "its `with` block. Use it as a flow's task_runner, or `with runner: ...`."
            )
        future: Future[Any] = Future(TaskRunInfo(task.name, task.tags), self)
        call = task._prepare(parameters, wait_for, future)
        if call.upstream:
            _refuse_self_dependency(call)
        with self._lock:
            self._open += 1
        collector = getattr(_context._thread, "prepared", None)
        if collector is not None:
            collector.append(call)
        return call

    def _run_final(self, future: Future[Any], state: State[Any]) -> None:
        """Called by `Future.set_state` when one of this runner's runs becomes final."""
        with self._lock:
            if state.type in _NOT_OK:
                self._failed.append(future)
            self._open -= 1
            if self._open:
                return
            self._idle.notify_all()
            callbacks, self._idle_callbacks = self._idle_callbacks, []
        for fn in callbacks:
            fn()

    def _when_idle(self, fn: Callable[[], object]) -> None:
        """Call `fn()` once no run is open (at once if none is); for async flows."""
        with self._lock:
            if self._open:
                self._idle_callbacks.append(fn)
                return
        fn()

    def _warn_unobserved(self) -> None:
        failed = [f for f in self._failed if not f._observed]
        self._failed = []
        if not failed:
            return
        named = ", ".join(
            f"{f.task_run.name!r} ({f._state.name}: {f._state.exception!r})"  # type: ignore[union-attr]
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

    frame = sys._getframe(2)  # the caller of warnings.warn's caller
    level = 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith("taskrunners"):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _refuse_self_dependency(call: TaskCall) -> None:
    from ._context import current_task_run_var

    current = current_task_run_var.get()
    if current is None:
        return
    for future in call.upstream:
        if future.task_run is current:
            raise DependencyError(
                f"task run {call.info.name!r} would wait for {current.name!r}, the run that "
                "submits it, so it could start only after that run ends. Submit it from "
                "outside the task, or drop the dependency."
            )
