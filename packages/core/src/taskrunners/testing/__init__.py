"""The conformance suite for task runners.

Subclass `TaskRunnerTests` in a test module and provide its `task_runner` fixture::

    import pytest
    from taskrunners.testing import TaskRunnerTests

    class TestMyRunner(TaskRunnerTests):
        @pytest.fixture
        def task_runner(self):
            return MyTaskRunner()

`taskrunners.testing.tasks` holds the suite's tasks (module-level, so that runners
that ship tasks pickle them by reference; they order runs through files, never sleeps),
for a runner's own tests and benchmarks.

This package imports pytest; `import taskrunners` never imports it.

Attributes:
    SUITE_VERSION: The version of the suite's contract. A plugin can state that it
        passes, e.g. "passes taskrunners.testing 1".
"""

from . import tasks
from ._observability import ObservabilityTests
from ._suite import Capability, TaskRunnerTests, requires, run_with_deadline

SUITE_VERSION = "1"

__all__ = [
    "SUITE_VERSION",
    "Capability",
    "ObservabilityTests",
    "TaskRunnerTests",
    "requires",
    "run_with_deadline",
    "tasks",
]
