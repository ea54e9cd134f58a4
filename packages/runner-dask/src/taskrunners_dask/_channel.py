"""The flow's side: where final states reported by workers become futures' states.

One `Channel` per `distributed.Client`. It subscribes to the client's own event topic
(the scheduler forgets that topic's events once the client has gone), and a thread of
its own turns each report into the run's final `State`, so that no done-callback of a
run ever executes on Dask's event loop. A periodic scan finds the Dask tasks that
ended without a report (a lost worker, a cancelled task).

A run whose value was too large for its report gets a `DeferredState`: it fetches the
run's state from the cluster the first time someone reads the value.
"""

from __future__ import annotations

import logging
import threading
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any, ClassVar

from taskrunners import State
from taskrunners.lowlevel import DeferredState, PreparedRun, loads

if TYPE_CHECKING:
    from collections.abc import Mapping

    import distributed

    from ._runner import DaskTaskRunner

__all__ = ["Channel", "Record"]

logger = logging.getLogger("taskrunners.dask")

#: Seconds between scans for Dask tasks that ended without a report.
SCAN_INTERVAL = 0.1
_ENDED = frozenset({"error", "cancelled"})
_SEQUENCES = (tuple, list)
_CHECK = object()
_STOP = object()


class Record:
    """One run in flight on the cluster, until its final state is known."""

    __slots__ = ("args", "evented", "finished_scans", "key", "native", "options", "run", "runner")

    def __init__(
        self, runner: DaskTaskRunner, run: PreparedRun, args: tuple[Any, ...], options: Mapping[str, Any]
    ) -> None:
        self.runner = runner
        self.run = run
        self.key = ""
        self.args = args
        self.options = options
        self.native: distributed.Future[Any] | None = None
        self.evented = False  # its report reached the client
        self.finished_scans = 0  # scans that saw its Dask task finished, without a report

    @property
    def done(self) -> bool:
        """Whether the run is final (it may have been crashed without a report)."""
        return self.run.future.done()


class Channel:
    """Receives the reports of one client's runs and finishes their futures."""

    _registry: ClassVar[dict[str, Channel]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, client: distributed.Client, topic: str) -> None:
        self.client = client
        self.topic = topic
        self.records: dict[int, Record] = {}  # by run number: dict operations are atomic
        self._queue: SimpleQueue[tuple[Any, Any]] = SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(
            target=self._finish_reports, name=f"taskrunners-dask-{client.id}", daemon=True
        )
        self._thread.start()
        client.subscribe_topic(self.topic, self._on_event)
        from tornado.ioloop import PeriodicCallback

        self._scanner = PeriodicCallback(self._scan, SCAN_INTERVAL * 1000)
        loop = client.loop
        assert loop is not None
        loop.add_callback(self._scanner.start)  # runs on the client's event loop

    @classmethod
    def of(cls, client: distributed.Client, lasting: bool = False) -> Channel:
        """The channel of `client` (made on first use).

        A flow's channel listens on the client's own topic, whose events the scheduler
        drops after the client has gone; the channel unsubscribes before its client
        closes. A `lasting` one (a worker's client, never closed by us) listens on a
        topic of its own, so that the scheduler never sends the client's own removal
        to it.
        """
        with cls._registry_lock:
            channel = cls._registry.get(client.id)
            if channel is None:
                topic = f"taskrunners-{client.id}" if lasting else client.id
                channel = cls._registry[client.id] = cls(client, topic)
            return channel

    def close(self) -> None:
        """Stop listening (the runs must all be final)."""
        with self._registry_lock:
            if self._registry.get(self.client.id) is self:
                del self._registry[self.client.id]
        self._closed = True  # the scan stops itself
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:  # the client is already closing: nothing to undo
            pass
        self._queue.put((_STOP, None))
        if self._thread is not threading.current_thread():
            self._thread.join()

    # -- watching Dask tasks ------------------------------------------------------------
    #
    # A run's report is what finishes it. A Dask task that ends *without* a report (its
    # worker died, Dask cancelled it, or, should it ever happen, the report went
    # missing) is found by a scan of the runs in flight, on the client's event loop,
    # every `SCAN_INTERVAL` seconds: cheaper than a done-callback per run, which would
    # cost a task on the event loop and a hop to Dask's callback thread for every run.

    def _scan(self) -> None:
        if self._closed:
            self._scanner.stop()
            return
        for record in list(self.records.values()):
            native = record.native
            if native is None or record.evented or record.done:
                continue
            status = native.status
            if status == "finished":
                # Its report travels ahead of Dask's own message; give it a scan more.
                record.finished_scans += 1
                if record.finished_scans < 2:
                    continue
            elif status not in _ENDED:
                continue
            record.finished_scans = -(1 << 30)  # hand it on once
            self._queue.put((_CHECK, (record, native)))

    # -- reports ----------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        """On the client's event loop: mark the run reported, hand the report on."""
        msg = event[1]
        if type(msg) not in _SEQUENCES or len(msg) != 2:
            return  # the scheduler's own events about this client (dicts)
        record = self.records.get(msg[0])
        if record is None:
            return
        record.evented = True
        self._queue.put((record, msg[1]))

    def _finish_reports(self) -> None:
        get = self._queue.get
        while True:
            record, payload = get()
            if record is _STOP:
                return
            try:
                if record is _CHECK:
                    payload[0].runner._native_done(self, *payload)
                elif not record.done:
                    self.complete(record, self._decode(record, payload))
            except BaseException as exc:  # never leave a run open
                logger.exception("could not finish a run from its report")
                target = payload[0] if record is _CHECK else record
                reason = f"its final state could not be read: {exc!r}"
                self.complete(target, target.run.spec.crashed(reason, exc))

    def _decode(self, record: Record, blob: bytes) -> State[Any]:
        """The state that `_remote.encode` packed: a `DeferredState` if the value stayed."""
        try:
            wire = loads(blob)
            fields, inline = wire[:8], wire[8]
            if inline or fields[0] != "COMPLETED":  # a failure carries its exception, not a value
                return State.from_fields(fields)
            _, name, message, timestamp, attempt, started, _, _ = fields
        except Exception as exc:
            return record.run.spec.crashed(
                f"its final state could not be unpickled in the flow's process ({type(exc).__name__}: "
                f"{exc}); the modules it needs must be importable here",
                exc,
            )
        native = record.native or _future(self.client, record.key)
        state: DeferredState[Any] = DeferredState(
            native.result, handle=native, name=name, message=message, attempt=attempt, started=started,
            timestamp=timestamp,
        )  # fmt: skip
        record.runner._deferred.add(state)
        return state

    def complete(self, record: Record, state: State[Any]) -> None:
        """Make `state` the final state of `record`'s run (unless it is final already)."""
        self.records.pop(record.run.info.number, None)
        record.args = ()
        record.run.set_state(state)


def _future(client: distributed.Client, key: str) -> distributed.Future[Any]:
    from distributed import Future

    return Future(key, client)
