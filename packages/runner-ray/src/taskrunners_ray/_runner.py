"""`RayTaskRunner`: run a flow's task runs on Ray, a local one or any cluster.

Each run becomes a call of one remote function (`_remote.run_remote`) that executes
its `RunSpec` on a worker and returns its final `State`, pickled: the object that
downstream runs receive. The future's `native` is that object's `ObjectRef`, handed to
downstream runs of this runner as a top-level argument (Ray resolves it on the worker),
so data moves between workers, not through the flow's process. Runs without upstream
runs that queue (the runner keeps twice the cluster's CPUs in Ray tasks) go in batches,
one Ray task for several short runs, each still with its own object.

One thread per process (`_Watcher`) learns which runs ended with `ray.wait` (without
fetching), reads the small states in one `ray.get` and leaves large ones (completed
runs' values) in the object store as `DeferredState`s until read.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from taskrunners import Capability, Future, State, StateType, Task, TaskRunInfo, TaskRunner, TaskRunnersError
from taskrunners.lowlevel import DeferredState, OptionSet, PreparedRun, dumps, loads

from . import _session
from ._options import OPTIONS, resource_requests
from ._remote import batch_variant, batchable, on_worker, variant

__all__ = ["InfeasibleRequestError", "RayTaskRunner"]

logger = logging.getLogger("taskrunners.ray")

#: Objects of at least this size are left in the object store until read.
LAZY_MIN_BYTES = 64 * 1024
#: The most runs in one batch, and the most seconds of work in one (by recent runs of its task).
BATCH_MAX = 32
BATCH_SECONDS = 0.02


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
        {Capability.PARALLEL, Capability.SURVIVES_WORKER_LOSS, Capability.NATIVE_DEPENDENCIES}
        | {Capability.RESOURCE_REQUESTS}
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
        """The runner that a task's `.submit()` reaches on a Ray worker, on the worker's
        own connection. It costs nothing until the task submits: its first submit enters
        it, and whoever made it exits it if `started`."""
        runner = cls()
        runner._on_demand = True
        return runner

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        nested = self.address is None and not self.init_kwargs and on_worker()
        if not nested:
            self._session = _session.join(self.address, self.init_kwargs)
            nested = on_worker()
        # On a Ray worker, runs reserve no CPU (the submitting task lends its own) and at
        # most the cluster's CPUs of them are out at once per submitting task.
        self._nested = nested
        self._mutex = threading.Lock()
        self._functions: dict[Any, Any] = {}
        self._feasibility: dict[Any, Callable[[str], InfeasibleRequestError] | None] = {}
        self._lazy: weakref.WeakKeyDictionary[DeferredState[Any], TaskRunInfo] = weakref.WeakKeyDictionary()
        self._broken: weakref.WeakSet[Future[Any]] = weakref.WeakSet()  # natives holding Ray's errors
        self._in_flight = 0  # Ray tasks out
        self._queued: deque[_Sent] = deque()
        self._durations: dict[Any, float] = {}  # remote function -> seconds of its longest recent run

    def shutdown(self, interrupted: bool) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        # Bring home the values still referenced and left in the store: Ray may stop now.
        lazy = {state: info for state, info in list(self._lazy.items()) if not state.loaded}
        try:
            DeferredState.load_all(lazy, _fetch_many)
            for state, info in lazy.items():
                info.start = info.start or state.started
        finally:
            _session.leave(session)

    def take_back_unstarted(self) -> list[PreparedRun]:
        """Every open run: Ray is asked to cancel those it holds (an interrupt ends them all)."""
        with self._mutex:
            self._queued.clear()
        runs = self.open_runs()
        if runs:
            import ray

            for run in runs:
                if run.future.native is not None:
                    with contextlib.suppress(Exception):  # ended meanwhile, or Ray is gone
                        ray.cancel(run.future.native)
        return runs

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
        args = run.native_upstreams(self) if run.upstream else ()
        if args is None:
            run.when_ready(lambda _: self._launch(sent, run.final_upstreams(self)))
        else:
            self._launch(sent, args)
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

    def _launch(self, sent: _Sent, upstream: tuple[Any, ...]) -> None:
        """Hand the run to Ray with its upstream runs (ObjectRefs, or states to pickle),
        or queue it while this runner has `_limit()` Ray tasks out (a run with upstream
        arguments goes at once, except from a Ray worker)."""
        args: list[Any] = []
        for arg in upstream:
            if isinstance(arg, State):
                try:
                    arg = dumps(arg)
                except TaskRunnersError as exc:
                    error = TypeError(
                        f"task run {sent.run.info.name!r}: the result of an upstream run cannot be "
                        f"pickled to send it to a Ray worker: {exc.__cause__ or exc}"
                    )
                    sent.run.set_state(State(StateType.FAILED, exception=error, name="NotSerializable"))
                    return
            else:
                sent.native = True
            args.append(arg)
        sent.args = tuple(args)
        held = self._nested or not args
        limit = self._limit() if held else 0
        with self._mutex:
            if held and (self._queued or self._in_flight >= limit):
                self._queued.append(sent)
                return
            self._in_flight += 1
        if not self._send([sent]):
            self._drain()

    def _limit(self) -> int:
        """How many Ray tasks this runner keeps out: the cluster's CPUs from a Ray worker
        (where runs reserve none), twice that from the flow's process."""
        return _cluster_cpus() * (1 if self._nested else 2)

    def _send(self, group: list[_Sent], spec: Any = None) -> bool:
        """Send one Ray task (counted in `_in_flight` already): a run, or a batch of queued
        runs of one remote function. Returns whether it went (else it is uncounted)."""
        group = [sent for sent in group if not sent.run.future.done()]  # not abandoned meanwhile
        if not group:
            with self._mutex:
                self._in_flight -= 1
            return False
        try:
            if len(group) == 1:
                sent = group[0]
                sent.batch = None
                refs = [sent.function.remote(dumps(spec or sent.run.spec), *sent.args)]
            else:
                payload = dumps([sent.run.spec for sent in group])
                refs = batch_variant(group[0].function, len(group)).remote(payload)
                for sent in group:
                    sent.batch = group
        except Exception as exc:
            if len(group) > 1:  # some run cannot be pickled, say: each on its own
                with self._mutex:
                    self._in_flight += len(group) - 1
                return all([self._send([sent]) for sent in group])
            run = group[0].run
            if isinstance(exc, TaskRunnersError):  # an argument that cannot be pickled
                error = TypeError(f"task run {run.info.name!r} cannot be sent to Ray: {exc.__cause__}")
                run.set_state(State(StateType.FAILED, exception=error, name="NotSerializable"))
            else:
                run.crash(f"Ray refused it: {type(exc).__name__}: {exc}", exc)
            with self._mutex:
                self._in_flight -= 1
            return False
        for sent, ref in zip(group, refs):
            sent.run.future.native = ref
        _watcher.watch(zip(refs, group))
        return True

    def _release(self, sent: _Sent | None = None) -> None:
        """A run handed to Ray ended: once its Ray task has, send queued runs while there
        is room.

        Queued runs without upstream arguments go in batches once runs of their task are
        known to be short: a batch takes the queued runs divided among the free places,
        at most `BATCH_MAX` of them and `BATCH_SECONDS` of work by the longest recent
        run of the task. Each run keeps its own object (the batch returns one per run).
        """
        with self._mutex:
            if sent is not None and sent.batch is not None:
                sent.batch.remove(sent)
                if sent.batch:
                    return
            self._in_flight -= 1
        self._drain()

    def _drain(self) -> None:
        limit = self._limit()
        while True:
            groups = self._take(limit)
            if not groups or all([self._send(group) for group in groups]):
                return

    def _take(self, limit: int) -> list[list[_Sent]]:
        groups: list[list[_Sent]] = []
        with self._mutex:
            queued = self._queued
            while queued and self._in_flight < limit:
                head = queued.popleft()
                group = [head]
                if not head.args and batchable(head.function):
                    longest = self._durations.get(head.function, BATCH_SECONDS)
                    share = -(-(len(queued) + 1) // limit)  # the queued runs divided among the places
                    size = min(BATCH_MAX, share, int(BATCH_SECONDS / max(longest, 1e-6)))
                    while len(group) < size and queued and queued[0].function is head.function:
                        group.append(queued.popleft())
                groups.append(group)
                self._in_flight += 1
        return groups

    # -- runs ending (on the watcher's thread) ----------------------------------------

    def _completed(self, sent: _Sent, ref: Any, outcome: Any) -> None:
        """The run's state arrived (pickled), or `_LARGE` for a large completed value left
        in the object store, or Ray's error in its place."""
        batched = sent.batch is not None
        self._release(sent)
        run = sent.run
        if outcome is _LARGE:
            info = run.info

            def fetch() -> State[Any]:
                import ray

                if not ray.is_initialized():
                    raise RuntimeError(
                        f"the value of task run {info.name!r} stayed in Ray's object store, and this "
                        "process is no longer connected to Ray; read results before that Ray shuts down"
                    )
                full: State[Any] = loads(ray.get(ref))
                info.start = info.start or full.started
                return full

            state: State[Any] = DeferredState(fetch, handle=ref)
            self._lazy[state] = info
        elif isinstance(outcome, BaseException):
            from ray.exceptions import RayTaskError

            while isinstance(outcome, RayTaskError) and getattr(outcome, "cause", None) is not None:
                outcome = outcome.cause  # the exception inside Ray's wrappers
            if sent.native:  # Ray may only pass on an upstream's loss: decide once they are final
                run.when_ready(lambda _: self._lost_after_upstream(sent, outcome))
            else:
                self._lost(sent, outcome, batched)
            return
        else:
            state = loads(outcome)
            if state.started is not None:  # how long runs of this task take, for batching
                took = state.timestamp - state.started
                known = self._durations.get(sent.function, took)
                self._durations[sent.function] = took if took > known else 0.9 * known + 0.1 * took
        run.set_state(state)

    def _lost_after_upstream(self, sent: _Sent, cause: BaseException) -> None:
        run = sent.run
        if not any(up in self._broken for up in run.upstream):
            self._lost(sent, cause, False)
            return
        # An upstream's worker was lost: the engine decides with the upstream states, as
        # for any failed upstream (allow_failure runs the task, with states passed in).
        inputs = run.spec.inputs(run.upstream_states())
        if isinstance(inputs, State):
            self._broken.add(run.future)
            run.set_state(inputs)
            return
        sent.native = False
        self._launch(sent, run.final_upstreams(self))

    def _lost(self, sent: _Sent, cause: BaseException, batched: bool) -> None:
        """Ray lost the run itself: run it again alone if it was in a batch (which run
        killed the worker is unknown) or if its task's retries allow (a loss counts as an
        attempt, unless `max_retries` gave losses to Ray), else end it CRASHED."""
        run = sent.run
        self._broken.add(run.future)
        reason, lost = _why(cause)
        if lost and batched:
            logger.info("the Ray worker running %s (in a batch) died; running it again alone", run.info.name)
            spec = None
        elif lost and sent.rerun and run.count_loss():
            logger.info("the Ray worker running %s died; running it again", run.info.name)
            spec = run.spec.with_task(run.task.with_options(retries=run.task.retries - run.losses))
        else:
            run.set_state(run.spec.crashed(reason, cause))
            return
        with self._mutex:
            self._in_flight += 1
        if not self._send([sent], spec):
            self._drain()


_on_demand_lock = threading.Lock()


class _Sent:
    """One run as handed to Ray: the run, its remote function and upstream arguments."""

    __slots__ = ("args", "batch", "function", "native", "rerun", "run", "runner")

    def __init__(self, runner: RayTaskRunner, run: PreparedRun, function: Any, rerun: bool) -> None:
        self.runner = runner
        self.run = run
        self.function = function
        self.rerun = rerun  # the runner reruns a lost run (Ray does, with `max_retries`)
        self.args: tuple[Any, ...] = ()
        self.native = False  # some argument is an ObjectRef of another run
        self.batch: list[_Sent] | None = None  # the runs of its batch whose objects Ray has not given


def _fetch_many(refs: list[Any]) -> list[State[Any]]:
    """The full final states in `refs`, or none if one of them is lost."""
    import ray

    try:
        return [loads(data) for data in ray.get(refs)]
    except Exception:  # each on its own, then
        return []


def _why(cause: BaseException) -> tuple[str, bool]:
    """Why Ray gave an error for the run's state, and whether it lost the run with its
    worker or node (what `max_retries` reruns)."""
    from ray import exceptions as rx

    for name, reason in (
        ("WorkerCrashedError", "the Ray worker process running it died"),
        ("OutOfMemoryError", "Ray killed its worker for want of memory"),
        ("NodeDiedError", "the Ray node running it died"),
    ):
        if isinstance(cause, getattr(rx, name, ())):
            return reason, True
    if isinstance(cause, rx.TaskCancelledError):
        return "Ray cancelled it", False
    text = str(cause).strip().splitlines()
    return f"Ray could not run it: {type(cause).__name__}: {text[0] if text else ''}", False


def _infeasible(requests: dict[str, Any], nested: bool) -> Callable[[str], InfeasibleRequestError] | None:
    """`None` if some node of the cluster can hold one run with `requests`; else a
    function that makes the error for a task's name."""
    import ray

    need: dict[str, float] = {"CPU": requests.get("num_cpus", 0 if nested else 1)}
    need.update(GPU=requests.get("num_gpus", 0), memory=requests.get("memory", 0))
    need.update(requests.get("resources") or {})
    need = {name: amount for name, amount in need.items() if amount}
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(name, 0) >= amount for name, amount in need.items()) for node in nodes):
        return None
    asked = ", ".join(f"{name}={amount:g}" for name, amount in need.items())
    have = "; ".join(", ".join(f"{name}={node.get(name, 0):g}" for name in need) for node in nodes)

    def error(task_name: str) -> InfeasibleRequestError:
        return InfeasibleRequestError(
            f"task {task_name!r} asks Ray for {asked} per run, and no node of the cluster has "
            f"that much (nodes: {have or 'no live node'}), so the run would wait forever. Ask "
            "for less in remote_options(), or add a node that has it."
        )

    return error


