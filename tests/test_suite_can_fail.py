"""The conformance suite fails a broken runner: the tests aimed at its bug fail.

The suite runs against each runner of `broken_runners.py` in a separate pytest process
(selected by node id, to stay fast), and its JUnit XML report is read back. For each
runner, the tests aimed at its bug must fail and a few unrelated tests must pass: the
runners are broken in one way only, so a failure elsewhere would mean the suite
blames the wrong thing.

Only tests that fail *whatever the timing* are listed. Others may catch a bug by
chance (say, a run that ignores `wait_for` but happens to start late) and are left out.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from taskrunners import State, flow, task
from taskrunners.testing import TaskRunnerTests

HERE = Path(__file__).resolve().parent

#: runner class in broken_runners.py -> (tests that must fail, tests that must pass)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "DropsExceptionsRunner": (
        [
            "test_exception_keeps_its_type_and_message",
            "test_failed_upstream_gives_a_final_state_naming_it",
            "test_retries_rerun_a_failed_task",
            "test_timeout_fails_the_run",
            "test_flow_returning_a_failed_future_fails",
            "test_unobserved_failure_is_named_in_a_warning",
        ],
        [
            "test_submit_returns_a_future_with_the_value",
            "test_map_zips_and_broadcasts",
            "test_interrupt_inside_a_task_crashes_the_run",  # crashed runs are not dropped
        ],
    ),
    "IgnoresWaitForRunner": (
        [
            "test_failed_upstream_gives_a_final_state_naming_it",
            "test_wait_for_holds_a_run_until_its_upstream_is_final",
        ],
        [
            "test_submit_returns_a_future_with_the_value",
            "test_future_as_argument_passes_its_value",  # arguments are still waited for
            "test_map_of_mapped_futures",
        ],
    ),
    "DuplicateIsSelfRunner": (
        [
            "test_duplicate_is_equal_and_distinct",
            "test_flow_runs_on_a_duplicate_not_the_given_instance",
        ],
        [
            "test_submit_returns_a_future_with_the_value",
            "test_runner_used_directly_as_context_manager",
            "test_exception_keeps_its_type_and_message",
        ],
    ),
}

MODULE = """
import pytest

import broken_runners
from taskrunners import State, flow, task
from taskrunners.testing import TaskRunnerTests
"""

CLASS = """

class Test{name}(TaskRunnerTests):
    deadline = 20.0

    @pytest.fixture
    def task_runner(self):
        return broken_runners.{name}(max_workers=4)
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    """Run the selected tests against every broken runner; outcome by (class, test)."""
    directory = tmp_path_factory.mktemp("broken")
    module = directory / "test_broken_runners.py"
    module.write_text(MODULE + "".join(CLASS.format(name=name) for name in EXPECTED))
    (directory / "pytest.ini").write_text("[pytest]\n")
    report = directory / "report.xml"
    selected = [
        f"{module}::Test{name}::{test}"
        for name, (failing, passing) in EXPECTED.items()
        for test in failing + passing
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "TASKRUNNERS_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the suite needs no third-party plugin
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", *selected,
            "-c", str(directory / "pytest.ini"), "--rootdir", str(directory),
            "-p", "no:cacheprovider", "-q", f"--junitxml={report}",
        ],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert report.exists(), done.stdout + done.stderr
    found = {}
    for case in ET.parse(report).iter("testcase"):
        kind = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
        found[(case.get("classname", "").rsplit(".", 1)[-1], case.get("name", ""))] = kind
    assert len(found) == len(selected), done.stdout + done.stderr
    return found


def test_the_named_tests_are_in_the_suite() -> None:
    for failing, passing in EXPECTED.values():
        for name in failing + passing:
            assert callable(getattr(TaskRunnerTests, name, None)), name


@pytest.mark.parametrize("runner", list(EXPECTED))
def test_the_tests_aimed_at_the_bug_fail(outcomes: dict[tuple[str, str], str], runner: str) -> None:
    failing, _ = EXPECTED[runner]
    got = {test: outcomes[(f"Test{runner}", test)] for test in failing}
    assert got == dict.fromkeys(failing, "failed")


@pytest.mark.parametrize("runner", list(EXPECTED))
def test_unrelated_tests_still_pass(outcomes: dict[tuple[str, str], str], runner: str) -> None:
    _, passing = EXPECTED[runner]
    got = {test: outcomes[(f"Test{runner}", test)] for test in passing}
    assert got == dict.fromkeys(passing, "passed")


def _broken_runners() -> Any:
    spec = importlib.util.spec_from_file_location("broken_runners", HERE / "broken_runners.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@task
def fail() -> None:
    raise ValueError("lost")


@task
def gated(gate: threading.Event) -> str:
    assert gate.wait(10), "never released"
    return "gate"


@task
def after() -> str:
    return "after"


def test_each_broken_runner_has_its_bug() -> None:
    """Outside the suite, each bug shows in a small flow: the suite fails for the right reason."""
    broken = _broken_runners()

    @flow(task_runner=broken.DropsExceptionsRunner(max_workers=2))
    def dropped() -> State[Any]:
        future = fail.submit()
        future.wait()
        return future.state

    state = dropped(return_state=True)  # the flow ends in the State it returned
    assert state.is_completed() and state.result() is None

    gate = threading.Event()

    @flow(task_runner=broken.IgnoresWaitForRunner(max_workers=2))
    def unordered() -> tuple[str, bool]:
        first = gated.submit(gate)
        second = after.submit(wait_for=[first])
        value = second.result(timeout=10)  # finishes although `first` still waits
        running = not first.done()
        gate.set()
        return value, running

    assert unordered() == ("after", True)

    runner = broken.DuplicateIsSelfRunner()
    assert runner.duplicate() is runner
