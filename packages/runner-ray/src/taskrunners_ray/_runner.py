"""`RayTaskRunner`: run a flow's task runs on Ray, a local one or any cluster.

Each run is a call of `_remote.run_remote` on a worker, whose object is the run's final
`State`, pickled: the future's `native` is its `ObjectRef`, an argument of downstream
runs, so data moves between workers, not through the flow's process. Queued runs without
upstream runs go in batches, each run with its own object. One thread per process
(`_Watcher`) finishes the futures of the runs that ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from taskrunners import (
    Capability,
    Future,
    NoActiveFlowError,
    State,
    StateType,
    Task,
    TaskRunInfo,
    TaskRunner,
    TaskRunnersError,
    get_run_logger,
)
from taskrunners.lowlevel import DeferredState, PreparedRun, RunSpec, dumps, loads

from . import _session
from ._options import OPTIONS
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
        | {Capability.RESOURCE_REQUESTS, Capability.OUT_OF_PROCESS}
    )
    _on_demand = False  # entered by its first submit (the runner of a task on a Ray worker)
    _on_demand_lock = threading.Lock()

    def __init__(self, address: str | None = None, init_kwargs: dict[str, Any] | None = None) -> None:
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a string or None, got {address!r}")
        if init_kwargs is not None and not hasattr(init_kwargs, "items"):
            raise TypeError(f"init_kwargs must be a dict of ray.init() arguments, got {init_kwargs!r}")
        self.address = address
        self.init_kwargs = dict(init_kwargs or {})
        if "address" in self.init_kwargs:
            raise ValueError("give the cluster's address as RayTaskRunner(address=...), not in init_kwargs")
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
        own connection. Its first submit enters it; whoever made it exits it if `started`."""
        runner = cls()
        runner._on_demand = True
        return runner

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        if not (self.address is None and not self.init_kwargs and on_worker()):
            self._session = _session.join(self.address, self.init_kwargs)
            if self._session is not None and self._session.users == 1:
                _log_dashboard(self.address, self._session)
        # On a Ray worker, runs reserve no CPU (the submitting task lends its own), and at
        # most the cluster's CPUs of them are out per submitting task (twice that from a flow).
        self._nested = on_worker()
        self._limit = _cluster_cpus() * (1 if self._nested else 2)  # Ray tasks kept out
        self._mutex = threading.Lock()
        self._functions: dict[Any, Any] = {}  # (task name, options key) -> remote function or error text
        self._lazy: weakref.WeakKeyDictionary[DeferredState[Any], TaskRunInfo] = weakref.WeakKeyDictionary()
        self._broken: weakref.WeakSet[Future[Any]] = weakref.WeakSet()  # natives holding Ray's errors
        self._in_flight = 0  # Ray tasks out
        self._queued: deque[_Sent] = deque()
        self._durations: dict[Any, float] = {}  # remote function -> seconds of its longest recent run
        self._withdrawn: list[Any] = []  # the Ray tasks of the runs an interrupt took back

    def shutdown(self, interrupted: bool) -> None:
        if interrupted:
            self._cancel_withdrawn()
        session, self._session = self._session, None
        if session is None:
            return
        # Bring home the values still referenced and left in the store: Ray may stop now
        # (not after an interrupt: the program is on its way out).
        lazy = {state: info for state, info in list(self._lazy.items()) if not state.loaded}
        try:
            if not interrupted:
                DeferredState.load_all(lazy, _fetch_many)
            for state, info in lazy.items():
                info.start = info.start or state.started
        finally:
            _session.leave(session)

    def take_back_unstarted(self) -> list[PreparedRun]:
        """Every open run (an interrupt ends them all); `shutdown` then asks Ray to cancel
        those it holds, once the base has crashed them naming the interrupt."""
        with self._mutex:
            self._queued.clear()
        runs = self.open_runs()
        self._withdrawn = [run.future.native for run in runs if run.future.native is not None]
        return runs

    def _cancel_withdrawn(self) -> None:
        import ray

        withdrawn, self._withdrawn = self._withdrawn, []
        for native in withdrawn:
            with contextlib.suppress(Exception):  # ended meanwhile, or Ray is gone
                ray.cancel(native)

    # -- submitting -------------------------------------------------------------------

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        if self._on_demand and not self.started:
            with self._on_demand_lock:
                if not self.started:
                    self.__enter__()
        run = self.prepare(task, parameters, wait_for)
        options = OPTIONS.current()
        key = (task.name, options.key)
        function = self._functions.get(key) if options.key is not None else None
        if function is None:  # the remote function, or the text of an InfeasibleRequestError
            function = _infeasible(options.values, self._nested, task.name)
            function = function or variant(task.name, options, self._nested)
            if options.key is not None:
                self._functions[key] = function
        if isinstance(function, str):
            error = InfeasibleRequestError(function)
            run.set_state(State(StateType.FAILED, exception=error, name="Infeasible"))
            return run.future
        sent = _Sent(self, run, run.spec, function, "max_retries" not in options.values)
        args = run.native_upstreams(self) if run.upstream else ()
        if args is None:
            run.when_ready(lambda _: self._launch(sent, run.final_upstreams(self)))
        else:
            self._launch(sent, args)
        return run.future

    def _launch(self, sent: _Sent, upstream: tuple[Any, ...]) -> None:
        """Send the run with its upstream runs (ObjectRefs, or states to pickle), or queue
        it while `_limit` Ray tasks are out (from the flow's process, only one without them)."""
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
        with self._mutex:
            if held and (self._queued or self._in_flight >= self._limit):
                self._queued.append(sent)
                return
            self._in_flight += 1
        if not self._send([sent]):
            self._drain()

    def _send(self, group: list[_Sent]) -> bool:
        """Send one Ray task (counted in `_in_flight` already): a run, or a batch of queued
        runs of one remote function. Returns whether it went (else it is uncounted)."""
        group = [sent for sent in group if not sent.run.future.done()]  # not abandoned meanwhile
        try:
            if len(group) == 1:
                group[0].batch = None
                refs = [group[0].function.remote(dumps(group[0].spec), *group[0].args)]
            elif group:
                payload = dumps([sent.spec for sent in group])
                refs = batch_variant(group[0].function, len(group)).remote(payload)
                for sent in group:
                    sent.batch = group
        except Exception as exc:  # noqa: BLE001 - some run cannot be handed to Ray: each on its own
            if len(group) > 1:  # some run cannot be pickled, say: each on its own
                with self._mutex:
                    self._in_flight += len(group) - 1
                return all([self._send([sent]) for sent in group])  # noqa: C419 - send every one, no short circuit
            run = group.pop().run
            failed = run.spec.not_serializable(exc)  # an argument that cannot be pickled, named
            if failed is not None:
                run.set_state(failed)
            else:
                run.crash(f"Ray refused it: {type(exc).__name__}: {exc}", exc)
        if not group:  # abandoned meanwhile, or refused
            with self._mutex:
                self._in_flight -= 1
            return False
        for sent, ref in zip(group, refs):
            sent.run.future.native = ref
        _watcher.watch(zip(refs, group))
        return True

    def _release(self, sent: _Sent) -> None:
        """A run handed to Ray ended: once the last one of its Ray task has, send more."""
        with self._mutex:
            if sent.batch is not None:
                sent.batch.remove(sent)
                if sent.batch:
                    return
            self._in_flight -= 1
        self._drain()

    def _drain(self) -> None:
        """Send queued runs while there is room. Those without upstream arguments go in
        batches once runs of their task are known to be short: the queued runs divided
        among the free places, at most `BATCH_MAX` and `BATCH_SECONDS` of work each."""
        limit = self._limit
        while True:
            groups: list[list[_Sent]] = []
            with self._mutex:
                queued = self._queued
                while queued and self._in_flight < limit:
                    head = queued.popleft()
                    group = [head]
                    if not head.args and batchable(head.function):
                        longest = self._durations.get(head.function, BATCH_SECONDS)
                        share = -(-(len(queued) + 1) // limit)
                        size = min(BATCH_MAX, share, int(BATCH_SECONDS / max(longest, 1e-6)))
                        while len(group) < size and queued and queued[0].function is head.function:
                            group.append(queued.popleft())
                    groups.append(group)
                    self._in_flight += 1
            if not groups or all([self._send(group) for group in groups]):  # noqa: C419 - send every group
                return

    # -- runs ending (on the watcher's thread) ----------------------------------------

    def _completed(self, sent: _Sent, ref: Any, outcome: Any) -> None:
        """The run's Ray task gave its `outcome` (see `_outcomes`)."""
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

            state = DeferredState(fetch, handle=ref)
            self._lazy[state] = info
        elif isinstance(outcome, BaseException):
            from ray.exceptions import RayTaskError

            while isinstance(outcome, RayTaskError) and getattr(outcome, "cause", None) is not None:
                outcome = outcome.cause  # the exception inside Ray's wrappers
            # Ray may only pass on an upstream's loss: decide once the upstream runs are final.
            run.when_ready(lambda _: self._errored(sent, outcome))
            return
        else:
            state = loads(outcome)
            if state.started is not None:  # how long runs of this task take, for batching
                took = state.timestamp - state.started
                known = self._durations.get(sent.function, took)
                self._durations[sent.function] = took if took > known else 0.9 * known + 0.1 * took
        run.set_state(state)

    def _errored(self, sent: _Sent, cause: BaseException) -> None:
        run = sent.run
        if not sent.native or not any(up in self._broken for up in run.upstream):
            self._lost(sent, cause)
            return
        # An upstream's worker was lost: decide as for any failed upstream (allow_failure runs it).
        inputs = run.spec.inputs(run.upstream_states())
        if isinstance(inputs, State):
            self._broken.add(run.future)
            run.set_state(inputs)
            return
        sent.native = False
        self._launch(sent, run.final_upstreams(self))

    def _lost(self, sent: _Sent, cause: BaseException) -> None:
        """Ray lost the run itself: run it again alone if it was in a batch (any run may have
        killed the worker), or if its task's retries allow (unless `max_retries` gave losses
        to Ray); else end it CRASHED."""
        run = sent.run
        self._broken.add(run.future)
        reason, lost = _why(cause)
        if lost and sent.batch is not None:
            logger.info("the Ray worker running %s (in a batch) died; running it again alone", run.info.name)
        elif lost and sent.rerun and run.count_loss():
            logger.info("the Ray worker running %s died; running it again", run.info.name)
            sent.spec = run.spec.with_task(run.task.with_options(retries=run.task.retries - run.losses))
        else:
            run.set_state(run.spec.crashed(reason, cause))
            return
        with self._mutex:
            self._in_flight += 1
        if not self._send([sent]):
            self._drain()


@dataclasses.dataclass(eq=False, slots=True)
class _Sent:
    """One run as handed to Ray (`batch`: the runs of its batch whose objects Ray has not given)."""

    runner: RayTaskRunner
    run: PreparedRun
    spec: RunSpec
    function: Any
    rerun: bool  # the runner reruns a lost run (Ray does, with `max_retries`)
    args: tuple[Any, ...] = ()
    native: bool = False  # some argument is an ObjectRef of another run
    batch: list[_Sent] | None = None


def _fetch_many(refs: list[Any]) -> list[State[Any]]:
    """The full final states in `refs`, or none if one of them is lost."""
    import ray

    try:
        return [loads(data) for data in ray.get(refs)]
    except Exception:  # noqa: BLE001 - each on its own, then
        return []


def _why(cause: BaseException) -> tuple[str, bool]:
    """Why Ray gave an error for the run's state, and whether it lost the run's worker."""
    from ray import exceptions as rx

    for kind, reason in (
        (rx.WorkerCrashedError, "the Ray worker process running it died"),
        (rx.OutOfMemoryError, "Ray killed its worker for want of memory"),
        (rx.NodeDiedError, "the Ray node running it died"),
    ):
        if isinstance(cause, kind):
            return reason, True
    if isinstance(cause, rx.TaskCancelledError):
        return "Ray cancelled it", False
    if isinstance(cause, rx.GetTimeoutError):
        return (
            f"Ray said it had ended, but its final state could not be fetched within {FETCH_SECONDS:g} s",
            False,
        )
    text = str(cause).strip().splitlines()
    return f"Ray could not run it: {type(cause).__name__}: {text[0] if text else ''}", False


def _infeasible(options: Mapping[str, Any], nested: bool, task_name: str) -> str | None:
    """`None` if `options` reserve nothing on a node, or some node of the cluster can
    hold one run with them; else the text of the `InfeasibleRequestError`."""
    import ray

    if not any(name in options for name in ("num_cpus", "num_gpus", "memory", "resources")):
        return None
    need: dict[str, float] = {"CPU": options.get("num_cpus", 0 if nested else 1)}
    need.update(GPU=options.get("num_gpus", 0), memory=options.get("memory", 0))
    need.update(options.get("resources") or {})
    need = {name: amount for name, amount in need.items() if amount}
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(name, 0) >= amount for name, amount in need.items()) for node in nodes):
        return None
    asked = ", ".join(f"{name}={amount:g}" for name, amount in need.items())
    have = "; ".join(", ".join(f"{name}={node.get(name, 0):g}" for name in need) for node in nodes)
    return (
        f"task {task_name!r} asks Ray for {asked} per run, and no node of the cluster has "
        f"that much (nodes: {have or 'no live node'}), so the run would wait forever. Ask "
        "for less in remote_options(), or add a node that has it."
    )


