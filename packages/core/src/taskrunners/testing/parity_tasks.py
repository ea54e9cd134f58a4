"""Tasks and classes for the Prefect-parity tests of the conformance suite.

Module level, so that runners which send tasks to other processes pickle them (and the
methods of `Account`) by reference. Hooks that must leave a trace where the run
executes write signal files into a directory named by the task's tags (`"dir:<path>"`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from taskrunners import flow, task
from taskrunners.lowlevel import current_task_run
from taskrunners.states import Cancelled, Completed, Failed

from .tasks import signal, wait_signal

__all__ = [
    "Account",
    "Blocked",
    "directory_of",
    "never_retry",
    "returns_state",
    "run_name_inside",
    "slow_to_fetch",
    "tags_inside",
    "write_running_signal",
]


@dataclass
class Account:
    """A class whose methods are tasks and flows (instance, class and static; sync and async)."""

    base: int
    notes: list[Any] = field(default_factory=list)

    @task
    def add(self, x: int) -> int:
        return self.base + x

    @task
    async def add_async(self, x: int) -> int:
        return self.base + x

    @task
    def itself(self) -> Any:
        return self

    @task
    @classmethod
    def describe(cls, x: int) -> str:
        return f"{cls.__name__}:{x}"

    @task
    @staticmethod
    def double(x: int) -> int:
        return 2 * x

    @flow
    def total(self, values: list[int]) -> int:
        return sum(self.add.map(values).result())

    @flow
    @classmethod
    def label(cls, x: int) -> str:
        return f"{cls.__name__}-{cls.describe.submit(x).result()}"


@task
def returns_state(kind: str, value: Any = None) -> Any:
    """Return a State of `kind` ("completed", "failed", "cancelled")."""
    if kind == "completed":
        return Completed(data=value, message="done")
    if kind == "failed":
        return Failed(message=f"gave up on {value}")
    return Cancelled(message="stopped")


@task
def run_name_inside() -> str:
    """The name of the run, as the task sees it where it runs."""
    info = current_task_run()
    return info.name if info is not None else ""


@task
def tags_inside() -> list[str]:
    """The run's tags, as the task sees them where it runs."""
    info = current_task_run()
    return sorted(info.tags) if info is not None else []


def never_retry(task: Any, task_run: Any, state: Any) -> bool:
    """A `retry_condition_fn` that refuses every retry."""
    return False


def directory_of(task: Any) -> str:
    """The directory named by a task's `"dir:<path>"` tag."""
    for tag in task.tags:
        if tag.startswith("dir:"):
            return str(tag[4:])
    raise LookupError(f"task {task.name!r} has no 'dir:<path>' tag")


def write_running_signal(task: Any, task_run: Any, state: Any) -> None:
    """An `on_running` hook: signal `running-<attempt>-<pid>` in the task's directory."""
    signal(directory_of(task), f"running-{state.attempt}-{os.getpid()}")


class Blocked:
    """A large value whose unpickling in the process `pid` waits for a signal file."""

    def __init__(self, directory: str, name: str, pid: int, payload: bytes) -> None:
        self.directory: str = directory
        self.name: str = name
        self.pid: int = pid
        self.payload: bytes = payload

    def __reduce__(self) -> Any:
        return (_unblock, (self.directory, self.name, self.pid, self.payload))


def _unblock(directory: str, name: str, pid: int, payload: bytes) -> Blocked:
    if os.getpid() == pid:
        wait_signal(directory, name)
    return Blocked(directory, name, pid, payload)


@task
def slow_to_fetch(directory: str, name: str, pid: int, size: int = 1_000_000) -> Blocked:
    """A large value that the process `pid` (the flow's) can only load once `name` is signalled."""
    return Blocked(directory, name, pid, os.urandom(size))
