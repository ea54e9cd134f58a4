"""`RayTaskRunner`: run a flow's task runs on Ray, a local one or any cluster.

Each run becomes one call of a single remote function (`_remote.run_remote`) that
executes the run's `RunSpec` on a worker and returns the run's final `State`
(pickled), which is what downstream runs receive. The future's `native` is the
`ObjectRef` of that object; an upstream future of this runner is handed to Ray as that
`ObjectRef` (a top-level argument, which Ray resolves on the worker), so data moves
between workers and the flow's process never waits for it.

The flow's process learns that runs ended from one thread per process (`_Watcher`)
that waits on the objects of open runs with `ray.wait` (without fetching them), asks
Ray for their sizes, reads the small ones in one `ray.get` and leaves the large ones
(completed runs' values) in the object store until someone reads them (a
`DeferredState`). Waiting in batches costs far less per run than one Ray callback per
object, and nothing a user hangs on a future runs on Ray's own threads.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from taskrunners import Capability, Future, State, StateType, Task, TaskRunner, TaskRunnersError
from taskrunners.lowlevel import DeferredState, OptionSet, PreparedRun, dumps, loads

from . import _session
from ._options import OPTIONS, resource_requests
from ._remote import on_worker, variant

__all__ = ["InfeasibleRequestError", "RayTaskRunner"]

logger = logging.getLogger("taskrunners.ray")

#: Objects of at least this size are left in the object store until read.
LAZY_MIN_BYTES = 64 * 1024


class InfeasibleRequestError(TaskRunnersError):
    """A run asked Ray for resources that no node of the cluster has, so it never ran."""


class RayTaskRunner(TaskRunner):
    """Runs task runs on Ray: a local Ray started for the flow, or a running cluster.

    Without an address, the runner starts a local Ray for the flow run (listening on
    127.0.0.1 only, dashboard off, a 512 MiB object store, usage statistics off) and
    shuts it down when the flow run ends. With an address it connects to that cluster
    and leaves it running. If this process is connected to Ray already (a `ray.init()`
    of your own, or a task running on a Ray worker), the runner uses that connection
    and never shuts it down.

    Args:
        address: `None` for a local Ray; else what `ray.init(address=...)` takes:
            `"127.0.0.1:6379"`, `"auto"` (the Ray started on this machine with
            `ray start`), `"ray://host:10001"` (Ray Client, needs `ray[client]`).
        init_kwargs: More arguments for `ray.init` (`runtime_env`, `namespace`,
            `num_cpus`, `object_store_memory`, `include_dashboard`, ...); they
            override the runner's defaults for a local Ray.

    Raises:
        TypeError: `address` is not a string, or `init_kwargs` not a mapping.
        ValueError: `init_kwargs` holds an `address` (give it as `address`).
    """

    capabilities = frozenset(
        {
            Capability.PARALLEL,
            Capability.SURVIVES_WORKER_LOSS,
            Capability.NATIVE_DEPENDENCIES,
            Capability.RESOURCE_REQUESTS,
        }
    )

    _on_demand = False  # entered by its first submit (the runner of a task on a Ray worker)

    def __init__(self, address: str | None = None, init_kwargs: dict[str, Any] | None = None) -> None:
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a string or None, got {address!r}")
        if init_kwargs is not None and not hasattr(init_kwargs, "items"):
            raise TypeError(f"init_kwargs must be a dict of ray.init() arguments, got {init_kwargs!r}")
        kwargs = dict(init_kwargs or {})
        if "address" in kwargs:
            raise ValueError("give the cluster's address as RayTaskRunner(address=...), not in init_kwargs")
        self.address = address
        self.init_kwargs = kwargs
        self._session: _session.Session | None = None

    # -- configuration ----------------------------------------------------------------

    def duplicate(self) -> RayTaskRunner:
        return type(self)(address=self.address, init_kwargs=dict(self.init_kwargs))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RayTaskRunner) or type(other) is not type(self):
            return NotImplemented
        return (other.address, other.init_kwargs) == (self.address, self.init_kwargs)

    def __repr__(self) -> str:
        return f"RayTaskRunner(address={self.address!r}, init_kwargs={self.init_kwargs!r})"

    @classmethod
    def for_worker(cls) -> RayTaskRunner:
        """The runner that a task's `.submit()` reaches on a Ray worker.

        It uses the worker's own connection to the cluster. Made for every run on a
        worker, it costs nothing until the task submits: its first submit enters it
        (`__enter__`), and whoever made it exits it if `started`. Runs submitted from
        inside a task reserve no CPU by default (the submitting task, which holds one
        while it waits for them, lends it), so that tasks waiting for the tasks they
        submit cannot take every CPU of the cluster and wait forever; at most as many
        of them as the cluster has CPUs are handed to Ray at once per submitting task,
        the others wait in line. `remote_options(num_cpus=...)` inside the task
        overrides that.
        """
        runner = cls()
        runner._on_demand = True
        return runner

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        # On a Ray worker (a task's `.submit()`), the worker's own connection is used
        # and this costs nothing until the first submit.
        nested = self.address is None and not self.init_kwargs and on_worker()
        if not nested:
            self._session = _session.join(self.address, self.init_kwargs)
            nested = on_worker()
        self._nested = nested  # on a Ray worker: runs lend the submitting task's CPU
        self._mutex = threading.Lock()
        self._functions: dict[Any, Any] = {}
        self._feasibility: dict[Any, Callable[[str], InfeasibleRequestError] | None] = {}
        self._lazy: weakref.WeakSet[DeferredState[Any]] = weakref.WeakSet()
        self._broken: weakref.WeakSet[Future[Any]] = weakref.WeakSet()  # natives holding Ray's errors
        self._in_flight = 0
        self._queued: deque[_Sent] = deque()

    def shutdown(self, interrupted: bool) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            self._fetch_remaining()
        finally:
            _session.leave(session)

    def take_back_unstarted(self) -> list[PreparedRun]:
        """Every open run: Ray is asked to cancel those it holds (an interrupt ends them all)."""
        runs = self.open_runs()
        if runs:
            import ray

            for run in runs:
                if run.future.native is not None:
                    try:
                        ray.cancel(run.future.native)
                    except Exception:  # ended meanwhile, or Ray is gone
                        pass
        return runs

    def _fetch_remaining(self) -> None:
        """Bring the values still in Ray's object store into this process, for the
        states that are still referenced: Ray may stop when this runner does."""
        lazy = [state for state in list(self._lazy) if not state.loaded]
        if not lazy:
            return
        import ray

        try:
            for state, data in zip(lazy, ray.get([state.handle for state in lazy])):
                state.fill(loads(data))
        except Exception:
            for state in lazy:
                try:
                    state.load()
                except Exception:  # lost with its worker, say: result() will say so
                    pass

    # -- submitting -------------------------------------------------------------------

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        if self._on_demand and not self.started:
            with _on_demand_lock:
                if not self.started:
                    self.__enter__()
        run = self.prepare(task, parameters, wait_for)
        options = OPTIONS.current()
        key = (task.name, options.key)
        function = self._functions.get(key) if options.key is not None else None
        if function is None:
            function = self._function(task, options)
            if isinstance(function, InfeasibleRequestError):
                run.set_state(State(StateType.FAILED, exception=function, name="Infeasible"))
                return run.future
            if options.key is not None:
                self._functions[key] = function
        sent = _Sent(self, run, function, "max_retries" not in options.values)
        if not run.upstream:
            self._launch(sent)
            return run.future
        args = run.native_upstreams(self)
        if args is None:
            run.when_ready(lambda _: self._launch_final(sent))
        else:
            self._launch_with(sent, args)
        return run.future

    def _function(self, task: Task[Any, Any], options: OptionSet) -> Any:
        """The remote function variant for this run, or the error of an infeasible request."""
        requests = resource_requests(options.values)
        if requests:
            key = options.key if options.key is not None else id(options)
            try:
                check = self._feasibility[key]
            except KeyError:
                check = self._feasibility[key] = _infeasible(requests, self._nested)
            if check is not None:
                return check(task.name)
        return variant(task.name, options, self._nested)

    def _launch_final(self, sent: _Sent) -> None:
        """Launch once every upstream run is final: this runner's completed runs as their
        ObjectRefs, the others as their states."""
        self._launch_with(sent, sent.run.final_upstreams(self))

    def _launch_with(self, sent: _Sent, upstream: tuple[Any, ...]) -> None:
        args: list[Any] = []
        for arg in upstream:
            if isinstance(arg, State):
                try:
                    arg = dumps(arg)
                except Exception as exc:
                    cause = exc.__cause__ or exc
                    error = TypeError(
                        f"task run {sent.run.info.name!r}: the result of an upstream run cannot be "
                        f"pickled to send it to a Ray worker: {type(cause).__name__}: {cause}"
                    )
                    sent.run.set_state(State(StateType.FAILED, exception=error, name="NotSerializable"))
                    return
            else:
                sent.native = True
            args.append(arg)
        sent.args = tuple(args)
        self._launch(sent)

    def _launch(self, sent: _Sent) -> None:
        if self._nested:
            with self._mutex:
                if self._in_flight >= _nested_cap():
                    self._queued.append(sent)
                    return
                self._in_flight += 1
        self._send(sent)

    def _send(self, sent: _Sent, spec: Any = None) -> None:
        run = sent.run
        if run.future.done():  # abandoned meanwhile
            self._settled()
            return
        try:
            payload = dumps(spec or run.spec)
        except Exception as exc:  # an argument that cannot be sent
            cause = exc.__cause__ or exc
            error = TypeError(f"task run {run.info.name!r} cannot be sent to a Ray worker: {cause}")
            run.set_state(State(StateType.FAILED, exception=error, name="NotSerializable"))
            self._settled()
            return
        try:
            ref = sent.function.remote(payload, *sent.args)
        except Exception as exc:
            run.crash(f"Ray refused it: {type(exc).__name__}: {exc}", exc)
            self._settled()
            return
        run.future.native = ref
        _watcher.watch(ref, sent)

    def _settled(self) -> None:
        """One run sent from a Ray worker ended: send the next queued one, if any."""
        if not self._nested:
            return
        with self._mutex:
            self._in_flight -= 1
            if not self._queued or self._in_flight >= _nested_cap():
                return
            self._in_flight += 1
            sent = self._queued.popleft()
        self._send(sent)

    # -- runs ending (on the watcher's thread) ----------------------------------------

    def _completed(self, sent: _Sent, ref: Any, outcome: Any) -> None:
        """The run's state arrived (pickled bytes), or `_LARGE` for a large completed
        value left in the object store, or Ray's error in its place."""
        self._settled()
        if outcome is _LARGE:
            state: State[Any] = DeferredState(_Fetch(ref, sent.run), handle=ref)
            self._lazy.add(state)
        elif isinstance(outcome, BaseException):
            self._lost(sent, _unwrap(outcome))
            return
        else:
            state = loads(outcome)
        sent.run.set_state(state)

    def _lost(self, sent: _Sent, cause: BaseException) -> None:
        """Ray could not produce the run's state. If the run depends on runs of this
        runner, Ray may only be passing on an upstream's loss: decide once they are final."""
        if sent.native:
            sent.run.when_ready(lambda _: self._lost_after_upstream(sent, cause))
        else:
            self._own_loss(sent, cause)

    def _lost_after_upstream(self, sent: _Sent, cause: BaseException) -> None:
        run = sent.run
        if not any(up in self._broken for up in run.upstream):
            self._own_loss(sent, cause)
            return
        # An upstream's worker was lost: the engine decides with the upstream states, as
        # for any failed upstream (allow_failure runs the task, with states passed in).
        inputs = run.spec.inputs(run.upstream_states())
        if isinstance(inputs, State):
            self._broken.add(run.future)
            run.set_state(inputs)
            return
        sent.native = False
        self._launch_final(sent)

    def _own_loss(self, sent: _Sent, cause: BaseException) -> None:
        """The run itself was lost (its worker died, say): run it again if its task's
        retries allow (a loss counts as an attempt), else end it CRASHED."""
        run = sent.run
        self._broken.add(run.future)
        if sent.rerun and _is_loss(cause) and run.count_loss():
            logger.info("the Ray worker running %s died; running it again", run.info.name)
            with self._mutex:
                self._in_flight += self._nested
            self._send(sent, run.spec.with_task(run.task.with_options(retries=run.task.retries - run.losses)))
            return
        run.set_state(_crash(run, cause))