@functools.cache
def _cluster_cpus() -> int:
    """The CPUs of the cluster (at least 2), asked once per process."""
    import ray

    try:
        return max(2, int(ray.cluster_resources().get("CPU", 2)))
    except Exception:  # noqa: BLE001 - a cluster that cannot tell its CPUs gets the minimum
        return 2


class _Watcher:
    """One thread per process that finishes the futures of the runs that ended.

    A `ray.wait` costs Ray the number of objects waited on: it waits on the oldest
    `_WINDOW` open runs only, and checks the others every `_SWEEP` seconds (less often
    where that takes more than 1 % of the time).
    """

    _WINDOW = 64
    _SLICE_MIN, _SLICE_BUSY, _SLICE_MAX = 0.002, 0.01, 0.05
    _SWEEP = 0.05

    def __init__(self) -> None:
        self._arrived = threading.Condition()
        self._new: list[tuple[Any, _Sent]] = []
        self._thread: threading.Thread | None = None

    def watch(self, pairs: Iterable[tuple[Any, _Sent]]) -> None:
        with self._arrived:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="taskrunners-ray-watcher")
                self._thread.daemon = True
                self._thread.start()
            if not self._new:  # else the thread is awake already
                self._arrived.notify()
            self._new.extend(pairs)

    def _loop(self) -> None:
        import ray

        pending: dict[Any, _Sent] = {}
        slice_ = self._SLICE_MIN
        swept = sweep_every = 0.0
        while True:
            with self._arrived:
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
            except Exception as exc:  # noqa: BLE001 - Ray went away (shut down under open runs)
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
                except BaseException as exc:  # never let one run's trouble stop the others
                    logger.exception("taskrunners-ray: finishing run %r failed", sent.run.info.name)
                    sent.run.crash(f"its final state could not be read here: {exc!r}", exc)  # never left open


