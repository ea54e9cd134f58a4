"""The flow's side: where final states reported by workers become futures' states.

One `Channel` per `distributed.Client`. It subscribes to an event topic of the client,
and a thread of its own turns each report into the run's final `State`, so that no
done-callback of a run ever executes on Dask's event loop. A periodic scan finds the
Dask tasks that ended without a report (a lost worker, a cancelled task).

A run whose value was too large for its report gets a `DeferredState`: it fetches the
run's state from the cluster the first time someone reads the value.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

from taskrunners import State
from taskrunners.lowlevel import DeferredState, PreparedRun, RunLocation, RunSpec, loads

if TYPE_CHECKING:
    import distributed

    from ._runner import DaskTaskRunner

__all__ = ["Channel", "Record", "worker_channel"]

logger = logging.getLogger("taskrunners.dask")

#: Seconds between scans for Dask tasks that ended without a report.
SCAN_INTERVAL = 0.1
#: Seconds `close` waits for the thread that finishes runs.
CLOSE_SECONDS = 60.0
ENDED = frozenset({"error", "cancelled"})


@dataclass(eq=False, slots=True)
class Record:
    """One run sent to the cluster (or waiting to be), until its final state is known."""

    runner: DaskTaskRunner
    run: PreparedRun
    spec: RunSpec  # the run's, or one with fewer retries once the run was lost
    options: Mapping[str, Any]
    args: tuple[Any, ...] = ()  # the upstream runs: Dask futures or final states
    key: str = ""
    reported: bool = False  # its report, or the scan's finding, is on its way
    finished_scans: int = 0  # scans that saw its Dask task finished, without a report

    @property
    def done(self) -> bool:
        """Whether the run is final (it may have been crashed without a report)."""
        return self.run.future.done()


class Channel:
    """Receives the reports of one client's runs and finishes their futures."""

    def __init__(self, client: distributed.Client, topic: str | None = None) -> None:
        self.client = client
        self.topic = topic or client.id
        self.records: dict[int, Record] = {}  # by run number: dict operations are atomic
        self._queue: SimpleQueue[tuple[Record, Any] | None] = SimpleQueue()
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

    def close(self) -> None:
        """Stop listening (the runs must all be final)."""
        self._closed = True  # the scan stops itself
        with contextlib.suppress(Exception):  # the client is already closing: nothing to undo
            self.client.unsubscribe_topic(self.topic)
        self._queue.put(None)
        self._thread.join(CLOSE_SECONDS)  # bounded: a run being finished waits FETCH_SECONDS at most

    def _scan(self) -> None:
        """On the client's event loop: forget the final runs, and hand on those whose
        Dask task ended without a report (cheaper than a done-callback per run)."""
        if self._closed:
            self._scanner.stop()
            return
        # dict.copy() takes the snapshot in one C call: iterating the live dict (even
        # through list(items())) can run into a submit inserting from another thread.
        for number, record in self.records.copy().items():
            native = record.run.future.native
            if record.done:
                del self.records[number]  # only the scan removes records
                continue
            if native is None or record.reported:
                continue
            status = native.status
            if status == "finished":
                # Its report travels ahead of Dask's own message; give it a scan more.
                record.finished_scans += 1
                if record.finished_scans < 2:
                    continue
            elif status not in ENDED:
                continue
            record.reported = True
            self._queue.put((record, native))

    def _on_event(self, event: Any) -> None:
        """On the client's event loop: hand a run's report on to the channel's thread."""
        msg = event[1]
        if not isinstance(msg, (tuple, list)) or len(msg) != 2:
            return  # the scheduler's own events about this client (dicts)
        record = self.records.get(msg[0])
        if record is not None and not record.reported:
            record.reported = True
            self._queue.put((record, msg[1]))

    def _finish_reports(self) -> None:
        while (item := self._queue.get()) is not None:
            record, payload = item
            try:
                if not isinstance(payload, bytes):  # its Dask task ended without a report
                    record.runner._native_done(record, payload)
                elif not record.done:
                    record.run.set_state(self._decode(record, payload))
            except BaseException as exc:  # never leave a run open
                logger.exception("could not finish a run from its report")
                record.run.crash(f"its final state could not be read: {exc!r}", exc)

    def _decode(self, record: Record, blob: bytes) -> State[Any]:
        """The state that `_remote.encode` packed: a `DeferredState` if the value stayed."""
        try:
            wire = loads(blob)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure crashes that run, naming it
            return record.spec.crashed(
                f"its final state could not be unpickled in the flow's process ({type(exc).__name__}: "
                f"{exc}); the modules it needs must be importable here",
                exc,
            )
        fields, inline = wire[:8], wire[8]
        where = RunLocation(*wire[9]) if len(wire) > 9 and wire[9] is not None else None
        logs = wire[10] if len(wire) > 10 else ()
        if inline or fields[0] != "COMPLETED":  # a failure carries its exception, not a value
            return State.from_fields((*fields, logs), where)
        _, name, message, timestamp, attempt, started, _, _ = fields
        from distributed import Future

        native = record.run.future.native or Future(record.key, self.client)  # reported before sent
        state: DeferredState[Any] = DeferredState(
            native.result, handle=native, name=name, message=message, attempt=attempt, started=started,
            timestamp=timestamp, where=where, logs=logs,
        )  # fmt: skip
        record.runner._deferred.add(state)
        return state


_worker_channels: dict[str, Channel] = {}
_worker_channels_lock = threading.Lock()


def worker_channel(client: distributed.Client) -> Channel:
    """The channel of a worker's client, made on first use and never closed.

    A flow's channel listens on its client's own topic, whose events the scheduler
    drops once the client has gone; this one listens on a topic of its own, so that the
    scheduler never sends the client's own removal to it.
    """
    with _worker_channels_lock:
        channel = _worker_channels.get(client.id)
        if channel is None:
            channel = _worker_channels[client.id] = Channel(client, f"taskrunners-{client.id}")
        return channel
