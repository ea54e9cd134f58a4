"""`DaskTaskRunner`: task runs on a dask.distributed cluster.

Each run is one Dask task (the runs of one `map` go in one `Client.map`), under a key
that starts with the task's name. Upstream runs of the same runner are passed as their
`distributed.Future`s, so Dask hands their results to the downstream worker directly;
upstream runs of other runners are waited for here, without blocking `submit`, and
their states sent along. Final states come back through `_channel`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import pkgutil
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from taskrunners import (
    Capability,
    Future,
    FutureList,
    NoActiveFlowError,
    State,
    Task,
    TaskRunner,
    get_run_logger,
)
from taskrunners.lowlevel import DeferredState, PreparedRun

from . import _remote
from ._channel import ENDED, Channel, Record, worker_channel
from ._options import current_options

if TYPE_CHECKING:
    import distributed

__all__ = ["DaskTaskRunner"]

logger = logging.getLogger("taskrunners.dask")

#: What the temporary LocalCluster gets unless `cluster_kwargs` says otherwise.
LOCAL_DEFAULTS: dict[str, Any] = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
#: The runner, not Dask, decides what happens to runs lost with their worker: Dask
#: fails them at the first loss instead of re-running them up to 3 times.
LOCAL_SCHEDULER_DEFAULTS: dict[str, Any] = {"allowed_failures": 0}
#: Seconds to fetch a run's final state from Dask when its report did not arrive,
#: before the run ends CRASHED saying so.
FETCH_SECONDS = 30.0
#: Seconds each step of stopping after an interrupt may take (cancel, close).
STOP_SECONDS = 10.0


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
            `allowed_failures` to 0 (see "Lost workers" in the docs); a subclass of
            LocalCluster gets these defaults only where its signature takes them.
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
        | {Capability.RESOURCE_REQUESTS, Capability.OUT_OF_PROCESS}
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
        self._withdrawn: list[Any] = []  # the Dask futures of the runs an interrupt took back

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

    def __reduce__(self) -> tuple[Any, ...]:
        """A runner pickles as its configuration: it loads unstarted (for a child process)."""
        return (type(self), self._config())

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
        client = self._connected()
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
            undo.callback(self.shutdown, True)  # a failed start closes what it started
            if self.address is None:
                self._cluster = _start_cluster(self.cluster_class, self.cluster_kwargs)
                if self.adapt_kwargs:
                    _adapt(self._cluster, self.adapt_kwargs)
            target = self.address if self._cluster is None else self._cluster
            self._client = client = Client(target, **{"set_as_default": False, **self.client_kwargs})
            self._channel = Channel(client)
            undo.pop_all()
        if self._cluster is None:
            where = f"Connected to the Dask scheduler at {self.address}"
        else:
            where = f"Started a {type(self._cluster).__name__} for the flow"
        dashboard = _dashboard_link(client, self._cluster, self.cluster_kwargs) or "(none)"
        try:
            run_logger: Any = get_run_logger()  # the flow run's: shown at a terminal by default
        except NoActiveFlowError:
            run_logger = logger
        run_logger.info("%s; dashboard: %s", where, dashboard)
        try:
            client.register_plugin(ReportPlugin())
        except Exception:  # the workers report from the task's thread instead, a little later
            logger.warning("could not install the taskrunners worker plugin", exc_info=True)

    def _connected(self) -> distributed.Client | None:
        """The client; a started worker-side runner attaches to its worker's client
        (never closed by this runner) on first use."""
        if self._client is None and self._worker_side and self.started:
            from distributed import get_client

            client = get_client()
            self.address = getattr(client.scheduler, "address", None)
            self._channel = worker_channel(client)
            self._client = client
        return self._client

    def take_back_unstarted(self) -> list[PreparedRun]:
        """On interrupt: hand every open run back to be crashed; `shutdown` then cancels
        their Dask tasks (after the base has crashed them, naming the interrupt)."""
        runs = self.open_runs()
        self._withdrawn = [run.future.native for run in runs if run.future.native is not None]
        return runs

    def _cancel_withdrawn(self) -> None:
        natives, self._withdrawn = self._withdrawn, []
        try:
            if natives and self._client is not None:
                self._client.cancel(natives)
        except Exception:  # the client is going: the runs end CRASHED all the same
            logger.warning("could not cancel %d Dask tasks", len(natives), exc_info=True)

    def shutdown(self, interrupted: bool) -> None:
        """Close the channel, the client and the cluster this runner started. After an
        interrupt, each step that talks to the cluster gets `STOP_SECONDS` at most."""
        if interrupted:
            _bounded(self._cancel_withdrawn, "cancel the Dask tasks")
        client, cluster, channel = self._client, self._cluster, self._channel
        self._client = self._cluster = self._channel = None
        if self._worker_side:
            return  # the worker's client outlives the task
        with contextlib.ExitStack() as closing:  # closes each, last first, even if one fails
            for resource in (cluster, client, channel):
                if resource is not None and interrupted:
                    closing.callback(_bounded, resource.close, f"close the {type(resource).__name__}")
                elif resource is not None:
                    closing.callback(resource.close)
            if client is not None and not interrupted:  # bring home the values held here
                try:
                    DeferredState.load_all(self._deferred, partial(client.gather, errors="skip"))
                except Exception:
                    logger.warning("could not fetch the values of runs from Dask", exc_info=True)

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
            futures.append(run.future)
            record = Record(self, run, run.spec, options)
            args = run.native_upstreams(self)
            if args is None:  # wait for upstream runs of another runner, or not sent yet
                run.when_ready(partial(self._send_when_final, record))
            else:
                record.args = args
                ready.append(record)
        self._send(ready)
        return futures

    def _send_when_final(self, record: Record, _: object = None) -> None:
        """Send `record`'s run with its upstream runs, all final: their Dask futures
        where Dask still holds the value, else their states."""
        record.args = record.run.final_upstreams(self, lambda native: bool(native.status == "finished"))
        self._send([record])

    def _send(self, records: list[Record]) -> None:
        """Hand the runs of `records` (with the same options) to Dask; a re-sent run
        gets a new key (the old one may be erred)."""
        records = [r for r in records if not r.done]  # not those crashed meanwhile (an interrupt)
        if not records:
            return
        client, channel = self._connected(), self._channel
        if client is None or channel is None:
            for record in records:
                record.run.crash("the runner shut down before the run could start")
            return
        for record in records:
            info = record.run.info
            record.key = f"{info.task_name}-{(uuid.uuid4() if record.key else info.id).hex}"
            record.run.future.native = None  # a re-sent run's old one is not scanned again
            record.reported, record.finished_scans = False, 0
            channel.records[info.number] = record
        try:
            natives = client.map(
                _remote.run,
                [r.spec for r in records],
                [channel.topic] * len(records),
                [r.args for r in records],
                key=[r.key for r in records],
                pure=False,
                **records[0].options,
            )
        except Exception as exc:  # noqa: BLE001 - whatever Dask refuses is sorted out below
            # Runs that cannot be pickled fail, naming the argument (as on every runner);
            # the others go again without them. If none is at fault, Dask refused them all.
            kept = []
            for record in records:
                failed = record.run.spec.not_serializable(exc)
                if failed is None:
                    kept.append(record)
                else:
                    record.run.set_state(failed)
            if kept and len(kept) < len(records):
                self._send(kept)
                return
            for record in kept:
                record.run.crash(f"Dask refused it: {type(exc).__name__}: {exc}", exc)
            return
        for record, native in zip(records, natives):
            record.run.future.native = native

    # -- when a run's Dask task ended without a report ------------------------------------

    def _native_done(self, record: Record, native: distributed.Future[Any]) -> None:
        """In the channel's thread: the Dask task of `record` ended without a report."""
        from distributed.scheduler import KilledWorker

        run, status = record.run, native.status
        if record.done or native is not run.future.native:
            return
        if status == "finished":  # the report never arrived: read the result
            try:
                run.set_state(native.result(timeout=FETCH_SECONDS))
            except Exception as exc:  # noqa: BLE001 - lost with its worker meanwhile, or the scheduler is gone
                run.crash(
                    f"its Dask task finished, but its final state could not be fetched within "
                    f"{FETCH_SECONDS:g} s ({type(exc).__name__}: {exc})",
                    exc,
                )
            return
        try:
            error = native.exception(timeout=FETCH_SECONDS) if status == "error" else None
        except Exception as exc:  # noqa: BLE001 - whatever Dask raises is the Dask task's error
            error = exc
        if any(not isinstance(a, State) and a.status in ENDED for a in record.args):
            # An upstream run's Dask task failed (its run ends CRASHED or is re-sent):
            # send this one again once the upstream runs are final, with their states.
            run.when_ready(partial(self._send_when_final, record))
        elif isinstance(error, KilledWorker):
            self._lost_with_worker(record, error)
        elif status == "cancelled":
            run.crash("Dask cancelled its task", error)
        else:
            reason = f"its Dask task failed outside the task's code ({type(error).__name__}: {error})"
            run.crash(reason, error)

    # -- lost workers -------------------------------------------------------------------
    #
    # When a worker process dies, Dask fails (KilledWorker) every run that was on it:
    # the one executing, and those waiting behind it. Which one killed the worker, no
    # one can tell. So each run lost that way is a *suspect*: suspects are re-sent one
    # at a time. A suspect that completes was innocent; one lost again while re-sent on
    # its own is the culprit, and that loss counts as an attempt (`count_loss`): it ends
    # CRASHED, or is re-sent (on its own again) if its task has retries left.

    def _lost_with_worker(self, record: Record, error: BaseException) -> None:
        run, name = record.run, record.run.info.name
        if self._isolated is not record:
            logger.info("the Dask worker running %s died; running it again on its own", name)
            with self._suspects_lock:
                self._suspects.append(record)
            self._isolate_next()
        elif run.count_loss():
            logger.info("the worker running %s died again; retrying it (its task allows retries)", name)
            record.spec = run.spec.with_task(run.task.with_options(retries=run.task.retries - run.losses))
            self._send([record])
        else:
            run.crash("the Dask worker running it died, and again when it ran alone", error)

    def _isolate_next(self, _: object = None) -> None:
        """Re-send the next suspect on its own, once the one sent before it is final."""
        with self._suspects_lock:
            if self._isolated is not None and not self._isolated.done:
                return
            while self._suspects and self._suspects[0].done:  # crashed meanwhile (an interrupt)
                self._suspects.popleft()
            record = self._isolated = self._suspects.popleft() if self._suspects else None
        if record is not None:
            record.run.future.add_done_callback(self._isolate_next)
            self._send([record])


