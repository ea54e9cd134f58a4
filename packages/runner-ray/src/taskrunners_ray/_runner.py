"""`RayTaskRunner`: run a flow's task runs on Ray, a local one or any cluster.

Each run becomes one call of a single remote function (`_remote.run_remote`) that
executes the core's `TaskCall` on a worker and returns the run's final `State`
(pickled), which is what downstream runs receive. The future's `native` is the
`ObjectRef` of that object; an upstream future of this runner is handed to Ray as that
`ObjectRef` (a top-level argument, which Ray resolves on the worker), so data moves
between workers and the flow's process never waits for it.

The flow's process learns that runs ended from one thread per process (`_Watcher`)
that waits on the objects of every open run with `ray.wait` (without fetching them),
asks Ray for their sizes, reads the small ones in one `ray.get` and leaves the large
ones (completed runs' values) in the object store until someone reads them (see
`_states`). Waiting in batches costs far less per run than one Ray callback per
object, and nothing a user hangs on a future runs on Ray's own threads.
"""

from __future__ import annotations

import logging
import pickle
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from taskrunners import (
    Capability,
    Future,
    State,
    StateType,
    Task,
    TaskCall,
    TaskRunner,
    TaskRunnersError,
)

from . import _session
from ._options import Options, current_options
from ._pickling import dumps, loads
from ._remote import variant
from ._states import LAZY_MIN_BYTES, RayState

__all__ = ["InfeasibleRequestError", "RayTaskRunner", "WorkerRayTaskRunner"]

