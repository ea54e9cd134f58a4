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

import importlib
import logging
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from taskrunners import Capability, Future, FutureList, State, StateType, Task, TaskCall, TaskRunner

from . import _remote
from ._channel import Channel, Record, alive_remote_states
from ._options import current_options

if TYPE_CHECKING:
    import distributed

__all__ = ["DaskTaskRunner"]

logger = logging.getLogger("taskrunners.dask")

_COMPLETED = StateType.COMPLETED

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
        {
            Capability.PARALLEL,
            Capability.SURVIVES_WORKER_LOSS,
            Capability.NATIVE_DEPENDENCIES,
            Capability.RESOURCE_REQUESTS,
        }
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
        self._owns_channel = False
        self._worker_side_runner = False
        self._remote_states: Any = None
        self._suspects_lock = threading.Lock()
        self._suspects: deque[Record] = deque()
        self._isolated: Record | None = None

    # -- configuration ----------------------------------------------------------------

    def duplicate(self) -> DaskTaskRunner:
        return type(self)(
            address=self.address,
            cluster_class=self.cluster_class,
            cluster_kwargs=self.cluster_kwargs,
            adapt_kwargs=self.adapt_kwargs,
            client_kwargs=self.client_kwargs,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._config() == other._config()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def _config(self) -> tuple[Any, ...]:
        return (self.address, self.cluster_class, self.cluster_kwargs, self.adapt_kwargs, self.client_kwargs)

    def __repr__(self) -> str:
        given = [
            f"{name}={value!r}"
            for name, value in zip(
                ("address", "cluster_class", "cluster_kwargs", "adapt_kwargs", "client_kwargs"),
                self._config(),
            )
            if value
        ]
        return f"DaskTaskRunner({', '.join(given)})"

    @property
    def client(self) -> distributed.Client:
        """The `distributed.Client` of the started runner.

        Raises:
            RuntimeError: The runner is not started.
        """
        client = (
            self._client
            if self._client is not None
            else (self._attach() if self._worker_side_runner else None)
        )
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

    def __enter__(self) -> DaskTaskRunner:
        super().__enter__()
        try:
            self._start()
        except BaseException:
            self._started = False
            raise
        return self

    def _start(self) -> None:
        from distributed import Client

        client_kwargs = {"set_as_default": False, **self.client_kwargs}
        _remote.register_sizeof()
        self._remote_states = alive_remote_states()
        if self.address is not None:
            self._client = Client(self.address, **client_kwargs)
            logger.info(
                "Connected to the Dask scheduler at %s; dashboard: %s", self.address, _dashboard(self._client)
            )
        else:
            cluster_class = _cluster_class(self.cluster_class)
            kwargs = dict(self.cluster_kwargs)
            if _is_local_cluster(cluster_class):
                for name, value in LOCAL_DEFAULTS.items():
                    if name == "host" and kwargs.get("processes") is False and "protocol" not in kwargs:
                        continue  # workers in this process talk in memory (inproc://), no host
                    kwargs.setdefault(name, value)
                kwargs["scheduler_kwargs"] = {
                    **LOCAL_SCHEDULER_DEFAULTS,
                    **kwargs.get("scheduler_kwargs", {}),
                }
            self._cluster = cluster_class(**kwargs)
            try:
                if self.adapt_kwargs:
                    _adapt(self._cluster, self.adapt_kwargs)
                self._client = Client(self._cluster, **client_kwargs)
            except BaseException:
                self._cluster.close()
                self._cluster = None
                raise
            logger.info(
                "Started a %s for the flow; dashboard: %s",
                type(self._cluster).__name__,
                _dashboard(self._client),
            )
        try:
            self._channel, self._owns_channel = Channel.of(self._client)
            self._install_report_plugin()
        except BaseException:
            self._shut_down(fetch_values=False)
            raise

    def _install_report_plugin(self) -> None:
        from ._worker_plugin import ReportPlugin

        assert self._client is not None
        try:
            self._client.register_plugin(ReportPlugin())
        except Exception:  # the workers report from the task's thread instead, a little later
            logger.warning("could not install the taskrunners worker plugin", exc_info=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        interrupted = exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit))
        if interrupted:
            assert exc_type is not None
            self._crash_open(f"the flow was interrupted by {exc_type.__name__}")
        try:
            super().__exit__(exc_type, exc, tb)
        except BaseException:
            self._crash_open("the flow was interrupted while waiting for its runs")
            interrupted = True
            raise
        finally:
            self._shut_down(fetch_values=not interrupted)

    def _crash_open(self, reason: str) -> None:
        channel = self._channel
        if channel is None:
            return
        with channel.lock:
            mine = [r for r in channel.records.values() if r.runner is self]
        for record in mine:
            if record.native is not None:
                record.native.cancel()
            channel.complete(record, record.call.crashed(reason))

    def _shut_down(self, fetch_values: bool) -> None:
        client, cluster, channel = self._client, self._cluster, self._channel
        self._client = self._cluster = self._channel = None
        if self._worker_side_runner or client is None:
            return  # the worker's client outlives the task
        try:
            if fetch_values:
                self._fetch_remote_values(client)
        finally:
            try:
                if channel is not None and self._owns_channel:
                    channel.close()
            finally:
                try:
                    client.close()
                finally:
                    if cluster is not None:
                        cluster.close()

    def _fetch_remote_values(self, client: distributed.Client) -> None:
        """Bring here the values still on the cluster whose states someone still holds:
        once the client closes, they could not be read anymore."""
        pending = [s for s in list(self._remote_states) if not s._loaded and s._native is not None]
        if not pending:
            return
        try:
            remote = client.gather([s._native for s in pending], errors="skip")
        except Exception:
            logger.warning("could not fetch the values of %d runs from Dask", len(pending), exc_info=True)
            return
        if len(remote) == len(pending):
            for state, full in zip(pending, remote):
                state.fill(full._data)
        else:  # some failed to arrive: fetch one by one, leaving the failures unread
            for state in pending:
                try:
                    state.fill(state._native.result()._data)
                except Exception:
                    pass

    # -- the worker-side runner -----------------------------------------------------------

    @classmethod
    def _worker_side(cls) -> DaskTaskRunner:
        """A started runner for code running on a Dask worker: `.submit()` inside a
        task reaches it. It attaches to the worker's client on first use."""
        runner = cls()
        runner._worker_side_runner = True
        TaskRunner.__enter__(runner)
        return runner

    def _attach(self) -> distributed.Client:
        from distributed import get_client

        client = get_client()
        self.address = client.scheduler.address
        self._remote_states = alive_remote_states()
        self._channel, _ = Channel.of(client, lasting=True)
        self._client = client
        return client

    # -- submitting -------------------------------------------------------------------

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        call = self.prepare(task, parameters, wait_for)
        if self._client is None:
            self._attach()
        options = current_options()
        if not call.upstream:
            self._send(call, (), options)
        else:
            args = self._native_args(call)
            if args is not None:
                self._send(call, args, options)
            else:
                self._send_when_ready(call, options)
        return call.future  # type: ignore[return-value]

    def map(
        self,
        task: Task[Any, Any],
        parameter_sets: Sequence[dict[str, Any]],
        wait_for: Iterable[Any] | None = None,
    ) -> FutureList[Any]:
        futures: FutureList[Any] = FutureList()
        if not parameter_sets:
            return futures
        calls: list[TaskCall] = []
        upstream: list[tuple[Any, ...]] = []
        options = current_options()
        for parameters in parameter_sets:
            call = self.prepare(task, parameters, wait_for)
            futures.append(call.future)  # type: ignore[arg-type]
            args = self._native_args(call) if call.upstream else ()
            if args is None:
                if self._client is None:
                    self._attach()
                self._send_when_ready(call, options)
            else:
                calls.append(call)
                upstream.append(args)
        if calls:
            if self._client is None:
                self._attach()
            self._send_many(calls, upstream, options)
        return futures

    def _native_args(self, call: TaskCall) -> tuple[Any, ...] | None:
        """The upstream arguments if all upstream runs are this runner's and on the
        cluster (as their Dask futures, or their states once final), else None."""
        args = []
        for future in call.upstream:
            if future._owner is not self:
                return None
            state = future._state
            if state is not None and state.type is not _COMPLETED and state.is_final():
                args.append(state)  # failed: its state says all; its Dask task may have erred
                continue
            native = future.native
            if native is None:
                return None  # still waiting for upstream runs of its own
            args.append(native)
        return tuple(args)

    def _send_when_ready(self, call: TaskCall, options: dict[str, Any]) -> None:
        """Send `call` once its upstream runs (another runner's, or not sent yet) are final."""
        options = _with_annotations(options)

        def ready(_: TaskCall) -> None:
            self._send(call, self._final_args(call), options)

        call.when_ready(ready)

    def _final_args(self, call: TaskCall) -> tuple[Any, ...]:
        """Upstream arguments once every upstream run is final: the Dask future of a
        run of ours that completed on the cluster, else the run's state."""
        args: list[Any] = []
        for future in call.upstream:
            state = future._state
            native = future.native
            if (
                future._owner is self
                and native is not None
                and state is not None
                and state.type is _COMPLETED
                and native.status == "finished"
            ):
                args.append(native)
            else:
                args.append(state)
        return tuple(args)

    def _send(self, call: TaskCall, args: tuple[Any, ...], options: dict[str, Any]) -> None:
        client, channel = self._client, self._channel
        if client is None or channel is None:
            self._refuse(call, "the runner shut down before the run could start")
            return
        info = call.info
        key = f"{info.task_name}-{info.id.hex}"
        record = Record(self, call, key, args, options)
        channel.records[info.number] = record
        call.task = _remote.shippable(record.task)
        try:
            native = client.submit(_remote.run, call, channel.topic, *args, key=key, pure=False, **options)
        except Exception as exc:
            channel.complete(record, call.crashed(f"Dask refused it: {type(exc).__name__}: {exc}", exc))
            return
        finally:
            call.task = record.task
        record.native = native
        call.future.native = native  # type: ignore[union-attr]

    def _send_many(
        self, calls: list[TaskCall], upstream: list[tuple[Any, ...]], options: dict[str, Any]
    ) -> None:
        client, channel = self._client, self._channel
        assert client is not None and channel is not None
        records = []
        keys = []
        shipped = _remote.shippable(calls[0].task)
        for call, args in zip(calls, upstream):
            info = call.info
            key = f"{info.task_name}-{info.id.hex}"
            record = Record(self, call, key, args, options)
            channel.records[info.number] = record
            records.append(record)
            keys.append(key)
            call.task = shipped
        try:
            natives = client.map(
                _remote.run_packed,
                calls,
                [channel.topic] * len(calls),
                upstream,
                key=keys,
                pure=False,
                **options,
            )
        except Exception as exc:
            for record in records:
                channel.complete(
                    record, record.call.crashed(f"Dask refused it: {type(exc).__name__}: {exc}", exc)
                )
            return
        finally:
            for record in records:
                record.call.task = record.task
        for record, native in zip(records, natives):
            record.native = native
            record.call.future.native = native  # type: ignore[union-attr]

    def _refuse(self, call: TaskCall, reason: str) -> None:
        future = call.future
        assert future is not None
        future.set_state(call.crashed(reason))

    # -- when Dask says a run's task ended --------------------------------------------

    def _native_done(self, record: Record, native: distributed.Future) -> None:
        """In the channel's thread: the Dask task of `record` ended without a report."""
        if record.done or record.evented or native is not record.native:
            return
        channel = self._channel or Channel._registry.get(native.client.id)
        if channel is None:
            return
        status = native.status
        if status == "finished":
            channel.fetch(record, native)  # the report never arrived: read the result
            return
        error: BaseException | None = None
        if status == "error":
            try:
                error = native.exception(timeout=30)
            except BaseException as exc:
                error = exc
        self._after_dask_error(channel, record, status, error)

    def _after_dask_error(
        self, channel: Channel, record: Record, status: str | None, error: BaseException | None
    ) -> None:
        call = record.call
        upstream_lost = [
            a
            for a in record.args
            if not isinstance(a, State) and a is not None and a.status in ("error", "cancelled")
        ]
        if upstream_lost:
            # An upstream run's Dask task failed (its run ends CRASHED or is re-sent):
            # send this one again once the upstream runs are final, with their states.
            def again(_: TaskCall) -> None:
                if not record.done:
                    self._resend(channel, record, self._final_args(call))

            call.when_ready(again)
            return
        if _is_killed_worker(error):
            self._lost_with_worker(channel, record, error)
            return
        if status == "cancelled":
            reason = "Dask cancelled its task"
        else:
            reason = f"its Dask task failed outside the task's code ({type(error).__name__}: {error})"
        channel.complete(record, call.crashed(reason, error))

    # -- lost workers -------------------------------------------------------------------
    #
    # When a worker process dies, Dask fails (KilledWorker) every run that was on it:
    # the one executing, and those waiting behind it. Which one killed the worker, no
    # one can tell. So each run lost that way is a *suspect*: suspects are re-sent one
    # at a time. A suspect that completes was innocent; one lost again while re-sent on
    # its own is the culprit, and that loss counts as an attempt: it ends CRASHED, or
    # is re-sent (on its own again) if its task has retries left.

    def _lost_with_worker(self, channel: Channel, record: Record, error: BaseException | None) -> None:
        call = record.call
        with self._suspects_lock:
            isolated = self._isolated is record
        if not isolated:
            logger.info("the Dask worker running %s died; running it again on its own", call.info.name)
            with self._suspects_lock:
                self._suspects.append(record)
                start = self._isolated is None
            if start:
                self._isolate_next(channel)
            return
        record.losses += 1
        if record.task.retries >= record.losses:
            logger.info(
                "the worker running %s died again; retrying it (its task allows retries)", call.info.name
            )
            self._resend(channel, record, record.args, retries=record.task.retries - record.losses)
            return
        channel.complete(
            record, call.crashed("the Dask worker running it died, and again when it ran alone", error)
        )

    def _isolate_next(self, channel: Channel) -> None:
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
            future = record.call.future
            assert future is not None
            future.add_done_callback(partial(self._isolation_over, channel, record))
            self._resend(channel, record, record.args)
            return

    def _isolation_over(self, channel: Channel, record: Record, _: Any = None) -> None:
        with self._suspects_lock:
            if self._isolated is record:
                self._isolated = None
        self._isolate_next(channel)

    def _resend(
        self, channel: Channel, record: Record, args: tuple[Any, ...], retries: int | None = None
    ) -> None:
        client = self._client
        call = record.call
        if client is None:
            channel.complete(record, call.crashed("the runner shut down before the run could be sent again"))
            return
        task = record.task if retries is None else record.task.with_options(retries=retries)
        key = f"{call.info.task_name}-{_uuid_hex()}"
        record.key = key
        record.args = args
        record.evented = False
        record.finished_scans = 0
        call.task = _remote.shippable(task)
        try:
            native = client.submit(
                _remote.run, call, channel.topic, *args, key=key, pure=False, **record.options
            )
        except Exception as exc:
            channel.complete(record, call.crashed(f"Dask refused it: {type(exc).__name__}: {exc}", exc))
            return
        finally:
            call.task = record.task
        record.native = native
        call.future.native = native  # type: ignore[union-attr]