_cpus: list[int] = []


def _cluster_cpus() -> int:
    """The CPUs of the cluster (at least 2), asked once per process."""
    if not _cpus:
        import ray

        try:
            _cpus.append(max(2, int(ray.cluster_resources().get("CPU", 2))))
        except Exception:
            _cpus.append(2)
    return _cpus[0]


class _Watcher:
    """One thread per process that learns which runs ended and finishes their futures.

    A wait costs Ray the number of objects waited on, so it waits with `ray.wait(...,
    fetch_local=False)` on the objects of the oldest `_WINDOW` open runs of the
    process only, until a quarter of them are ready or its time slice ends (2 ms after
    runs arrive, 10 ms while more are open, doubling to `_SLICE_MAX` while nothing
    ends); the runs beyond the window are checked every `_SWEEP` seconds (less often
    where checking them would take more than 1 % of the time). It reads the sizes of
    the ready objects from this process's core worker, and the small ones in one
    `ray.get`. Runs submitted while it waits join the next wait.
    """

    _WINDOW = 64
    _SLICE_MIN, _SLICE_BUSY, _SLICE_MAX = 0.002, 0.01, 0.05
    _SWEEP = 0.05

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._new: list[tuple[Any, _Sent]] = []
        self._thread: threading.Thread | None = None

    def watch(self, pairs: Iterable[tuple[Any, _Sent]]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="taskrunners-ray-watcher")
                self._thread.daemon = True
                self._thread.start()
            waiting = bool(self._new)
            self._new.extend(pairs)
            if not waiting:
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
                outcomes = _outcomes(ray, ready) if ready else []
            except Exception as exc:  # Ray went away (shut down under open runs)
                for sent in pending.values():
                    sent.run.crash(f"Ray stopped before it ended ({exc!r})", exc)
                    sent.runner._release(sent)
                pending.clear()
                continue
            if not ready:
                slice_ = min(slice_ * 2, self._SLICE_MAX)
            for ref, outcome in zip(ready, outcomes):
                sent = pending.pop(ref)
                try:
                    sent.runner._completed(sent, ref, outcome)
                except BaseException:  # never let one run's trouble stop the others
                    logger.exception("taskrunners-ray: finishing run %r failed", sent.run.info.name)


