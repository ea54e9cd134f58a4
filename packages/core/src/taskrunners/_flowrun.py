"""`FlowRunInfo`, and what a flow run does around its function: attempts, timeout, hooks."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from ._errors import FlowTimeoutError

__all__ = ["FlowRunInfo", "call_with_timeout"]

_flow_run_numbers = itertools.count(1)


class FlowRunInfo:
    """Identity of one flow run, as flow hooks receive it (`hook(flow, flow_run, state)`).

    Attributes:
        number: A number unique to the flow run within this process.
        flow_name: The name of the flow.
        name: The run's name: from the flow's `flow_run_name`, else `<flow>-<number>`.
        parameters: The arguments of the call, by parameter name.
        tags: The tags of the `tags(...)` blocks open at the call.
        created: When the flow was called (seconds since the epoch).
        attempt: How many attempts have started (flow `retries` adds attempts).
        log_prints: Whether `print` in the flow, and in its tasks that do not set
            their own, goes to the run logger.
    """

    __slots__ = (
        "_id",
        "attempt",
        "created",
        "flow_name",
        "log_prints",
        "name",
        "number",
        "parameters",
        "tags",
    )

    def __init__(self, flow_name: str, parameters: dict[str, Any], tags: frozenset[str]) -> None:
        self.number: int = next(_flow_run_numbers)
        self.flow_name: str = flow_name
        self.name: str = f"{flow_name}-{self.number}"
        self.parameters: dict[str, Any] = parameters
        self.tags: frozenset[str] = tags
        self.created: float = time.time()
        self.attempt: int = 0
        self.log_prints: bool = False
        self._id: Any = None

    @property
    def id(self) -> Any:
        """A `uuid.UUID` for the flow run (made on first use)."""
        if self._id is None:
            import uuid

            self._id = uuid.uuid4()
        return self._id

    @property
    def run_count(self) -> int:
        """Prefect's name for `attempt`."""
        return self.attempt

    def __repr__(self) -> str:
        return f"FlowRunInfo(name={self.name!r})"


def call_with_timeout(fn: Any, timeout: float, label: str) -> Any:
    """Call `fn()` in a helper thread (with this thread's context) and wait at most
    `timeout` seconds.

    On timeout the helper is asked to stop (`FlowTimeoutError` raised inside it at its
    next Python instruction) and the caller gets a `FlowTimeoutError`.

    Raises:
        FlowTimeoutError: `fn` ran longer than `timeout`.
        BaseException: What `fn` raised.
    """
    import contextvars

    from ._engine import _raise_in_thread

    outcome: list[Any] = []
    finished = threading.Event()
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome.append((True, context.run(fn)))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append((False, exc))
        finally:
            finished.set()

    thread = threading.Thread(target=target, name=f"taskrunners-flow-{label}", daemon=True)
    thread.start()
    if not finished.wait(timeout):
        _raise_in_thread(thread, FlowTimeoutError)
        raise timeout_error(label, timeout)
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def timeout_error(label: str, timeout: float) -> FlowTimeoutError:
    return FlowTimeoutError(f"flow run {label!r} exceeded its timeout of {timeout} s")


async def await_with_timeout(coro: Any, timeout: float, label: str) -> Any:
    """Await `coro`, cancelling it after `timeout` seconds.

    Raises:
        FlowTimeoutError: It ran longer than `timeout`.
    """
    import asyncio

    task = asyncio.ensure_future(coro)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await task
    except asyncio.CancelledError:
        if expired:
            raise timeout_error(label, timeout) from None
        raise
    finally:
        handle.cancel()