logger = logging.getLogger("taskrunners.ray")


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
        if type(other) is not type(self):
            return NotImplemented
        return (other.address, other.init_kwargs) == (self.address, self.init_kwargs)  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RayTaskRunner(address={self.address!r}, init_kwargs={self.init_kwargs!r})"

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> RayTaskRunner:
        super().__enter__()
        try:
            self._session = _session.join(self.address, self.init_kwargs)
        except BaseException:
            self._started = False
            raise
        self._setup(nested=_in_ray_worker())
        return self

    def _setup(self, nested: bool) -> None:
        self._nested = nested  # on a Ray worker: runs lend the submitting task's CPU
        self._runs: dict[Future[Any], TaskCall] = {}
        self._lazy: weakref.WeakSet[RayState] | None = None
        self._broken: weakref.WeakSet[Future[Any]] = weakref.WeakSet()
        self._feasibility: dict[Any, Callable[[str], InfeasibleRequestError] | None] = {}
        self._in_flight = 0
        self._queued: deque[tuple[Any, ...]] = deque()
        self._cap = _nested_cap() if nested else 0
        _watcher.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            self._abandon(f"the flow was interrupted by {exc_type.__name__}")
        try:
            super().__exit__(exc_type, exc, tb)
        except BaseException as error:
            self._abandon(f"the flow was interrupted by {type(error).__name__} while waiting for it")
            raise
        finally:
            self._stop()

    def _stop(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            self._fetch_remaining()
        finally:
            _session.leave(session)

    def _fetch_remaining(self) -> None:
        """Bring the values still in Ray's object store into this process, for the
        states that are still referenced: Ray may stop when this runner does."""
        lazy = [state for state in list(self._lazy or ()) if not state.fetched]
        if not lazy:
            return
        import ray

        try:
            for state, full in zip(lazy, ray.get([state._ref for state in lazy])):
                state.adopt(full)
        except Exception:
            for state in lazy:
                try:
                    state.fetch()
                except Exception:  # lost with its worker, say: result() will say so
                    pass

    def _abandon(self, reason: str) -> None:
        """End every open run CRASHED and ask Ray to cancel what it still runs."""
        for future, call in list(self._runs.items()):
            if future.native is not None:
                try:
                    import ray

                    ray.cancel(future.native)
                except Exception:
                    pass
            self._finish(call, call.crashed(reason))

    # -- submitting -------------------------------------------------------------------

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        call = self.prepare(task, parameters, wait_for)
        future: Future[Any] = call.future  # type: ignore[assignment]
        self._runs[future] = call
        function = self._function(task, current_options())
        if isinstance(function, Exception):
            self._finish(call, State(StateType.FAILED, exception=function, name="Infeasible"))
            return future
        upstream = call.upstream
        if not upstream:
            self._launch(call, function, (), False)
            return future
        args: list[Any] = []
        local: list[Future[Any]] = []
        for up in upstream:
            if up._owner is self and up.native is not None and up not in self._broken:
                args.append(up.native)
            else:
                args.append(None)
                local.append(up)
        native = len(local) < len(upstream)
        if not local:
            self._launch(call, function, args, native)
        else:
            _when_final(local, lambda: self._launch_with_states(call, function, args, native))
        return future

    def _launch_with_states(self, call: TaskCall, function: Any, args: list[Any], native: bool) -> None:
        """Launch once the upstream runs not passed as ObjectRefs are final, with their
        states (pickled) in their places."""
        try:
            filled = [dumps(up._state) if arg is None else arg for arg, up in zip(args, call.upstream)]
        except Exception as exc:
            error = TypeError(
                f"task run {call.info.name!r}: the result of an upstream run cannot be pickled to "
                f"send it to a Ray worker: {type(exc).__name__}: {exc}"
            )
            self._finish(call, State(StateType.FAILED, exception=error, name="NotSerializable"))
            return
        self._launch(call, function, filled, native)

    def _function(self, task: Task[Any, Any], options: Options | None) -> Any:
        """The remote function variant for this run, or the error of an infeasible request."""
        if options is not None:
            key = options.key if options.key is not None else id(options)
            try:
                check = self._feasibility[key]
            except KeyError:
                check = self._feasibility[key] = _infeasible(options.requests(), self._nested)
            if check is not None:
                return check(task.name)
        return variant(task.name, task.retries, options, self._nested)

    def _launch(self, call: TaskCall, function: Any, args: Any, native: bool) -> None:
        if self._nested:
            with self._lock:
                if self._in_flight >= self._cap:
                    self._queued.append((call, function, args, native))
                    return
                self._in_flight += 1
        self._send(call, function, args, native)

    def _send(self, call: TaskCall, function: Any, args: Any, native: bool) -> None:
        future: Future[Any] = call.future  # type: ignore[assignment]
        if future.done():  # abandoned meanwhile
            self._settled()
            return
        try:
            payload = dumps(call)
            ref = function.remote(payload, *args)
        except Exception as exc:
            if isinstance(exc, (TypeError, AttributeError, pickle.PicklingError)):  # cannot be sent
                state: State[Any] = State(StateType.FAILED, exception=exc, name="NotSerializable")
            else:
                state = call.crashed(f"Ray refused it: {type(exc).__name__}: {exc}", exc)
            self._finish(call, state)
            self._settled()
            return
        future.native = ref
        _watcher.watch(ref, (self, call, function, native))

    def _settled(self) -> None:
        """One run sent from a Ray worker ended: send the next queued one, if any."""
        if not self._nested:
            return
        with self._lock:
            self._in_flight -= 1
            if not self._queued or self._in_flight >= self._cap:
                return
            self._in_flight += 1
            item = self._queued.popleft()
        self._send(*item)

    # -- runs ending (on the completions thread) --------------------------------------

    def _completed(self, call: TaskCall, outcome: Any, function: Any, native: bool) -> None:
        """The run's state arrived (pickled bytes), or `_LARGE` for a large completed
        value left in the object store, or Ray's error in its place."""
        self._settled()
        state: State[Any]
        if outcome is _LARGE:
            state = RayState(call.future.native, call.info)  # type: ignore[union-attr]
            if self._lazy is None:
                self._lazy = weakref.WeakSet()
            self._lazy.add(state)  # type: ignore[arg-type]
        elif isinstance(outcome, BaseException):
            self._lost(call, function, _unwrap(outcome), native)
            return
        else:
            state = loads(outcome)
        self._finish(call, state)

    def _lost(self, call: TaskCall, function: Any, cause: BaseException, native: bool) -> None:
        """Ray could not produce the run's state. If the run depends on runs of this
        runner, Ray may only be passing on an upstream's loss: decide once they are final."""
        if not native:
            self._broken.add(call.future)  # type: ignore[arg-type]
            self._finish(call, _crash(call, cause))
            return
        _when_final(list(call.upstream), lambda: self._lost_after_upstream(call, function, cause))

    def _lost_after_upstream(self, call: TaskCall, function: Any, cause: BaseException) -> None:
        if not any(up in self._broken for up in call.upstream):
            self._broken.add(call.future)  # type: ignore[arg-type]
            self._finish(call, _crash(call, cause))
            return
        # An upstream's worker was lost: the engine decides with the upstream states, as
        # for any failed upstream (allow_failure runs the task, with states passed in).
        inputs = call.inputs(call.upstream_states())
        if isinstance(inputs, State):
            self._broken.add(call.future)  # type: ignore[arg-type]
            self._finish(call, inputs)
            return
        self._launch_with_states(call, function, [None] * len(call.upstream), False)

    def _finish(self, call: TaskCall, state: State[Any]) -> None:
        future: Future[Any] = call.future  # type: ignore[assignment]
        self._runs.pop(future, None)
        if future.done():
            return
        try:
            future.set_state(state)
        except RuntimeError:  # made final meanwhile (abandoned at an interrupt)
            pass


class WorkerRayTaskRunner(RayTaskRunner):
    """The runner that a task's `.submit()` reaches on a Ray worker.

    It uses the worker's own connection to the cluster. Runs submitted from inside a
    task reserve no CPU by default (the submitting task, which holds one while it waits
    for them, lends it), so that tasks waiting for the tasks they submit cannot take
    every CPU of the cluster and wait forever; at most as many of them as the cluster
    has CPUs are handed to Ray at once per submitting task, the others wait in line.
    `remote_options(num_cpus=...)` inside the task overrides that.

    Made for every run on a worker, it costs nothing until the task submits: it sets
    itself up on the first submit.
    """

    _active = False

    def __init__(self) -> None:
        self.address = None
        self.init_kwargs = {}
        self._session = None

    def __enter__(self) -> WorkerRayTaskRunner:
        if self._started:
            return super().__enter__()  # type: ignore[return-value]  # refuses, as any runner
        self._started = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._active:
            super().__exit__(exc_type, exc, tb)
        else:
            self._started = False

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        if not self._active:
            self._activate()
        return super().submit(task, parameters, wait_for)

    def _activate(self) -> None:
        with _activation:
            if self._active or not self._started:
                return
            self._started = False
            TaskRunner.__enter__(self)
            self._setup(nested=True)
            self._active = True

    def duplicate(self) -> RayTaskRunner:  # type: ignore[override]
        return RayTaskRunner()


_activation = threading.Lock()


# -- helpers --------------------------------------------------------------------------


def _when_final(futures: list[Future[Any]], fn: Callable[[], object]) -> None:
    """Call `fn()` once every one of `futures` is final (at once if they all are)."""
    remaining = [len(futures)]
    lock = threading.Lock()
    if not futures:
        fn()
        return

    def one_done(_: Future[Any]) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            fn()

    for future in futures:
        future.add_done_callback(one_done)


def _unwrap(exc: BaseException) -> BaseException:
    """The exception inside Ray's `RayTaskError` wrappers."""
    try:
        from ray.exceptions import RayTaskError
    except ImportError:  # pragma: no cover
        return exc
    while isinstance(exc, RayTaskError) and getattr(exc, "cause", None) is not None:
        exc = exc.cause
    return exc


def _crash(call: TaskCall, cause: BaseException) -> State[Any]:
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
    return call.crashed(reason, cause)


def _infeasible(requests: dict[str, Any], nested: bool) -> Callable[[str], InfeasibleRequestError] | None:
    """`None` if some node of the cluster can hold one run with `requests`; else a
    function that makes the error for a task's name."""
    if not requests:
        return None
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
    have = (
        "; ".join(", ".join(f"{name}={node.get(name, 0):g}" for name in need) for node in nodes)
        or "no live node"
    )

    def error(task_name: str) -> InfeasibleRequestError:
        return InfeasibleRequestError(
            f"task {task_name!r} asks Ray for {asked} per run, and no node of the cluster has "
            f"that much (nodes: {have}), so the run would wait forever. Ask for less in "
            "remote_options(), or add a node that has it."
        )

    return error


def _in_ray_worker() -> bool:
    """Whether this process is a Ray worker (a task running there submits runs)."""
    try:
        from ray._private import worker
    except ImportError:  # pragma: no cover
        return False
    return getattr(worker.global_worker, "mode", None) == getattr(worker, "WORKER_MODE", object())


_cap: int | None = None


def _nested_cap() -> int:
    """How many runs one task on a worker hands to Ray at once: the cluster's CPUs."""
    global _cap
    if _cap is None:
        import ray

        try:
            _cap = max(2, int(ray.cluster_resources().get("CPU", 2)))
        except Exception:
            _cap = 2
    return _cap


class _Watcher:
    """One thread per process that learns which runs ended and finishes their futures.

    It waits with `ray.wait(..., fetch_local=False)` on the objects of every open run
    of every runner of the process, asks Ray for the sizes of the ready ones, and reads
    the small ones in one `ray.get`. It wakes when an eighth of the open runs are ready, or
    when its time slice ends (2 ms after runs arrive, doubling to `_SLICE_MAX` while
    nothing ends), so a run's end is noticed at most `_SLICE_MAX` seconds late; runs
    submitted while it waits join the next wait.
    """

    _SLICE_MIN = 0.002
    _SLICE_MAX = 0.05

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._new: list[tuple[Any, Any]] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._loop, name="taskrunners-ray-watcher", daemon=True)
                thread.start()
                self._thread = thread

    def watch(self, ref: Any, item: tuple[Any, ...]) -> None:
        with self._lock:
            self._new.append((ref, item))
            if len(self._new) == 1:
                self._arrived.notify()

    def _loop(self) -> None:
        import ray

        pending: dict[Any, tuple[Any, ...]] = {}
        slice_ = self._SLICE_MIN
        while True:
            with self._lock:
                while not pending and not self._new:
                    self._arrived.wait()
                arrived = bool(self._new)
                pending.update(self._new)
                self._new.clear()
            if arrived:
                slice_ = self._SLICE_MIN
            refs = list(pending)
            # Wake for a batch (an eighth of the open runs) or at the end of the slice:
            # one ray.wait per completion would cost the size of `pending` each time.
            batch = max(1, len(refs) // 8)
            try:
                ready, rest = ray.wait(refs, num_returns=batch, timeout=slice_, fetch_local=False)
                if ready and rest:
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)
                    ready.extend(more)
            except Exception as exc:  # Ray went away (shut down under open runs)
                self._drop(pending, exc)
                continue
            if not ready:
                slice_ = min(slice_ * 2, self._SLICE_MAX)
                continue
            outcomes = _outcomes(ray, ready)
            for ref, outcome in zip(ready, outcomes):
                runner, call, function, native = pending.pop(ref)
                try:
                    runner._completed(call, outcome, function, native)
                except BaseException:  # never let one run's trouble stop the others
                    logger.exception("taskrunners-ray: finishing run %r failed", call.info.name)

    def _drop(self, pending: dict[Any, tuple[Any, ...]], error: BaseException) -> None:
        for runner, call, _function, _native in pending.values():
            try:
                runner._settled()
                runner._finish(call, call.crashed(f"Ray stopped before it ended ({error!r})", error))
            except BaseException:
                logger.exception("taskrunners-ray: ending run %r failed", call.info.name)
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
    """The refs whose objects are at least `LAZY_MIN_BYTES` (Ray knows without moving them)."""
    try:
        from ray.experimental import get_object_locations

        locations = get_object_locations(refs)
    except Exception:  # no such API, or no answer: read them all
        return set()
    return {
        ref for ref, where in locations.items() if where and (where.get("object_size") or 0) >= LAZY_MIN_BYTES
    }


_watcher = _Watcher()
