"""`FlowRunInfo`, and what a flow run does around its function: attempts, timeout, hooks."""

from __future__ import annotations

import itertools
import time
from typing import Any

__all__ = ["FlowRunInfo"]

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
