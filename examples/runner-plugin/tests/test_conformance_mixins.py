"""Only some of the conformance suite: the concept mixins a young runner passes first.

`TaskRunnerTests` (test_conformance.py) is every mixin at once; a runner under
construction can compose just the concepts it handles so far, each mixin being a
`ConformanceBase` with the same `task_runner` fixture and class attributes.
"""

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from taskrunners import Capability
from taskrunners.testing import CapabilityTests, LifecycleTests, SubmitTests
from taskrunners_executor import ExecutorTaskRunner


class TestSubmitAndLifecycleOnly(LifecycleTests, SubmitTests, CapabilityTests):
    """Lifecycle, submit and the capability-gated tests; no mapping, waiting, retries..."""

    capabilities = frozenset({Capability.IN_PROCESS})
    many_runs = 1_000

    @pytest.fixture
    def task_runner(self):
        return ExecutorTaskRunner(partial(ThreadPoolExecutor, max_workers=8))  # room for nesting


def test_the_composition_holds_only_the_chosen_concepts() -> None:
    names = {name for name in dir(TestSubmitAndLifecycleOnly) if name.startswith("test_")}
    assert "test_submit_returns_a_future_with_the_value" in names
    assert "test_runs_share_the_flows_process_memory_and_context" in names
    assert "test_map_zips_and_broadcasts" not in names  # MappingTests is not composed
