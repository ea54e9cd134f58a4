"""The conformance suite for task runners.

Subclass `TaskRunnerTests` (the whole suite) in a test module and provide its
`task_runner` fixture::

    import pytest
    from taskrunners.testing import TaskRunnerTests

    class TestMyRunner(TaskRunnerTests):
        @pytest.fixture
        def task_runner(self):
            return MyTaskRunner()

The suite is one mixin per concept (`LifecycleTests`, `SubmitTests`,
`DependencyTests`, `MappingTests`, `WaitingTests`, `RetryAndTimeoutTests`,
`FlowExitTests`, `CapabilityTests`, `ParityTests`, `ReliabilityTests`,
`InterruptTests`, `RunReportTests`, `ObservabilityTests`), each usable alone on a `ConformanceBase`;
`TaskRunnerTests` composes them all (`MIXINS` lists them).

`taskrunners.testing.tasks` holds the suite's tasks (module-level, so that runners
that ship tasks pickle them by reference; they order runs through files, never sleeps),
for a runner's own tests and benchmarks.

This package imports pytest; `import taskrunners` never imports it.

Attributes:
    SUITE_VERSION: The version of the suite's contract. A plugin can state that it
        passes, e.g. "passes taskrunners.testing 2".
"""

from taskrunners import Capability

from . import parity_tasks, tasks
from ._base import ConformanceBase, requires, run_with_deadline
from ._capabilities import CapabilityTests
from ._dependencies import DependencyTests
from ._flow_exit import FlowExitTests
from ._interrupts import InterruptOutcome, InterruptTests, check_interrupted, run_interrupted
from ._lifecycle import LifecycleTests
from ._mapping import MappingTests
from ._observability import ObservabilityTests
from ._parity import ParityTests
from ._reliability import ReliabilityTests
from ._report import RunReportTests
from ._retries import RetryAndTimeoutTests
from ._submit import SubmitTests
from ._suite import MIXINS, TaskRunnerTests
from ._waiting import WaitingTests

SUITE_VERSION = "2"

__all__ = [
    "MIXINS",
    "SUITE_VERSION",
    "Capability",
    "CapabilityTests",
    "ConformanceBase",
    "DependencyTests",
    "FlowExitTests",
    "InterruptOutcome",
    "InterruptTests",
    "LifecycleTests",
    "MappingTests",
    "ObservabilityTests",
    "ParityTests",
    "ReliabilityTests",
    "RetryAndTimeoutTests",
    "RunReportTests",
    "SubmitTests",
    "TaskRunnerTests",
    "WaitingTests",
    "check_interrupted",
    "parity_tasks",
    "requires",
    "run_interrupted",
    "run_with_deadline",
    "tasks",
]
