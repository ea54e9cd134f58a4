"""Where a task run executed: host, process, thread, and what the runner adds.

The engine asks `here()` as a run starts, in the thread that runs it, and puts the
answer on the run's final state (`State.where`). The core knows the host, the process
and the thread; a runner adds what only it knows (a Dask worker's address, a Ray
node's id) through a location hook that its worker-side code registers with
`add_location_hook`. The answer is computed once per thread and kept, so a run pays
one attribute lookup for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import NamedTuple

__all__ = ["LocationHook", "RunLocation", "add_location_hook", "here"]

#: A runner's "where am I" hook: called in a thread that is about to run a task, it
#: returns what the runner knows of the place (`{}` where it knows nothing), as string
#: keys and values. The key `"worker"`, if given, names the worker for the report's rows.
LocationHook = Callable[[], Mapping[str, str]]


class RunLocation(NamedTuple):
    """Where a task run executed.

    Attributes:
        host: The host name of the machine.
        pid: The id of the process.
        thread: The name of the thread.
        thread_id: The thread's identifier (`threading.get_ident()`).
        details: What the runner added, as sorted `(key, value)` pairs: for example
            `dask_worker` (the Dask worker's address), `ray_node` and `ray_worker`.
    """

    host: str
    pid: int
    thread: str
    thread_id: int
    details: tuple[tuple[str, str], ...] = ()

    @property
    def worker(self) -> str:
        """The worker's name, one row of the report's timeline: what the runner named
        `"worker"`, else the host, process and thread."""
        for key, value in self.details:
            if key == "worker":
                return value
        return f"{self.host} pid {self.pid} {self.thread}"

    def detail(self, key: str) -> str | None:
        """The value the runner gave for `key`, or `None`."""
        for name, value in self.details:
            if name == key:
                return value
        return None


_hooks: list[LocationHook] = []
_generation = 0
_local = threading.local()
_host: list[str] = []


def add_location_hook(hook: LocationHook) -> None:
    """Register a runner's "where am I" hook in this process (once per hook).

    Threads compute their location again after a new hook is registered.
    """
    global _generation
    if hook not in _hooks:
        _hooks.append(hook)
        _generation += 1


def here() -> RunLocation:
    """Where the calling thread is (computed once per thread, then kept)."""
    try:
        generation, location = _local.where
    except AttributeError:
        pass
    else:
        if generation == _generation:
            return location  # type: ignore[no-any-return]
    location = _compute()
    _local.where = (_generation, location)
    return location


def _compute() -> RunLocation:
    import os

    if not _host:
        import socket

        _host.append(socket.gethostname())
    thread = threading.current_thread()
    details: dict[str, str] = {}
    for hook in _hooks:
        try:
            found = hook()
        except Exception:  # noqa: BLE001 - a location hook never fails a run: its details are left out
            continue
        details.update({str(key): str(value) for key, value in found.items()})
    return RunLocation(
        _host[0], os.getpid(), thread.name, threading.get_ident(), tuple(sorted(details.items()))
    )
