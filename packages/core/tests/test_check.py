"""`taskrunners check NAME`: the conformance suite against an installed runner, black-box.

The command runs as a separate process, as a plugin author would run it. Broken runners
are "installed" as fake plugins: a `<name>-<version>.dist-info` directory and a module
written into a temporary directory on `PYTHONPATH` (as in `test_plugins.py`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from taskrunners.testing import SUITE_VERSION, TaskRunnerTests

SUITE_TESTS = sorted(name for name in dir(TaskRunnerTests) if name.startswith("test_"))

PLUGIN = '''
from taskrunners import Capability, State, StateType
from taskrunners.plugins import hookimpl
from taskrunners_threads import ThreadPoolTaskRunner


class DropsExceptions(ThreadPoolTaskRunner):
    """Reports every failed run as completed, with None."""

    capabilities = frozenset({CAPABILITIES})
    known_conformance_failures = {KNOWN}

    def prepare(self, task, parameters, wait_for=None):
        return Dropping(super().prepare(task, parameters, wait_for))


class Dropping:
    def __init__(self, call):
        self.call = call

    def __getattr__(self, name):
        return getattr(self.call, name)

    def run_here(self):
        state = self.call.spec.execute(self.call.upstream_states(), self.call.set_state)
        if state.type is StateType.FAILED:
            state = State(StateType.COMPLETED, data=None)
        self.call.set_state(state)


class NeverRuns(ThreadPoolTaskRunner):
    """Accepts runs and never runs them."""

    def submit(self, task, parameters, wait_for=None):
        return self.prepare(task, parameters, wait_for).future


class NeedsArguments(ThreadPoolTaskRunner):
    """Cannot be made without arguments."""

    def __init__(self, workers):
        super().__init__(max_workers=workers)

    def duplicate(self):
        return type(self)(self.max_workers)


@hookimpl
def taskrunners_runner_class():
    return RUNNER
'''


def install(root: Path, runner: str, cls: str, known: str = "", capabilities: str = "") -> None:
    """Install a fake distribution whose runner `runner` is the class `cls` of PLUGIN."""
    module = f"fake_check_{runner.replace('-', '_')}"
    source = PLUGIN.replace("RUNNER", cls).replace("{KNOWN}", "{" + known + "}")
    source = source.replace("{CAPABILITIES}", "{" + capabilities + "}")
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"fake_check_{runner.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-check-{runner}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[taskrunners.runners]\n{runner} = {module}\n")


def check(*args: str, pythonpath: Path | None = None, script: bool = False) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "TASKRUNNERS_RUNNER")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    if script:
        command = [str(Path(sys.executable).parent / "taskrunners")]
        if not Path(command[0]).exists():
            pytest.skip(f"the taskrunners console script is not installed next to {sys.executable}")
    else:
        command = [sys.executable, "-m", "taskrunners"]
    return subprocess.run([*command, "check", *args], capture_output=True, text=True, env=env, timeout=240)


def table(stdout: str) -> dict[str, tuple[str, str]]:
    """The rows of the printed table: test name -> (result, detail)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["TEST", "RESULT", "DETAIL"])
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        name, result, *detail = line.split(maxsplit=2)
        assert name not in rows, f"{name} reported twice"
        rows[name] = (result, detail[0] if detail else "")
    return rows