# -- helpers --------------------------------------------------------------------------------


def _bounded(fn: Any, what: str) -> None:
    """Call `fn()` in a thread of its own and wait `STOP_SECONDS` at most (a scheduler
    that does not answer must not hold a program that was told to stop)."""
    errors: list[BaseException] = []

    def call() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - logged below: stopping goes on whatever failed
            errors.append(exc)

    thread = threading.Thread(target=call, name="taskrunners-dask-stop", daemon=True)
    thread.start()
    thread.join(STOP_SECONDS)
    if thread.is_alive():
        logger.warning("could not %s within %g s; going on", what, STOP_SECONDS)
    elif errors:
        logger.warning("could not %s: %r", what, errors[0])


def _start_cluster(spec: str | type | None, given: dict[str, Any]) -> Any:
    """Start the cluster that `cluster_class` names, with the LocalCluster defaults."""
    from distributed import LocalCluster

    cluster_class: Any = LocalCluster if spec is None else spec
    if isinstance(spec, str):
        try:
            cluster_class = pkgutil.resolve_name(spec)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ImportError(
                f"cannot import cluster_class={spec!r} ({type(exc).__name__}: {exc}). "
                "Install the package that provides the cluster class."
            ) from exc
    kwargs = dict(given)
    if isinstance(cluster_class, type) and issubclass(cluster_class, LocalCluster):
        accepts = _accepted_keywords(cluster_class)
        for key, value in LOCAL_DEFAULTS.items():
            if key == "host" and kwargs.get("processes") is False and "protocol" not in kwargs:
                continue  # workers in this process talk in memory (inproc://), no host
            if accepts(key):
                kwargs.setdefault(key, value)
        if accepts("scheduler_kwargs"):
            kwargs["scheduler_kwargs"] = {**LOCAL_SCHEDULER_DEFAULTS, **kwargs.get("scheduler_kwargs", {})}
    return cluster_class(**kwargs)