_on_demand_lock = threading.Lock()


class _Sent:
    """One run as handed to Ray: the run, its remote function and upstream arguments."""

    __slots__ = ("args", "function", "native", "rerun", "run", "runner")

    def __init__(self, runner: RayTaskRunner, run: PreparedRun, function: Any, rerun: bool) -> None:
        self.runner = runner
        self.run = run
        self.function = function
        self.rerun = rerun  # the runner reruns a lost run (Ray does, with `max_retries`)
        self.args: tuple[Any, ...] = ()
        self.native = False  # some argument is an ObjectRef of another run


class _Fetch:
    """Reads a large completed value from Ray's object store (a `DeferredState`'s fetch)."""

    __slots__ = ("info", "ref")

    def __init__(self, ref: Any, run: PreparedRun) -> None:
        self.ref = ref
        self.info = run.info

    def __call__(self) -> State[Any]:
        import ray

        if not ray.is_initialized():
            raise RuntimeError(
                f"the value of task run {self.info.name!r} stayed in Ray's object store, and "
                "this process is no longer connected to Ray; read results before the Ray "
                "they ran on shuts down"
            )
        state: State[Any] = loads(ray.get(self.ref))
        if self.info.start is None:
            self.info.start = state.started
        return state


# -- helpers --------------------------------------------------------------------------


