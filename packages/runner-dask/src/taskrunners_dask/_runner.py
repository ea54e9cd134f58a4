"""`DaskTaskRunner`: task runs on a dask.distributed cluster.

Each run is one Dask task, submitted with `Client.submit` (or all of a `map` at once
with `Client.map`) under a key that starts with the task's name. Upstream runs of the
same runner are passed as their `distributed.Future`s, so Dask hands their results to
the downstream worker directly; upstream runs of other runners are waited for here,
without blocking `submit`, and their states sent along.

How a run's final state comes back is in `_channel` (a small report per run, on the
client's event topic); what runs on the worker is in `_remote`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from taskrunners import Capability, Future, FutureList, State, Task, TaskRunner
from taskrunners.lowlevel import DeferredState, PreparedRun, RunSpec

from . import _remote
from ._channel import Channel, Record
from ._options import current_options

if TYPE_CHECKING:
    import distributed

__all__ = ["DaskTaskRunner"]

logger = logging.getLogger("taskrunners.dask")

#: What the temporary LocalCluster gets unless `cluster_kwargs` says otherwise.
LOCAL_DEFAULTS: dict[str, Any] = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:8787"}
#: The runner, not Dask, decides what happens to runs lost with their worker: Dask
#: fails them at the first loss instead of re-running them up to 3 times.
LOCAL_SCHEDULER_DEFAULTS: dict[str, Any] = {"allowed_failures": 0}


class DaskTaskRunner(TaskRunner):
    """Runs task runs on a `dask.distributed` cluster.

    With no arguments, each flow run starts a temporary `distributed.LocalCluster`
    (worker processes; its scheduler, workers and dashboard listen on 127.0.0.1 only)
    and closes it when the flow ends. With `address`, it connects to a running
    scheduler and leaves it running. With `cluster_class`, it starts (and later closes)
    a cluster of that class, e.g. `"dask_jobqueue.SLURMCluster"`.

    Results of runs stay on the workers and move between them: a run's value reaches
    the flow's process only when it is small (16 KiB pickled) or when someone reads it.

    Args:
        address: A running scheduler to connect to, such as `"tcp://10.0.0.5:8786"`.
        cluster_class: The cluster to start: a class, or its dotted name
            (`"distributed.LocalCluster"`, `"dask_jobqueue.SLURMCluster"`).
            `distributed.LocalCluster` if neither this nor `address` is given.
        cluster_kwargs: Keyword arguments for `cluster_class`. For a LocalCluster,
            `host` and `dashboard_address` default to 127.0.0.1, and the scheduler's
            `allowed_failures` to 0 (see "Lost workers" in the docs).
        adapt_kwargs: If given, the cluster adapts: `cluster.adapt(**adapt_kwargs)`
            (synchronous or asynchronous `adapt` alike).
        client_kwargs: Keyword arguments for `distributed.Client`;
            `set_as_default` defaults to False.

    Raises:
        ValueError: Both `address` and `cluster_class` are given.
        TypeError: `address` is not a string, or `cluster_class` is neither a class
            nor a dotted name.
    """

    capabilities = frozenset(
        {Capability.PARALLEL, Capability.SURVIVES_WORKER_LOSS, Capability.NATIVE_DEPENDENCIES}
        | {Capability.RESOURCE_REQUESTS}
    )

    def __init__(
        self,
        address: str | None = None,
        cluster_class: str | type | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a scheduler address such as 'tcp://host:8786', got {address!r}")
        if address is not None and cluster_class is not None:
            raise ValueError(
                "give either address= (connect to a running scheduler) or cluster_class= "
                "(start a cluster), not both"
            )
        if cluster_class is not None and not (isinstance(cluster_class, str) or callable(cluster_class)):
            raise TypeError(f"cluster_class must be a class or its dotted name, got {cluster_class!r}")
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs: dict[str, Any] = dict(cluster_kwargs or {})
        self.adapt_kwargs: dict[str, Any] = dict(adapt_kwargs or {})
        self.client_kwargs: dict[str, Any] = dict(client_kwargs or {})
        self._client: distributed.Client | None = None
        self._cluster: Any = None
        self._channel: Channel | None = None
        self._worker_side = False
        self._deferred: weakref.WeakSet[DeferredState[Any]] = weakref.WeakSet()
        self._suspects_lock = threading.Lock()
        self._suspects: deque[Record] = deque()
        self._isolated: Record | None = None

    @classmethod
    def _for_worker(cls) -> DaskTaskRunner:
        """An unstarted runner for code that runs on a Dask worker, so that `.submit()`
        inside a task reaches the same cluster: it attaches to the worker's client on
        first use, and its shutdown leaves that client open."""
        runner = cls()
        runner._worker_side = True
        return runner

    # -- configuration ----------------------------------------------------------------

    def duplicate(self) -> DaskTaskRunner:
        return type(self)(*self._config())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DaskTaskRunner) or type(other) is not type(self):
            return NotImplemented
        return self._config() == other._config()  # (defining __eq__ leaves the class unhashable)

    def _config(self) -> tuple[Any, ...]:
        return (self.address, self.cluster_class, self.cluster_kwargs, self.adapt_kwargs, self.client_kwargs)

    def __repr__(self) -> str:
        names = ("address", "cluster_class", "cluster_kwargs", "adapt_kwargs", "client_kwargs")
        given = [f"{name}={value!r}" for name, value in zip(names, self._config()) if value]
        return f"DaskTaskRunner({', '.join(given)})"

    @property
    def client(self) -> distributed.Client:
        """The `distributed.Client` of the started runner.

        Raises:
            RuntimeError: The runner is not started.
        """
        client = self._client
        if client is None and self._worker_side and self.started:
            client = self._attach()
        if client is None or not self.started:
            raise RuntimeError(
                "the DaskTaskRunner is not started: it has a client only inside its `with` block"
            )
        return client

    @property
    def cluster(self) -> Any:
        """The cluster this runner started, or `None` (connected by address, or not started)."""
        return self._cluster

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the cluster (unless connecting by `address`), connect a client, and
        listen for the reports of runs; on a worker, attach to its client on first use.

        Raises:
            ImportError: `cluster_class` names what cannot be imported.
            Exception: Whatever Dask raised starting the cluster or the client.
        """
        if self._worker_side:
            return
        from distributed import Client

        from ._worker_plugin import ReportPlugin

        _remote.register_sizeof()
        self._deferred = weakref.WeakSet()
        with contextlib.ExitStack() as undo:
            undo.callback(self._close, False)  # a failed start closes what it started
            if self.address is None:
                self._cluster = _start_cluster(self.cluster_class, self.cluster_kwargs)
                if self.adapt_kwargs:
                    _adapt(self._cluster, self.adapt_kwargs)
            target = self.address if self._cluster is None else self._cluster
            self._client = client = Client(target, **{"set_as_default": False, **self.client_kwargs})
            self._channel = Channel.of(client)  # a new client: a channel of its own
            undo.pop_all()
        if self._cluster is None:
            where = f"Connected to the Dask scheduler at {self.address}"
        else:
            where = f"Started a {type(self._cluster).__name__} for the flow"
        logger.info("%s; dashboard: %s", where, _dashboard(client))
        try:
            client.register_plugin(ReportPlugin())
        except Exception:  # the workers report from the task's thread instead, a little later
            logger.warning("could not install the taskrunners worker plugin", exc_info=True)

    def _attach(self) -> distributed.Client:
        """On a worker: use the worker's client (never closed by this runner)."""
        from distributed import get_client

        client = get_client()
        self.address = getattr(client.scheduler, "address", None)
        self._channel = Channel.of(client, lasting=True)
        self._client = client
        return client

    def take_back_unstarted(self) -> list[PreparedRun]:
        """On interrupt: cancel the Dask tasks of the open runs and hand the runs back
        to be crashed."""
        runs, client = self.open_runs(), self._client
        natives = [run.future.native for run in runs if run.future.native is not None]
        try:
            if natives and client is not None:
                client.cancel(natives)
        except Exception:  # the client is going: the runs end CRASHED all the same
            logger.warning("could not cancel %d Dask tasks", len(natives), exc_info=True)
        return runs

    def shutdown(self, interrupted: bool) -> None:
        self._close(fetch_values=not interrupted)

    def _close(self, fetch_values: bool) -> None:
        client, cluster, channel = self._client, self._cluster, self._channel
        self._client = self._cluster = self._channel = None
        if self._worker_side:
            return  # the worker's client outlives the task
        with contextlib.ExitStack() as closing:  # closes each, last first, even if one fails
            for resource in (cluster, client, channel):
                if resource is not None:
                    closing.callback(resource.close)
            if fetch_values and client is not None:
                self._fetch_deferred(client)

    def _fetch_deferred(self, client: distributed.Client) -> None:
        """Bring here the values still on the cluster whose states someone still holds:
        once the client closes, they could not be read anymore."""
        pending = [s for s in list(self._deferred) if not s.loaded and s.handle is not None]
        if not pending:
            return
        try:
            states = client.gather([s.handle for s in pending], errors="skip")
        except Exception:
            logger.warning("could not fetch the values of %d runs from Dask", len(pending), exc_info=True)
            return
        if len(states) == len(pending):
            for state, full in zip(pending, states):
                state.fill(full)
            return
        for state in pending:  # some failed to arrive: fetch one by one, leaving the failures unread
            try:
                state.load()
            except Exception:
                pass

    # -- submitting -------------------------------------------------------------------

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        return self.map(task, [parameters], wait_for)[0]

    def map(
        self,
        task: Task[Any, Any],
        parameter_sets: Sequence[dict[str, Any]],
        wait_for: Iterable[Any] | None = None,
    ) -> FutureList[Any]:
        futures: FutureList[Any] = FutureList()
        ready: list[Record] = []
        options = current_options()
        for parameters in parameter_sets:
            run = self.prepare(task, parameters, wait_for)
            if self._client is None and self._worker_side:
                self._attach()
            futures.append(run.future)
            args = run.native_upstreams(self) if run.upstream else ()
            if args is None:
                self._send_when_ready(run, options)
            else:
                ready.append(Record(self, run, args, options))
        if ready:
            self._send_many(ready)
        return futures

    def _send_when_ready(self, run: PreparedRun, options: Mapping[str, Any]) -> None:
        """Send `run` once its upstream runs (another runner's, or not sent yet) are final."""
        options = _with_annotations(options)

        def ready(_: PreparedRun) -> None:
            self._send_many([Record(self, run, run.final_upstreams(self, _on_cluster), options)])

        run.when_ready(ready)

    def _send_many(self, records: list[Record], spec: RunSpec | None = None) -> None:
        """Hand the runs of `records` to Dask (with the same options); a re-sent run
        gets a new key (the old one may be erred), and may go as another `spec`."""
        client, channel = self._client, self._channel
        records = [r for r in records if not r.done]  # not those crashed meanwhile (an interrupt)
        if not records:
            return
        if client is None or channel is None:
            for record in records:
                record.run.crash("the runner shut down before the run could start")
            return
        for record in records:
            info = record.run.info
            record.key = f"{info.task_name}-{(uuid.uuid4() if record.key else info.id).hex}"
            channel.records[info.number] = record
        first, topic = records[0], channel.topic
        options: dict[str, Any] = {"pure": False, **first.options}
        try:
            if len(records) == 1:
                spec = spec or first.run.spec
                natives = [client.submit(_remote.run, spec, topic, first.args, key=first.key, **options)]
            else:
                specs, args, keys = zip(*((r.run.spec, r.args, r.key) for r in records))
                options["key"] = list(keys)
                natives = client.map(_remote.run, specs, [topic] * len(records), args, **options)
        except Exception as exc:
            for record in records:
                reason = f"Dask refused it: {type(exc).__name__}: {exc}"
                channel.complete(record, record.run.spec.crashed(reason, exc))
            return
        for record, native in zip(records, natives):
            record.native = record.run.future.native = native

    # -- when Dask says a run's task ended --------------------------------------------

    def _native_done(self, channel: Channel, record: Record, native: distributed.Future[Any]) -> None:
        """In the channel's thread: the Dask task of `record` ended without a report."""
        from distributed.scheduler import KilledWorker

        if record.done or record.evented or native is not record.native:
            return
        status = native.status
        if status == "finished":  # the report never arrived: read the result
            try:
                state = native.result()
            except BaseException as exc:
                state = record.run.spec.crashed(f"its result could not be fetched from Dask: {exc!r}", exc)
            channel.complete(record, state)
            return
        error: BaseException | None = None
        if status == "error":
            try:
                error = native.exception(timeout=30)
            except BaseException as exc:
                error = exc
        run = record.run
        if any(not isinstance(a, State) and a.status in ("error", "cancelled") for a in record.args):
            # An upstream run's Dask task failed (its run ends CRASHED or is re-sent):
            # send this one again once the upstream runs are final, with their states.
            def again(_: PreparedRun) -> None:
                if not record.done:
                    self._resend(record, run.final_upstreams(self, _on_cluster))

            run.when_ready(again)
        elif isinstance(error, KilledWorker):
            self._lost_with_worker(channel, record, error)
        else:
            reason = (
                "Dask cancelled its task"
                if status == "cancelled"
                else f"its Dask task failed outside the task's code ({type(error).__name__}: {error})"
            )
            channel.complete(record, run.spec.crashed(reason, error))

    # -- lost workers -------------------------------------------------------------------
    #
    # When a worker process dies, Dask fails (KilledWorker) every run that was on it:
    # the one executing, and those waiting behind it. Which one killed the worker, no
    # one can tell. So each run lost that way is a *suspect*: suspects are re-sent one
    # at a time. A suspect that completes was innocent; one lost again while re-sent on
    # its own is the culprit, and that loss counts as an attempt (`count_loss`): it ends
    # CRASHED, or is re-sent (on its own again) if its task has retries left.

    def _lost_with_worker(self, channel: Channel, record: Record, error: BaseException | None) -> None:
        run, start = record.run, False
        with self._suspects_lock:
            isolated = self._isolated is record
            if not isolated:
                self._suspects.append(record)
                start = self._isolated is None
        if not isolated:
            logger.info("the Dask worker running %s died; running it again on its own", run.info.name)
            if start:
                self._isolate_next()
        elif run.count_loss():
            name = run.info.name
            logger.info("the worker running %s died again; retrying it (its task allows retries)", name)
            task = run.task.with_options(retries=run.task.retries - run.losses)
            self._resend(record, record.args, run.spec.with_task(task))
        else:
            reason = "the Dask worker running it died, and again when it ran alone"
            channel.complete(record, run.spec.crashed(reason, error))

    def _isolate_next(self) -> None:
        """Re-send the next suspect, unless one is out already or none waits."""
        while True:
            with self._suspects_lock:
                if self._isolated is not None or not self._suspects:
                    return
                record = self._isolated = self._suspects.popleft()
            if record.done:  # crashed meanwhile (the flow was interrupted)
                with self._suspects_lock:
                    self._isolated = None
                continue
            record.run.future.add_done_callback(partial(self._isolation_over, record))
            self._resend(record, record.args)
            return

    def _isolation_over(self, record: Record, _: Any = None) -> None:
        with self._suspects_lock:
            if self._isolated is record:
                self._isolated = None
        self._isolate_next()

    def _resend(self, record: Record, args: tuple[Any, ...], spec: RunSpec | None = None) -> None:
        """Send `record`'s run again, as a new Dask task (the old key may be erred)."""
        record.args, record.evented, record.finished_scans = args, False, 0
        self._send_many([record], spec)