def test_threads_passes_the_whole_suite() -> None:
    done = check("threads", "--many-runs", "200", "--one-worker", "max_workers=1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"taskrunners conformance suite {SUITE_VERSION}: runner 'threads'" in done.stdout
    assert "capabilities: in-process" in done.stdout
    rows = table(done.stdout)
    assert sorted(rows) == SUITE_TESTS  # every test of the suite, once
    skipped = {name: detail for name, (result, detail) in rows.items() if result == "skipped"}
    assert {result for result, _ in rows.values()} == {"passed", "skipped"}
    lacks = "the runner lacks the capability "
    assert skipped == {
        "test_runs_execute_at_once_in_separate_processes": lacks + "parallel",
        "test_worker_loss_crashes_only_that_run": lacks + "survives-worker-loss",
        "test_worker_loss_is_retried_when_the_task_asks": lacks + "survives-worker-loss",
        "test_an_argument_that_cannot_be_pickled_fails_its_run_naming_it": lacks + "out-of-process",
        "test_a_return_value_that_cannot_be_pickled_fails_its_run_naming_it": lacks + "out-of-process",
        "test_future_list_result_timeout_bounds_fetching_values": lacks + "native-dependencies",
        "test_a_large_result_goes_worker_to_worker_not_through_the_flow": lacks + "native-dependencies",
        "test_resource_requests_limit_what_runs_at_once": lacks + "resource-requests",
    }
    assert rows["test_nested_submission_with_one_worker"] == ("passed", "")
    assert rows["test_runs_share_the_flows_process_memory_and_context"] == ("passed", "")
    passed = len(SUITE_TESTS) - len(skipped)
    assert f"{passed} passed, {len(skipped)} skipped, 0 xfailed, 0 failed in " in done.stdout


def test_the_console_script_and_k_select_tests_and_one_worker_tests_skip_without_it() -> None:
    done = check("threads", "-k", "map_zips or one_worker", script=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert table(done.stdout) == {
        "test_map_zips_and_broadcasts": ("passed", ""),
        "test_nested_submission_with_one_worker": (
            "skipped",
            "no one-worker configuration given (taskrunners check --one-worker KEY=VALUE)",
        ),
    }
    assert "1 passed, 1 skipped, 0 xfailed, 0 failed in " in done.stdout


def test_a_broken_runner_fails_with_the_error_named(tmp_path: Path) -> None:
    install(tmp_path, "drops", "DropsExceptions")
    selected = "exception_keeps or flow_returning_a_failed or submit_returns or map_zips"
    done = check("drops", "-k", selected, pythonpath=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout and "def test_" not in done.stdout  # the table only
    rows = table(done.stdout)
    assert rows["test_submit_returns_a_future_with_the_value"] == ("passed", "")
    assert rows["test_map_zips_and_broadcasts"] == ("passed", "")
    result, detail = rows["test_exception_keeps_its_type_and_message"]
    assert result == "failed" and detail.startswith("Failed: DID NOT RAISE") and "ConformanceError" in detail
    result, detail = rows["test_flow_returning_a_failed_future_fails"]
    assert result == "failed" and detail.startswith("AssertionError")
    assert "2 passed, 0 skipped, 0 xfailed, 2 failed in " in done.stdout

    verbose = check("drops", "-k", "exception_keeps", "--verbose", pythonpath=tmp_path)
    assert verbose.returncode == 1
    assert table(verbose.stdout) == {
        "test_exception_keeps_its_type_and_message": rows["test_exception_keeps_its_type_and_message"]
    }
    assert "def test_exception_keeps_its_type_and_message" in verbose.stdout  # pytest's own report


def test_known_failures_are_xfailed_and_a_declared_capability_is_tested(tmp_path: Path) -> None:
    install(
        tmp_path,
        "drops-known",
        "DropsExceptions",
        known='"test_exception_keeps_its_type_and_message": "drops exceptions on purpose"',
        capabilities="Capability.PARALLEL",
    )
    selected = "exception_keeps or separate_processes or map_zips"
    done = check("drops-known", "-k", selected, pythonpath=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "capabilities: parallel" in done.stdout
    assert "known failures: test_exception_keeps_its_type_and_message" in done.stdout
    rows = table(done.stdout)
    assert rows["test_exception_keeps_its_type_and_message"] == ("xfailed", "drops exceptions on purpose")
    assert rows["test_map_zips_and_broadcasts"] == ("passed", "")
    # It claims parallel processes and runs threads: the test of the claim runs, and fails.
    result, detail = rows["test_runs_execute_at_once_in_separate_processes"]
    assert result == "failed" and detail.startswith("AssertionError")


def test_a_known_failure_that_passes_fails(tmp_path: Path) -> None:
    install(
        tmp_path, "wrongly-known", "DropsExceptions", known='"test_map_zips_and_broadcasts": "thought broken"'
    )
    done = check("wrongly-known", "-k", "map_zips", pythonpath=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert table(done.stdout) == {
        "test_map_zips_and_broadcasts": ("failed", "[XPASS(strict)] thought broken")
    }


def test_a_runner_that_hangs_fails_instead_of_hanging(tmp_path: Path) -> None:
    install(tmp_path, "never", "NeverRuns")
    done = check("never", "--deadline", "0.25", "-k", "submit_returns or used_directly", pythonpath=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    rows = table(done.stdout)
    assert rows["test_submit_returns_a_future_with_the_value"] == (
        "failed",
        "Failed: the flow did not finish within 0.25 s: the runner hangs",
    )
    # Outside a flow (the runner's __exit__ waits for a run that never ends): the hard limit.
    assert rows["test_runner_used_directly_as_context_manager"] == (
        "failed",
        "taskrunners.testing._check.HungTest: the test ran past its hard limit of 1 s: the runner hangs",
    )


def test_a_runner_that_needs_arguments_gets_them_from_runner_arg(tmp_path: Path) -> None:
    install(tmp_path, "needs-args", "NeedsArguments")
    done = check("needs-args", "-k", "map_zips", pythonpath=tmp_path)
    assert done.returncode == 2
    assert "cannot make the runner fake_check_needs_args.NeedsArguments(): TypeError" in done.stderr
    assert "--runner-arg KEY=VALUE" in done.stderr

    done = check("needs-args", "-k", "map_zips", "--runner-arg", "workers=2", pythonpath=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fake_check_needs_args.NeedsArguments(workers=2)" in done.stdout
    assert table(done.stdout) == {"test_map_zips_and_broadcasts": ("passed", "")}


def test_an_unknown_runner_exits_2_with_the_lookup_error() -> None:
    done = check("no-such-runner")
    assert done.returncode == 2
    assert "no task runner named 'no-such-runner' is installed" in done.stderr
    assert done.stdout == ""


def test_no_selected_test_exits_2() -> None:
    done = check("threads", "-k", "no_test_is_called_this")
    assert done.returncode == 2
    assert "no conformance test ran: no test matched -k 'no_test_is_called_this'" in done.stdout


def test_bad_options_are_usage_errors() -> None:
    for args in (
        ["threads", "--runner-arg", "no-equals"],
        ["threads", "--deadline", "0"],
        ["threads", "--many-runs", "x"],
    ):
        done = check(*args)
        assert done.returncode == 2 and "usage:" in done.stderr, args