def _unwrap(exc: BaseException) -> BaseException:
    """The exception inside Ray's `RayTaskError` wrappers."""
    from ray.exceptions import RayTaskError

    while isinstance(exc, RayTaskError) and getattr(exc, "cause", None) is not None:
        exc = exc.cause
    return exc


def _is_loss(cause: BaseException) -> bool:
    """Whether Ray lost the run with its worker or node (what Ray's `max_retries` reruns)."""
    from ray import exceptions as rx

    kinds = tuple(getattr(rx, name) for name in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError") if hasattr(rx, name))
    return isinstance(cause, kinds)


def _crash(run: PreparedRun, cause: BaseException) -> State[Any]:
    from ray import exceptions as rx

    if isinstance(cause, rx.WorkerCrashedError):
        reason = "the Ray worker process running it died"
    elif isinstance(cause, rx.TaskCancelledError):
        reason = "Ray cancelled it"
    elif isinstance(cause, getattr(rx, "OutOfMemoryError", ())):
        reason = "Ray killed its worker for want of memory"
    elif isinstance(cause, getattr(rx, "NodeDiedError", ())):
        reason = "the Ray node running it died"
    else:
        text = str(cause).strip().splitlines()
        reason = f"Ray could not run it: {type(cause).__name__}: {text[0] if text else ''}"
    return run.spec.crashed(reason, cause)


def _infeasible(requests: dict[str, Any], nested: bool) -> Callable[[str], InfeasibleRequestError] | None:
    """`None` if some node of the cluster can hold one run with `requests`; else a
    function that makes the error for a task's name."""
    import ray

    need: dict[str, float] = {}
    if "num_cpus" in requests:
        need["CPU"] = requests["num_cpus"]
    elif not nested:
        need["CPU"] = 1
    if "num_gpus" in requests:
        need["GPU"] = requests["num_gpus"]
    if "memory" in requests:
        need["memory"] = requests["memory"]
    need.update(requests.get("resources") or {})
    need = {name: amount for name, amount in need.items() if amount}
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(name, 0) >= amount for name, amount in need.items()) for node in nodes):
        return None
    asked = ", ".join(f"{name}={amount:g}" for name, amount in need.items())
    have = "; ".join(", ".join(f"{name}={node.get(name, 0):g}" for name in need) for node in nodes) or "no live node"

    def error(task_name: str) -> InfeasibleRequestError:
        return InfeasibleRequestError(
            f"task {task_name!r} asks Ray for {asked} per run, and no node of the cluster has "
            f"that much (nodes: {have}), so the run would wait forever. Ask for less in "
            "remote_options(), or add a node that has it."
        )

    return error


