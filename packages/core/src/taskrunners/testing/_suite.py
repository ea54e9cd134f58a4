"""`TaskRunnerTests`: the behaviour every task runner must show, as pytest tests.

A runner's test module subclasses `TaskRunnerTests` and provides one fixture,
`task_runner`, that returns an unstarted runner::

    import pytest
    from taskrunners.testing import TaskRunnerTests
    from my_package import MyTaskRunner

    class TestMyTaskRunner(TaskRunnerTests):
        @pytest.fixture
        def task_runner(self):
            return MyTaskRunner(workers=2)

Every test runs flows on duplicates of that runner, with a hard deadline, so a broken
runner fails instead of hanging. The suite assumes the runner can execute at least two
runs at the same time (a pool of two workers is enough). Tasks synchronise through signal
files (see `tasks`), never through sleeps, so the tests hold for threads, processes and
clusters on this machine alike.

The suite is made of one mixin per concept, each in its own module and each usable
alone (subclass only `SubmitTests`, say, while a runner is young). `TaskRunnerTests` is
their composition: the one entry point, and the one place where a new concept's mixin
is added.
"""

from __future__ import annotations

from ._base import ConformanceBase, requires, run_with_deadline
from ._capabilities import CapabilityTests
from ._dependencies import DependencyTests
from ._flow_exit import FlowExitTests
from ._interrupts import InterruptTests
from ._lifecycle import LifecycleTests
from ._mapping import MappingTests
from ._observability import ObservabilityTests
from ._parity import ParityTests
from ._reliability import ReliabilityTests
from ._report import RunReportTests
from ._retries import RetryAndTimeoutTests
from ._submit import SubmitTests
from ._waiting import WaitingTests

__all__ = ["MIXINS", "TaskRunnerTests", "requires", "run_with_deadline"]

#: The concept mixins that make up `TaskRunnerTests`, in the order their tests run.
#: A new concept gets a module `testing/_<concept>.py` with a `ConformanceBase`
#: subclass, appended here and exported from `taskrunners.testing`.
MIXINS: tuple[type[ConformanceBase], ...] = (
    LifecycleTests,
    SubmitTests,
    DependencyTests,
    MappingTests,
    WaitingTests,
    RetryAndTimeoutTests,
    FlowExitTests,
    CapabilityTests,
    ParityTests,
    ReliabilityTests,
    InterruptTests,
    RunReportTests,
    ObservabilityTests,
)


class TaskRunnerTests(
    # The composition point: one base per concept, in the order of MIXINS.
    LifecycleTests,
    SubmitTests,
    DependencyTests,
    MappingTests,
    WaitingTests,
    RetryAndTimeoutTests,
    FlowExitTests,
    CapabilityTests,
    ParityTests,
    ReliabilityTests,
    InterruptTests,
    RunReportTests,
    ObservabilityTests,
):
    """Conformance tests for a `TaskRunner`: every mixin of the suite. Subclass it and
    provide `task_runner`.

    Class attributes a runner's test class may override (see `ConformanceBase`):
    `capabilities`, `deadline`, `many_runs`, `known_failures`.
    """


assert set(MIXINS) <= set(TaskRunnerTests.__mro__), "every mixin in MIXINS is a base of TaskRunnerTests"
