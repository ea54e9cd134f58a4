"""`remote_options`: Ray task options (resources, retries, ...) for the runs submitted inside a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from taskrunners.lowlevel import RunOptions

__all__ = ["OPTIONS", "remote_options"]


def _validate(options: dict[str, Any]) -> None:
    """Let Ray check names and values now, rather than at the first submit."""
    from ._remote import base_function, run_remote, split_options

    values, remote = split_options(options)
    try:
        base_function(run_remote, remote).options(**values)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"remote_options(): Ray refuses these options: {exc}") from exc


OPTIONS = RunOptions(
    "remote_options",
    refused={
        "num_returns": "the runner's remote function returns one object, the run's final state",
        "retry_exceptions": "the task's own `retries` retry exceptions, inside the run",
    },
    merge=("resources",),
    validate=_validate,
)


@contextlib.contextmanager
def remote_options(
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    memory: int | None = None,
    resources: Mapping[str, float] | None = None,
    max_retries: int | None = None,
    **ray_options: Any,
) -> Iterator[dict[str, Any]]:
    """Ray task options for the runs submitted inside the `with` block.

    Blocks nest: an inner block adds to the options of the outer one and overrides
    the same names (`resources` is merged name by name). The options apply to the runs
    that `RayTaskRunner` submits in this thread (or task) while the block is open.

    Args:
        num_cpus: CPUs each run reserves (Ray's default: 1; runs submitted from
            inside a task: 0, see the Ray runner's documentation).
        num_gpus: GPUs each run reserves; Ray sets `CUDA_VISIBLE_DEVICES` for the run.
        memory: Bytes of memory each run reserves (a scheduling hint, not a limit).
        resources: Custom resources each run reserves, by name.
        max_retries: How many times Ray reruns a run whose worker process died; the
            default is the task's own `retries` (each loss counting as an attempt).
        **ray_options: Any other option of Ray's `remote_function.options()`
            (`scheduling_strategy`, `runtime_env`, `label_selector`, `max_calls`,
            `accelerator_type`, ...).

    Yields:
        The merged options now in force.

    Raises:
        ValueError: An option the runner manages itself (`num_returns`,
            `retry_exceptions`), or an option Ray does not accept.
    """
    named = {"num_cpus": num_cpus, "num_gpus": num_gpus, "memory": memory, "resources": resources}
    named["max_retries"] = max_retries
    given = {**ray_options, **{name: value for name, value in named.items() if value is not None}}
    with OPTIONS.using(**given) as merged:
        yield merged