def _accepted_keywords(cluster_class: type) -> Any:
    """Whether `cluster_class(...)` takes a keyword: LocalCluster takes our defaults; a
    subclass gets one only if its own signature names it or takes `**kwargs`."""
    from distributed import LocalCluster

    if cluster_class is LocalCluster:
        return lambda key: True
    try:
        parameters = inspect.signature(cluster_class).parameters
    except (TypeError, ValueError):
        return lambda key: False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return lambda key: True
    return lambda key: key in parameters and parameters[key].kind is not inspect.Parameter.POSITIONAL_ONLY


def _dashboard_link(client: distributed.Client, cluster: Any, cluster_kwargs: dict[str, Any]) -> str | None:
    """The dashboard's address as a browser reaches it, or `None` without a dashboard.

    Dask builds its link from the scheduler's host; that is wrong where the dashboard
    listens elsewhere: a LocalCluster with `processes=False` (the scheduler's address
    is `inproc://` with the machine's network address) whose dashboard listens on
    127.0.0.1, say. For a LocalCluster this runner started, the host the dashboard was
    bound to wins.
    """
    from distributed import LocalCluster

    try:
        port = client.scheduler_info().get("services", {}).get("dashboard")
    except Exception:  # noqa: BLE001 - a scheduler that does not answer: no link
        return None
    if port is None:
        return None
    if isinstance(cluster, LocalCluster):
        bound = cluster_kwargs.get("dashboard_address", LOCAL_DEFAULTS["dashboard_address"])
        host = str(bound).rpartition(":")[0] if isinstance(bound, str) else ""
        if host and host not in ("0.0.0.0", "::", "[::]"):
            return f"http://{host}:{port}/status"
    try:
        return str(client.dashboard_link)
    except Exception:  # noqa: BLE001 - a link template that does not format
        return None


def _adapt(cluster: Any, adapt_kwargs: dict[str, Any]) -> None:
    """`cluster.adapt(**adapt_kwargs)`, awaited on the cluster's event loop if it is a coroutine."""
    outcome = cluster.adapt(**adapt_kwargs)
    if inspect.isawaitable(outcome):
        cluster.sync(lambda: outcome)  # awaits what the function returns
