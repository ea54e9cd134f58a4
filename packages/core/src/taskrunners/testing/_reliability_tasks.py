"""Tasks of the conformance suite's reliability tests (`_reliability`): values and
exceptions that cannot cross a process boundary as they are.

Module-level, so that runners which ship tasks to other processes pickle them by
reference.
"""

from __future__ import annotations

import threading
from typing import Any

from taskrunners import task

__all__ = [
    "HoldsALock",
    "InitMismatch",
    "ReliabilityError",
    "identity",
    "make_lock",
    "raise_holding_a_lock",
    "raise_init_mismatch",
    "raise_key_error",
    "raise_reliability_error",
    "recurse_forever",
]


class InitMismatch(ValueError):
    """An exception whose `__init__` does not accept its own `args`: pickle cannot
    rebuild it."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"code {code}: {reason}")
        self.code = code


class HoldsALock(LookupError):
    """An exception that holds a lock: it cannot be pickled at all."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class ReliabilityError(Exception):
    """A user-defined exception that pickles: it must arrive as itself."""


@task
def identity(x: Any) -> Any:
    return x


@task
def make_lock() -> Any:
    return threading.Lock()


@task
def raise_init_mismatch(code: int) -> None:
    raise InitMismatch(code, "the init does not match the args")


@task
def raise_holding_a_lock(message: str) -> None:
    raise HoldsALock(message)


@task
def raise_key_error(key: str) -> None:
    raise KeyError(key)


@task
def raise_reliability_error(message: str) -> None:
    raise ReliabilityError(message)


@task
def recurse_forever(depth: int = 0) -> int:
    return _recurse(depth)


def _recurse(depth: int) -> int:
    return _recurse(depth + 1) + 1
