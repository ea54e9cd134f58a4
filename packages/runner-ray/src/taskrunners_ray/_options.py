"""`remote_options`: Ray task options (resources, retries, ...) for the runs submitted inside a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

__all__ = ["remote_options"]

#: Options that the runner sets itself and that `remote_options` refuses.
_RESERVED = {
    "num_returns": "the runner's remote function returns one object, the run's final state",
    "retry_exceptions": "the task's own `retries` retry exceptions, inside the run",
}

#: Options that reserve something on a node: checked against the cluster at submit.
RESOURCE_OPTIONS = ("num_cpus", "num_gpus", "memory", "resources")


class Options:
    """One merged set of options, with a hashable key for caching Ray's `.options()`."""

    __slots__ = ("key", "values")

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        try:
            key: Any = _freeze(values)
            hash(key)
        except TypeError:  # an option value that cannot be a key: no caching for it
            key = None
        self.key = key

    def requests(self) -> dict[str, Any]:
        """The resource requests among the options."""
        return {name: self.values[name] for name in RESOURCE_OPTIONS if name in self.values}


_current: ContextVar[Options | None] = ContextVar("taskrunners_ray_options", default=None)


def current_options() -> Options | None:
    """The options in force for submits made here, or `None`."""
    return _current.get()


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
            default is the task's own `retries`.
        **ray_options: Any other option of Ray's `remote_function.options()`
            (`scheduling_strategy`, `runtime_env`, `label_selector`, `max_calls`,
            `accelerator_type`, ...).

    Yields:
        The merged options now in force.

    Raises:
        ValueError: An option the runner manages itself (`num_returns`,
            `retry_exceptions`), or an option Ray does not accept.
    """
    given = dict(ray_options)
    for name, value in (
        ("num_cpus", num_cpus),
        ("num_gpus", num_gpus),
        ("memory", memory),
        ("resources", resources),
        ("max_retries", max_retries),
    ):
        if value is not None:
            given[name] = value
    for name, why in _RESERVED.items():
        if name in given:
            raise ValueError(f"remote_options() does not accept {name!r}: {why}")
    outer = _current.get()
    merged = dict(outer.values) if outer is not None else {}
    if "resources" in given and "resources" in merged:
        given["resources"] = {**merged["resources"], **given["resources"]}
    merged.update(given)
    _validate(merged)
    token = _current.set(Options(merged))
    try:
        yield dict(merged)
    finally:
        _current.reset(token)


def _validate(options: dict[str, Any]) -> None:
    """Let Ray check names and values now, rather than at the first submit."""
    from ._remote import base_function

    try:
        base_function().options(**options)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"remote_options(): Ray refuses these options: {exc}") from exc


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value
