"""Tasks used by the conformance suite, public for runners' own tests and benchmarks.

They live at module level so that runners which send tasks to other processes can
pickle them by reference. They synchronise through files in a directory that the test
passes in, so that they work whether the runner uses threads, processes or machines
that share this file system: a task *signals* by creating a file and *waits* by
polling for one, with a deadline, never by sleeping for a guessed duration.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskrunners import task

#: How long a task waits for a signal before giving up (a broken runner must fail, not hang).
SIGNAL_TIMEOUT = 30.0


class ConformanceError(Exception):
    """An exception type of the suite's own, to check that types survive the runner."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


def signal(directory: str, name: str) -> None:
    """Create the signal file `name` in `directory`."""
    path = Path(directory, name)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(str(time.time()))
    tmp.replace(path)


def is_set(directory: str, name: str) -> bool:
    """Whether the signal `name` exists in `directory`."""
    return Path(directory, name).exists()


def wait_signal(directory: str, name: str, timeout: float = SIGNAL_TIMEOUT) -> None:
    """Wait until signal `name` exists in `directory`.

    Raises:
        TimeoutError: It did not appear within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    path = Path(directory, name)
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"signal {name!r} did not arrive within {timeout} s")
        time.sleep(0.002)


@task
def identity(x: Any) -> Any:
    return x


@task
def add(x: Any, y: Any) -> Any:
    return x + y


@task
async def async_add(x: Any, y: Any) -> Any:
    await asyncio.sleep(0)
    return x + y


@task
def fail(message: str) -> None:
    raise ConformanceError(7, message)


@task
def noop() -> None:
    return None


@task
def signal_and_return(directory: str, name: str, value: Any = None) -> Any:
    signal(directory, name)
    return value


@task
def wait_and_return(
    directory: str, wait_for_signal: str, value: Any = None, started: str | None = None
) -> Any:
    if started is not None:
        signal(directory, started)
    wait_signal(directory, wait_for_signal)
    return value


@task
def wait_and_fail(directory: str, wait_for_signal: str, message: str) -> None:
    wait_signal(directory, wait_for_signal)
    raise ConformanceError(8, message)


@task
def meet(directory: str, me: str, other: str) -> bool:
    """A barrier of two: finishes only if the other run is running at the same time."""
    signal(directory, me)
    wait_signal(directory, other)
    return True


@task
def signal_exists(directory: str, name: str) -> bool:
    return is_set(directory, name)


@task
def count_calls(directory: str, name: str, succeed_on: int) -> int:
    """Append one line per call; raise until the `succeed_on`-th call."""
    path = Path(directory, name)
    with path.open("a") as fh:
        fh.write("x\n")
    calls = len(path.read_text().splitlines())
    if calls < succeed_on:
        raise ConformanceError(calls, f"call {calls} fails")
    return calls


@task(timeout_seconds=0.5)
def wait_too_long(directory: str, name: str) -> str:
    wait_signal(directory, name)
    return "should have timed out"


@task(timeout_seconds=0.5)
async def async_wait_too_long() -> str:
    await asyncio.sleep(SIGNAL_TIMEOUT)
    return "should have timed out"


@task
def raise_timeout_error() -> None:
    raise TimeoutError("the task's own timeout")


@task
def submit_and_wait(depth: int) -> int:
    """Submit a run of itself from inside a run, and wait for it: nested submission."""
    if depth == 0:
        return 0
    return submit_and_wait.submit(depth - 1).result() + 1


@task
def map_inside(values: list[int]) -> list[int]:
    return add.map(values, 1).result()


@task
def interrupted() -> None:
    raise KeyboardInterrupt


@task
def sum_all(values: Any) -> Any:
    return sum(values)


@task
def meet_and_report_pid(directory: str, me: str, other: str) -> int:
    """Meet the other run at a barrier, then say which process ran this one."""
    signal(directory, me)
    wait_signal(directory, other)
    return os.getpid()


@task
def exit_process() -> None:
    """End the process running this task at once, as a crash or the OOM killer would."""
    os._exit(13)


@task
def exit_process_once(directory: str, name: str) -> str:
    """Crash the worker the first time, succeed the next."""
    path = Path(directory, name)
    if not path.exists():
        path.write_text("crashed once")
        os._exit(13)
    return "recovered"


@dataclass
class Pair:
    """A dataclass argument, to check that futures inside dataclasses are resolved."""

    left: Any
    right: Any


# -- probes for the capability tests -------------------------------------------------

#: A context variable the IN_PROCESS test sets in the flow and reads in a task.
CONTEXT_PROBE: ContextVar[str] = ContextVar("taskrunners_conformance_probe", default="unset")

#: The signal file a `FlowProcessTripwire` creates when it is unpickled in the flow's process.
TRIPWIRE_SIGNAL = "tripwire-unpickled-in-the-flow-process"


class FlowProcessTripwire:
    """A large value that leaves the signal `TRIPWIRE_SIGNAL` in `directory` if it is
    ever unpickled in the process `pid` (the flow's): the NATIVE_DEPENDENCIES test's
    proof that a result moved from worker to worker without passing through the flow."""

    def __init__(self, directory: str, pid: int, payload: bytes) -> None:
        self.directory = directory
        self.pid = pid
        self.payload = payload

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_tripwire, (self.directory, self.pid, self.payload))


def _rebuild_tripwire(directory: str, pid: int, payload: bytes) -> FlowProcessTripwire:
    if os.getpid() == pid:
        signal(directory, TRIPWIRE_SIGNAL)
    return FlowProcessTripwire(directory, pid, payload)


@task
def make_tripwire(directory: str, pid: int, size: int) -> FlowProcessTripwire:
    return FlowProcessTripwire(directory, pid, b"\0" * size)


@task
def tripwire_size(wire: FlowProcessTripwire) -> int:
    return len(wire.payload)


@task
def in_process_probe(event: threading.Event) -> tuple[int, str, bool]:
    """The process id, the value of `CONTEXT_PROBE`, and whether `event` (an object of
    the flow's memory) was set, from inside the run."""
    return os.getpid(), CONTEXT_PROBE.get(), event.is_set()


@task
def hold_slot(directory: str, name: str) -> float:
    """Signal `<name>-started`, wait for `<name>-go`; return when it started."""
    started = time.monotonic()
    signal(directory, f"{name}-started")
    wait_signal(directory, f"{name}-go")
    return started