#: Seconds to fetch the final state of a run that Ray says is ready, before the run
#: ends CRASHED saying so (the watcher thread never blocks for good on one run).
FETCH_SECONDS = 60.0

#: The outcome of a run whose (completed) state is large: left in the object store.
_LARGE = object()


def _log_dashboard(address: str | None, session: _session.Session) -> None:
    """Say, through the flow run's logger, which Ray the flow uses and its dashboard."""
    try:
        run_logger: Any = get_run_logger()
    except NoActiveFlowError:
        run_logger = logger
    where = "Started a local Ray for the flow" if address is None else f"Connected to the Ray at {address}"
    hint = " (init_kwargs={'include_dashboard': True} starts one)" if address is None else ""
    dashboard = session.dashboard or f"none{hint}"
    run_logger.info("%s; dashboard: %s", where, dashboard)


def _outcomes(ray: Any, refs: list[Any]) -> list[Any]:
    """For ready `refs`: the pickled state, `_LARGE`, or Ray's exception, each (sizes
    from this process's core worker, which owns the objects; else from the cluster)."""
    from ray import experimental

    sizes: dict[Any, Any] = experimental.get_local_object_locations(refs)
    unknown = [ref for ref in refs if (sizes.get(ref) or {}).get("object_size") is None]
    if unknown:
        with contextlib.suppress(Exception):  # no answer: read them all
            sizes.update(experimental.get_object_locations(unknown))
    large = {ref for ref in refs if ((sizes.get(ref) or {}).get("object_size") or 0) >= LAZY_MIN_BYTES}
    small = [ref for ref in refs if ref not in large]
    values: dict[Any, Any] = {}
    try:
        values = dict(zip(small, ray.get(small, timeout=FETCH_SECONDS)))
    except Exception:  # noqa: BLE001 - fetch each on its own, to find the failing one
        for ref in small:
            try:
                values[ref] = ray.get(ref, timeout=FETCH_SECONDS)
            except Exception as exc:  # noqa: BLE001 - a GetTimeoutError ends the run CRASHED, saying so
                values[ref] = exc
    return [_LARGE if ref in large else values[ref] for ref in refs]


_watcher = _Watcher()
