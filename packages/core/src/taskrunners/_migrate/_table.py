"""What `taskrunners migrate` knows about Prefect: one table, meant to be extended.

Every entry names a Prefect API by the dotted path its users import it from. The
codemod reads only this module; to port one more name, add a line here (and a test).

- `NAMES`: a Prefect name and the `(module, name)` it becomes in taskrunners.
- `MODULES`: a Prefect module that has one taskrunners module as its counterpart, for
  `import prefect_dask as pd` (which becomes `import taskrunners_dask as pd`).
- `UNSUPPORTED`: Prefect APIs without a counterpart, by dotted path or path prefix, each
  with the section of the docs that says what to do instead.
- `KEYWORDS`: the keywords of a Prefect callable; those the taskrunners counterpart does
  not accept (read from its signature) are reported.
- `METHODS`: methods of Prefect tasks and flows without a counterpart.
- `ATTRIBUTES`: attributes of Prefect objects (futures) that taskrunners names otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

#: The top-level packages whose imports the codemod rewrites.
PREFECT_PACKAGES = frozenset({"prefect", "prefect_dask", "prefect_ray"})

#: The page the notes link to (its "Not supported" sections), relative to the repository.
GUIDE = "docs/migrate-command.md"

_TR = "taskrunners"
_STATES = "taskrunners.states"
_THREADS = "taskrunners_threads"
_PROCESSES = "taskrunners_processes"
_DASK = "taskrunners_dask"
_RAY = "taskrunners_ray"


def _same(module: str, source: str, *names: str) -> dict[str, tuple[str, str]]:
    """`source.NAME` -> `(module, NAME)` for each name."""
    return {f"{source}.{name}": (module, name) for name in names}


_MODEL = ("flow", "task", "Flow", "Task", "unmapped", "allow_failure", "quote", "opaque")
_STATE_NAMES = ("Completed", "Failed", "Crashed", "Cancelled", "Pending", "Running", "Scheduled", "State")
_ERRORS = ("MappingLengthMismatch", "MappingMissingIterable", "ReservedArgumentError")

NAMES: Mapping[str, tuple[str, str]] = {
    # prefect, top level
    **_same(_TR, "prefect", *_MODEL, "State", "tags", "get_run_logger"),
    # the submodules Prefect's docs import from
    **_same(_TR, "prefect.flows", "flow", "Flow"),
    **_same(_TR, "prefect.tasks", "task", "Task", "exponential_backoff"),
    **_same(_TR, "prefect.futures", "wait", "as_completed"),
    "prefect.futures.PrefectFuture": (_TR, "Future"),
    "prefect.futures.PrefectConcurrentFuture": (_TR, "Future"),
    "prefect.futures.PrefectWrappedFuture": (_TR, "Future"),
    "prefect.futures.PrefectFutureList": (_TR, "FutureList"),
    **_same(_TR, "prefect.utilities.annotations", "unmapped", "allow_failure", "quote", "opaque"),
    **_same(_TR, "prefect.context", "tags"),
    **_same(_TR, "prefect.logging", "get_run_logger"),
    **_same(_TR, "prefect.logging.loggers", "get_run_logger"),
    **_same(_TR, "prefect.exceptions", *_ERRORS),
    **_same(_STATES, "prefect.states", *_STATE_NAMES, "StateType"),
    **_same(_TR, "prefect.client.schemas", "State", "StateType"),
    **_same(_TR, "prefect.client.schemas.objects", "State", "StateType"),
    # runners
    **_same(_THREADS, "prefect.task_runners", "ThreadPoolTaskRunner"),
    **_same(_PROCESSES, "prefect.task_runners", "ProcessPoolTaskRunner"),
    # prefect-dask
    **_same(_DASK, "prefect_dask", "DaskTaskRunner", "get_dask_client"),
    **_same(_DASK, "prefect_dask.task_runners", "DaskTaskRunner"),
    **_same(_DASK, "prefect_dask.utils", "get_dask_client"),
    "prefect_dask.task_runners.PrefectDaskFuture": (_TR, "Future"),
    # prefect-ray
    **_same(_RAY, "prefect_ray", "RayTaskRunner", "remote_options"),
    **_same(_RAY, "prefect_ray.task_runners", "RayTaskRunner"),
    **_same(_RAY, "prefect_ray.context", "remote_options"),
    "prefect_ray.task_runners.PrefectRayFuture": (_TR, "Future"),
}

MODULES: Mapping[str, str] = {
    "prefect": _TR,
    "prefect.flows": _TR,
    "prefect.tasks": _TR,
    "prefect.futures": _TR,
    "prefect.utilities.annotations": _TR,
    "prefect.states": _STATES,
    "prefect_dask": _DASK,
    "prefect_dask.task_runners": _DASK,
    "prefect_ray": _RAY,
    "prefect_ray.task_runners": _RAY,
    "prefect_ray.context": _RAY,
}

# -- what has no counterpart: the anchors are headings of docs/migrate-command.md -------

DEPLOYMENTS = "deployments-and-serving"
SERVER = "the-server-and-its-records"
BLOCKS = "blocks-variables-and-artifacts"
RESULTS = "results-and-caching"
BACKGROUND = "background-tasks"
RUNNERS = "custom-task-runners"
OPTIONS = "other-options"
OTHER = "other-prefect-apis"

UNSUPPORTED: Mapping[str, str] = {
    "prefect.deployments": DEPLOYMENTS,
    "prefect.deploy": DEPLOYMENTS,
    "prefect.serve": DEPLOYMENTS,
    "prefect.aserve": DEPLOYMENTS,
    "prefect.flow.from_source": DEPLOYMENTS,
    "prefect.flows.flow.from_source": DEPLOYMENTS,
    "prefect.schedules": DEPLOYMENTS,
    "prefect.client.schemas.schedules": DEPLOYMENTS,
    "prefect.workers": DEPLOYMENTS,
    "prefect.runner": DEPLOYMENTS,
    "prefect.docker": DEPLOYMENTS,
    "prefect.blocks": BLOCKS,
    "prefect.variables": BLOCKS,
    "prefect.artifacts": BLOCKS,
    "prefect.cache_policies": RESULTS,
    "prefect.tasks.task_input_hash": RESULTS,
    "prefect.transactions": RESULTS,
    "prefect.transaction": RESULTS,
    "prefect.results": RESULTS,
    "prefect.filesystems": RESULTS,
    "prefect.serializers": RESULTS,
    "prefect.locking": RESULTS,
    "prefect.runtime": SERVER,
    "prefect.client": SERVER,
    "prefect.get_client": SERVER,
    "prefect.events": SERVER,
    "prefect.automations": SERVER,
    "prefect.settings": SERVER,
    "prefect.server": SERVER,
    "prefect.concurrency": SERVER,
    "prefect.pause_flow_run": SERVER,
    "prefect.resume_flow_run": SERVER,
    "prefect.suspend_flow_run": SERVER,
    "prefect.flow_runs": SERVER,
    "prefect.input": SERVER,
    "prefect.task_worker": BACKGROUND,
    "prefect.task_runners.PrefectTaskRunner": BACKGROUND,
    "prefect.futures.PrefectDistributedFuture": BACKGROUND,
    "prefect.task_runners.TaskRunner": RUNNERS,
    "prefect_dask.get_async_dask_client": OTHER,
    "prefect_dask.utils.get_async_dask_client": OTHER,
    "prefect_dask.client": OTHER,
}

#: Keyword -> section, for keywords a counterpart refuses (the default: OPTIONS).
KEYWORD_SECTIONS: Mapping[str, str] = {
    "cache_policy": RESULTS,
    "cache_key_fn": RESULTS,
    "cache_expiration": RESULTS,
    "cache_result_in_memory": RESULTS,
    "refresh_cache": RESULTS,
    "persist_result": RESULTS,
    "result_storage": RESULTS,
    "result_storage_key": RESULTS,
    "result_serializer": RESULTS,
    "on_commit": RESULTS,
    "on_rollback": RESULTS,
    "return_state": OPTIONS,
    "deferred": BACKGROUND,
}

_TASK_KEYWORDS = (
    "name", "description", "tags", "version", "cache_policy", "cache_key_fn", "cache_expiration",
    "task_run_name", "retries", "retry_delay_seconds", "retry_jitter_factor", "persist_result",
    "result_storage", "result_serializer", "result_storage_key", "cache_result_in_memory",
    "timeout_seconds", "log_prints", "refresh_cache", "on_completion", "on_failure", "on_running",
    "on_crashed", "on_rollback", "on_commit", "retry_condition_fn", "viz_return_value", "asset_deps",
)  # fmt: skip
_FLOW_KEYWORDS = (
    "name", "version", "flow_run_name", "retries", "retry_delay_seconds", "task_runner",
    "description", "timeout_seconds", "validate_parameters", "persist_result", "result_storage",
    "result_serializer", "cache_result_in_memory", "log_prints", "on_completion", "on_failure",
    "on_cancellation", "on_crashed", "on_running",
)  # fmt: skip
_DASK_KEYWORDS = (
    "cluster_class", "cluster_kwargs", "adapt_kwargs", "client_kwargs", "address",
    "performance_report_path",
)  # fmt: skip

#: A Prefect callable -> its keywords. Its counterpart comes from `NAMES`; the keywords
#: the counterpart's signature lacks are reported. `.with_options(...)` of a task or
#: flow is checked against the keywords of `prefect.task` or `prefect.flow`.
KEYWORDS: Mapping[str, tuple[str, ...]] = {
    "prefect.task": _TASK_KEYWORDS,
    "prefect.tasks.task": _TASK_KEYWORDS,
    "prefect.flow": _FLOW_KEYWORDS,
    "prefect.flows.flow": _FLOW_KEYWORDS,
    "prefect.task_runners.ThreadPoolTaskRunner": ("max_workers",),
    "prefect.task_runners.ProcessPoolTaskRunner": ("max_workers",),
    "prefect_dask.DaskTaskRunner": _DASK_KEYWORDS,
    "prefect_dask.task_runners.DaskTaskRunner": _DASK_KEYWORDS,
    "prefect_ray.RayTaskRunner": ("address", "init_kwargs"),
    "prefect_ray.task_runners.RayTaskRunner": ("address", "init_kwargs"),
}

#: The same for our own names, so that a second run still reports what is left to do.
OURS_KEYWORDS: Mapping[str, str] = {
    "taskrunners.task": "prefect.task",
    "taskrunners.flow": "prefect.flow",
    "taskrunners_dask.DaskTaskRunner": "prefect_dask.DaskTaskRunner",
    "taskrunners_ray.RayTaskRunner": "prefect_ray.RayTaskRunner",
}

#: Methods of tasks and flows with no counterpart: method -> (which objects, section).
METHODS: Mapping[str, tuple[frozenset[str], str]] = {
    "serve": (frozenset({"flow", "task"}), DEPLOYMENTS),
    "deploy": (frozenset({"flow"}), DEPLOYMENTS),
    "to_deployment": (frozenset({"flow"}), DEPLOYMENTS),
    "from_source": (frozenset({"flow"}), DEPLOYMENTS),
    "delay": (frozenset({"task"}), BACKGROUND),
    "apply_async": (frozenset({"task"}), BACKGROUND),
    "visualize": (frozenset({"flow"}), OTHER),
}

#: Keywords of task methods that taskrunners refuses: (method, keyword) -> section.
METHOD_KEYWORDS: Mapping[tuple[str, str], str] = {
    ("submit", "return_state"): OPTIONS,
    ("map", "return_state"): OPTIONS,
    ("map", "deferred"): BACKGROUND,
}

#: Attributes of futures: Prefect's name -> ours (a dotted path is a chain of attributes).
ATTRIBUTES: Mapping[str, str] = {
    "wrapped_future": "native",
    "task_run_id": "task_run.id",
}