# -- helpers --------------------------------------------------------------------------------


def _on_cluster(native: distributed.Future[Any]) -> bool:
    """Whether Dask still holds the value of an upstream run's task."""
    return bool(native.status == "finished")


def _start_cluster(spec: str | type | None, given: dict[str, Any]) -> Any:
    """Start the cluster that `cluster_class` names, with the LocalCluster defaults."""
    from distributed import LocalCluster

    cluster_class: Any = LocalCluster if spec is None else spec
    if isinstance(spec, str):
        module_name, _, name = spec.replace(":", ".").rpartition(".")
        if not module_name:
            raise ValueError(f"cluster_class {spec!r} is not a dotted name like 'distributed.LocalCluster'")
        try:
            cluster_class = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            raise ImportError(
                f"cannot import {name!r} from {module_name!r} for cluster_class={spec!r}: {exc}. "
                "Install the package that provides the cluster class."
            ) from exc
    kwargs = dict(given)
    if isinstance(cluster_class, type) and issubclass(cluster_class, LocalCluster):
        for key, value in LOCAL_DEFAULTS.items():
            if key == "host" and kwargs.get("processes") is False and "protocol" not in kwargs:
                continue  # workers in this process talk in memory (inproc://), no host
            kwargs.setdefault(key, value)
        kwargs["scheduler_kwargs"] = {**LOCAL_SCHEDULER_DEFAULTS, **kwargs.get("scheduler_kwargs", {})}
    return cluster_class(**kwargs)


def _adapt(cluster: Any, adapt_kwargs: dict[str, Any]) -> None:
    """`cluster.adapt(**adapt_kwargs)`, awaited if it is a coroutine."""
    import asyncio
    import inspect

    outcome = cluster.adapt(**adapt_kwargs)
    if inspect.isawaitable(outcome):

        async def wait() -> Any:
            return await outcome

        sync = getattr(cluster, "sync", None)
        if sync is not None:
            sync(wait)
        else:
            asyncio.run(wait())


def _dashboard(client: distributed.Client) -> str:
    try:
        return str(client.dashboard_link)
    except Exception:  # a scheduler without a dashboard
        return "(none)"


_ANNOTATION_OPTIONS = ("resources", "priority", "retries", "workers", "allow_other_workers")


def _with_annotations(options: Mapping[str, Any]) -> Mapping[str, Any]:
    """`options` plus the `dask.annotate` in force now, for a run sent later from
    another thread (where the annotations of this one no longer apply)."""
    from dask.base import get_annotations

    annotations = get_annotations()
    if not annotations:
        return options
    return {**{name: annotations[name] for name in _ANNOTATION_OPTIONS if name in annotations}, **options}