# -- helpers --------------------------------------------------------------------------------


def _uuid_hex() -> str:
    import uuid

    return uuid.uuid4().hex


def _is_killed_worker(error: BaseException | None) -> bool:
    if error is None:
        return False
    from distributed.scheduler import KilledWorker

    return isinstance(error, KilledWorker)


def _cluster_class(spec: str | type | None) -> Any:
    if spec is None:
        from distributed import LocalCluster

        return LocalCluster
    if not isinstance(spec, str):
        return spec
    module_name, _, name = spec.replace(":", ".").rpartition(".")
    if not module_name:
        raise ValueError(f"cluster_class {spec!r} is not a dotted name such as 'distributed.LocalCluster'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"cannot import {module_name!r} for cluster_class={spec!r}: {exc}. Install the package "
            "that provides the cluster class."
        ) from exc
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no {name!r} (cluster_class={spec!r})") from None


def _is_local_cluster(cls: Any) -> bool:
    from distributed import LocalCluster

    return isinstance(cls, type) and issubclass(cls, LocalCluster)


def _adapt(cluster: Any, adapt_kwargs: dict[str, Any]) -> None:
    import inspect

    outcome = cluster.adapt(**adapt_kwargs)
    if inspect.isawaitable(outcome):
        sync = getattr(cluster, "sync", None)
        if sync is not None:

            async def wait() -> Any:
                return await outcome

            sync(wait)
        else:
            import asyncio

            async def wait_here() -> Any:
                return await outcome

            asyncio.run(wait_here())


def _dashboard(client: distributed.Client) -> str:
    try:
        return str(client.dashboard_link)
    except Exception:  # a scheduler without a dashboard
        return "(none)"


_ANNOTATION_OPTIONS = ("resources", "priority", "retries", "workers", "allow_other_workers")


def _with_annotations(options: dict[str, Any]) -> dict[str, Any]:
    """`options` plus the `dask.annotate` in force now, for a run sent later from
    another thread (where the annotations of this one no longer apply)."""
    import dask

    annotations = dask.get_annotations()
    if not annotations:
        return options
    merged = {name: annotations[name] for name in _ANNOTATION_OPTIONS if name in annotations}
    merged.update(options)
    return merged