#: The outcome of a run whose (completed) state is large: left in the object store.
_LARGE = object()


def _outcomes(ray: Any, refs: list[Any]) -> list[Any]:
    """For ready `refs`: the pickled state, `_LARGE`, or Ray's exception, each.

    This process owns the objects of the runs it sent, so its own core worker knows
    their sizes without moving them (no RPC); Ray's cluster-wide lookup is the fallback.
    """
    from ray import experimental

    local = getattr(experimental, "get_local_object_locations", None)
    sizes: dict[Any, Any] = local(refs) if local is not None else {}
    unknown = [ref for ref in refs if (sizes.get(ref) or {}).get("object_size") is None]
    if unknown:
        try:
            sizes.update(experimental.get_object_locations(unknown))
        except Exception:  # no answer: read them all
            pass
    large = {ref for ref in refs if ((sizes.get(ref) or {}).get("object_size") or 0) >= LAZY_MIN_BYTES}
    small = [ref for ref in refs if ref not in large]
    values: dict[Any, Any] = {}
    try:
        values = dict(zip(small, ray.get(small)))
    except Exception:
        for ref in small:
            try:
                values[ref] = ray.get(ref)
            except Exception as exc:
                values[ref] = exc
    return [_LARGE if ref in large else values[ref] for ref in refs]


_watcher = _Watcher()
