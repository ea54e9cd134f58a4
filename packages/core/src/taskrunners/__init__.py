"""taskrunners: run the tasks of a workflow concurrently, in parallel, or on a cluster.

Decorate functions with `@task` and `@flow`; inside a flow, `.submit()` and `.map()`
hand task runs to the flow's task runner and return futures. Runners are plugins
(threads by default; processes, Dask and Ray as extras).
"""

from . import states
from ._engine import TaskRunInfo
from ._errors import (
    DefinitionError,
    DependencyError,
    FailedRun,
    FlowTimeoutError,
    MappingError,
    MappingLengthMismatch,
    MappingMissingIterable,
    NoActiveFlowError,
    NotSerializableError,
    ParameterError,
    PluginLoadError,
    RemoteError,
    ReservedArgumentError,
    RunnerLifecycleError,
    RunnerLookupError,
    TaskRunCancelled,
    TaskRunCrashed,
    TaskRunnersError,
    TaskRunnersWarning,
    TaskTimeoutError,
    UnobservedFailureWarning,
    UpstreamFailedError,
    WaitTimeout,
)
from ._flowrun import FlowRunInfo
from ._flows import Flow, flow
from ._futures import DoneAndNotDone, Future, FutureList, as_completed, wait
from ._interrupts import Terminated
from ._logging import get_run_logger
from ._quote import opaque, quote
from ._retries import exponential_backoff
from ._runner import Capability, TaskRunner
from ._states import State, StateType
from ._tags import tags
from ._tasks import Task, task
from ._tracebacks import RemoteTraceback
from ._walk import allow_failure, unmapped

__version__ = "0.1.0"

__all__ = [
    # the programming model
    "task",
    "flow",
    "Task",
    "Flow",
    "Future",
    "FutureList",
    "State",
    "StateType",
    "wait",
    "as_completed",
    "DoneAndNotDone",
    "unmapped",
    "allow_failure",
    "quote",
    "opaque",
    "tags",
    "exponential_backoff",
    "states",
    "TaskRunInfo",
    "FlowRunInfo",
    "get_run_logger",
    "RemoteTraceback",
    # for runner plugins (the rest of their API is in taskrunners.lowlevel)
    "TaskRunner",
    "Capability",
    # errors and warnings (see taskrunners._errors for the tree)
    "TaskRunnersError",
    "DefinitionError",
    "ReservedArgumentError",
    "ParameterError",
    "MappingError",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "DependencyError",
    "NoActiveFlowError",
    "NotSerializableError",
    "RunnerLifecycleError",
    "RunnerLookupError",
    "PluginLoadError",
    "RemoteError",
    "UpstreamFailedError",
    "TaskRunCrashed",
    "TaskRunCancelled",
    "TaskTimeoutError",
    "WaitTimeout",
    "FailedRun",
    "FlowTimeoutError",
    "Terminated",
    "TaskRunnersWarning",
    "UnobservedFailureWarning",
    "__version__",
]