_cap: list[int] = []


def _nested_cap() -> int:
    """How many runs one task on a worker hands to Ray at once: the cluster's CPUs."""
    if not _cap:
        import ray

        try:
            _cap.append(max(2, int(ray.cluster_resources().get("CPU", 2))))
        except Exception:
            _cap.append(2)
    return _cap[0]


class _Watcher:
    """One thread per process that learns which runs ended and finishes their futures.

    It waits with `ray.wait(..., fetch_local=False)` on the objects of the oldest
    `_WINDOW` open runs of every runner of the process (a wait costs Ray the number of
    objects waited on, so waiting on all of thousands of open runs would cost more than
    the runs), asks Ray for the sizes of the ready ones, and reads the small ones in one
    `ray.get`. It wakes when an eighth of the window is ready, or when its time slice
    ends (2 ms after runs arrive, doubling to `_SLICE_MAX` while nothing ends); the runs
    beyond the window are checked at least every `_SWEEP` seconds (longer where there
    are so many that checking them would cost more than 2 % of the time). Runs
    submitted while it waits join the next wait.
    """

    _WINDOW = 64
    _SLICE_MIN = 0.002
    _SLICE_BUSY = 0.01
    _SLICE_MAX = 0.05
    _SWEEP = 0.05

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._new: list[tuple[Any, _Sent]] = []
        self._thread: threading.Thread | None = None

    def watch(self, ref: Any, sent: _Sent) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="taskrunners-ray-watcher", daemon=True)
                self._thread.start()
            self._new.append((ref, sent))
            if len(self._new) == 1:
                self._arrived.notify()

    def _loop(self) -> None:
        import ray

        pending: dict[Any, _Sent] = {}
        slice_ = self._SLICE_MIN
        swept = sweep_every = 0.0
        while True:
            with self._lock:
                while not pending and not self._new:
                    self._arrived.wait()
                if self._new:
                    pending.update(self._new)
                    self._new.clear()
                    slice_ = self._SLICE_MIN if len(pending) <= self._WINDOW else self._SLICE_BUSY
            window = list(itertools.islice(pending, self._WINDOW))
            batch = max(1, len(window) // 4)
            try:
                ready, rest = ray.wait(window, num_returns=batch, timeout=slice_, fetch_local=False)
                if len(ready) == batch and rest:
                    ready += ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)[0]
                now = time.monotonic()
                if len(pending) > len(window) and now - swept >= sweep_every:
                    beyond = list(itertools.islice(pending, self._WINDOW, None))
                    ready += ray.wait(beyond, num_returns=len(beyond), timeout=0, fetch_local=False)[0]
                    swept = time.monotonic()
                    sweep_every = max(self._SWEEP, 100 * (swept - now))
            except Exception as exc:  # Ray went away (shut down under open runs)
                self._drop(pending, exc)
                continue
            if not ready:
                slice_ = min(slice_ * 2, self._SLICE_MAX)
                continue
            for ref, outcome in zip(ready, _outcomes(ray, ready)):
                sent = pending.pop(ref)
                try:
                    sent.runner._completed(sent, ref, outcome)
                except BaseException:  # never let one run's trouble stop the others
                    logger.exception("taskrunners-ray: finishing run %r failed", sent.run.info.name)

    def _drop(self, pending: dict[Any, _Sent], error: BaseException) -> None:
        for sent in pending.values():
            try:
                sent.runner._settled()
                sent.run.crash(f"Ray stopped before it ended ({error!r})", error)
            except BaseException:
                logger.exception("taskrunners-ray: ending run %r failed", sent.run.info.name)
        pending.clear()


#: The outcome of a run whose (completed) state is large: left in the object store.
_LARGE = object()


def _outcomes(ray: Any, refs: list[Any]) -> list[Any]:
    """For ready `refs`: the pickled state, `_LARGE`, or Ray's exception, each."""
    large = _large(refs)
    small = [ref for ref in refs if ref not in large]
    values: dict[Any, Any] = {}
    if small:
        try:
            values = dict(zip(small, ray.get(small)))
        except Exception:
            for ref in small:
                try:
                    values[ref] = ray.get(ref)
                except Exception as exc:
                    values[ref] = exc
    return [_LARGE if ref in large else values[ref] for ref in refs]


def _large(refs: list[Any]) -> set[Any]:
    """The refs whose objects are at least `LAZY_MIN_BYTES` (Ray knows without moving them).

    The process owns the objects of the runs it submitted, so its own core worker knows
    their sizes (no RPC); Ray's cluster-wide lookup is the fallback.
    """
    from ray import experimental

    sizes: dict[Any, Any] = {}
    try:
        sizes = experimental.get_local_object_locations(refs)
    except Exception:  # a Ray without it: ask the cluster below
        pass
    unknown = [ref for ref in refs if (sizes.get(ref) or {}).get("object_size") is None]
    if unknown:
        try:
            sizes.update(experimental.get_object_locations(unknown))
        except Exception:  # no answer: read them all
            pass
    return {ref for ref in refs if ((sizes.get(ref) or {}).get("object_size") or 0) >= LAZY_MIN_BYTES}


_watcher = _Watcher()
