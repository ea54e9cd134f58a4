"""`taskrunners check NAME`: the conformance suite against an installed runner, black-box.

The runner class is found by name (`taskrunners.plugins.load_runner`), a test class
deriving from `TaskRunnerTests` is made for it, and pytest runs that class in this
process from a temporary test module, isolated from the current directory: its own
`pytest.ini`, no `conftest.py`, no cache, and no third-party pytest plugins. Each test's
outcome is collected and printed as one table.

Exit status: 0 when no test failed, 1 when one did, 2 when the suite could not run (the
runner does not load or cannot be made, or no test was selected).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pytest

from taskrunners import TaskRunner

from . import SUITE_VERSION
from ._suite import TaskRunnerTests

__all__ = ["CheckConfig", "Outcome", "check", "make_test_class"]

#: A test may run this many times the per-flow deadline before it is stopped (a test
#: runs at most three flows one after the other).
HARD_LIMIT_FACTOR = 4

#: Longest detail shown in the table; the full text is in `--verbose`.
_DETAIL_WIDTH = 100

_ORDER = ("passed", "skipped", "xfailed", "failed")


@dataclass
class CheckConfig:
    """What `check` runs the suite against.

    Attributes:
        runner_class: The runner class under test.
        runner_kwargs: Keyword arguments for every runner the suite makes.
        one_worker_kwargs: Extra keyword arguments for a runner that runs one task at
            a time, or `None` to skip the tests that need one.
        deadline: Seconds a single flow may take (`TaskRunnerTests.deadline`), or `None`.
        many_runs: Runs in the "many runs" test (`TaskRunnerTests.many_runs`), or `None`.
    """

    runner_class: type[TaskRunner]
    runner_kwargs: Mapping[str, Any] = field(default_factory=dict)
    one_worker_kwargs: Mapping[str, Any] | None = None
    deadline: float | None = None
    many_runs: int | None = None


@dataclass
class Outcome:
    """The outcome of one conformance test: `passed`, `skipped`, `xfailed` or `failed`."""

    name: str
    outcome: str
    detail: str = ""


#: The configuration of the running check, read by the generated test module.
_config: CheckConfig | None = None


def make_test_class(config: CheckConfig) -> type[TaskRunnerTests]:
    """A `TaskRunnerTests` subclass whose fixtures make runners as `config` says."""
    cls = config.runner_class
    kwargs = dict(config.runner_kwargs)

    def task_runner(self: Any) -> TaskRunner:
        return cls(**kwargs)

    def task_runner_with_one_worker(self: Any) -> TaskRunner:
        if config.one_worker_kwargs is None:
            pytest.skip("no one-worker configuration given (taskrunners check --one-worker KEY=VALUE)")
        return cls(**{**kwargs, **config.one_worker_kwargs})

    attributes: dict[str, Any] = {
        "task_runner": pytest.fixture(task_runner),
        "task_runner_with_one_worker": pytest.fixture(task_runner_with_one_worker),
    }
    if config.deadline is not None:
        attributes["deadline"] = config.deadline
    if config.many_runs is not None:
        attributes["many_runs"] = config.many_runs
    return type(f"Test{cls.__name__}", (TaskRunnerTests,), attributes)


def check(
    name: str,
    *,
    runner_kwargs: Mapping[str, Any] | None = None,
    one_worker_kwargs: Mapping[str, Any] | None = None,
    keyword: str | None = None,
    deadline: float | None = None,
    many_runs: int | None = None,
    verbose: bool = False,
    out: TextIO | None = None,
) -> int:
    """Run the conformance suite against the installed runner `name`; print a table.

    Args:
        name: The runner's name, as its entry point declares it.
        runner_kwargs: Keyword arguments for the runner class.
        one_worker_kwargs: Keyword arguments (over `runner_kwargs`) that make the runner
            run one task at a time; without them the tests that need it are skipped.
        keyword: A pytest `-k` expression selecting tests.
        deadline: Seconds one flow may take before its test fails.
        many_runs: How many runs the "many runs" test submits.
        verbose: Also print pytest's own report, with tracebacks.
        out: Where to print (standard output by default).

    Returns:
        The exit status: 0 when no test failed, 1 when one did, 2 when the suite could
        not run.
    """
    global _config
    out = out if out is not None else sys.stdout
    from taskrunners.plugins import load_runner

    try:
        cls = load_runner(name)
    except Exception as exc:  # noqa: BLE001 - RunnerLookupError, PluginLoadError: say so, do not trace
        print(f"taskrunners check: {exc}", file=sys.stderr)
        return 2
    kwargs = dict(runner_kwargs or {})
    described = f"{cls.__module__}.{cls.__qualname__}({_arguments(kwargs)})"
    try:
        cls(**kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever the constructor raises is reported, not traced
        print(
            f"taskrunners check: cannot make the runner {described}: {type(exc).__name__}: {exc}. "
            "Pass its arguments with --runner-arg KEY=VALUE.",
            file=sys.stderr,
        )
        return 2
    config = CheckConfig(cls, kwargs, one_worker_kwargs, deadline, many_runs)
    limit = (deadline if deadline is not None else TaskRunnerTests.deadline) * HARD_LIMIT_FACTOR
    known = cls.known_conformance_failures
    print(f"taskrunners conformance suite {SUITE_VERSION}: runner {name!r} = {described}", file=out)
    print(f"capabilities: {', '.join(sorted(c.value for c in cls.capabilities)) or 'none'}", file=out)
    print(f"known failures: {', '.join(sorted(known)) or 'none'}", file=out)
    print(file=out)

    collector = _Collector(limit)
    report = io.StringIO()
    started = time.monotonic()
    _config = config
    try:
        with tempfile.TemporaryDirectory(prefix="taskrunners-check-") as directory:
            args = _pytest_args(Path(directory), cls.__name__, keyword)
            with _isolated_environment(), contextlib.redirect_stdout(report):
                status = pytest.main(args, plugins=[collector])
    finally:
        _config = None
    elapsed = time.monotonic() - started

    outcomes = collector.outcomes()
    if verbose or (not outcomes and status not in (0, 5)):
        print(report.getvalue(), file=out)  # pytest's own report, tracebacks included
    if outcomes:
        _print_table(outcomes, out)
    counts = {kind: sum(1 for o in outcomes if o.outcome == kind) for kind in _ORDER}
    summary = ", ".join(f"{counts[kind]} {kind}" for kind in _ORDER)
    if not outcomes:
        why = f"no test matched -k {keyword!r}" if keyword else f"pytest exited with status {int(status)}"
        print(f"no conformance test ran: {why}", file=out)
        return 2
    print(f"\n{summary} in {elapsed:.1f} s", file=out)
    return 1 if counts["failed"] else 0


def _arguments(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items())


def _pytest_args(directory: Path, class_name: str, keyword: str | None) -> list[str]:
    """Write the test module and its ini file into `directory`; pytest's arguments."""
    ini = directory / "pytest.ini"
    ini.write_text("[pytest]\nxfail_strict = true\n")
    module = directory / "test_taskrunners_conformance.py"
    module.write_text(
        textwrap.dedent(
            f"""\
            from taskrunners.testing import _check

            Test{class_name} = _check.make_test_class(_check._config)
            """
        )
    )
    args = [
        str(module),
        "-c",
        str(ini),
        "--rootdir",
        str(directory),
        "--import-mode=importlib",
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-rA",
        "--color=no",
    ]
    if keyword:
        args += ["-k", keyword]
    return args


@contextlib.contextmanager
def _isolated_environment() -> Iterator[None]:
    """No PYTEST_ADDOPTS from the caller, and no auto-loaded third-party plugins."""
    saved = {key: os.environ.get(key) for key in ("PYTEST_ADDOPTS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    os.environ.pop("PYTEST_ADDOPTS", None)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class HungTest(Exception):
    """A conformance test ran past its hard limit (the runner hangs outside a flow)."""


class _Collector:
    """A pytest plugin: records each test's outcome, and stops a test that hangs."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._results: dict[str, Outcome] = {}

    def outcomes(self) -> list[Outcome]:
        return list(self._results.values())

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: Any) -> Iterator[None]:
        # A flow that hangs is caught by the suite's own deadline; this catches a test
        # that hangs outside one (say, in a runner's __exit__), where the platform allows.
        armed = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        if armed:
            limit = self.limit

            def expire(signum: int, frame: Any) -> None:
                raise HungTest(f"the test ran past its hard limit of {limit:g} s: the runner hangs")

            previous = signal.signal(signal.SIGALRM, expire)
            signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            yield
        finally:
            if armed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self._results[report.nodeid] = Outcome(
                report.nodeid or "(collection)", "failed", f"collection error: {_first_line(report)}"
            )

    def pytest_runtest_logreport(self, report: Any) -> None:
        name = report.nodeid.rsplit("::", 1)[-1]
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.passed:
                self._results[report.nodeid] = Outcome(name, "passed")
            elif report.skipped and hasattr(report, "wasxfail"):
                self._results[report.nodeid] = Outcome(name, "xfailed", report.wasxfail)
            elif report.skipped:
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                self._results[report.nodeid] = Outcome(name, "skipped", reason.removeprefix("Skipped: "))
            else:
                where = "" if report.when == "call" else "error in setup: "
                self._results[report.nodeid] = Outcome(name, "failed", where + _first_line(report))
        elif report.when == "teardown" and report.failed:
            self._results[report.nodeid] = Outcome(
                name, "failed", "error in teardown: " + _first_line(report)
            )


def _first_line(report: Any) -> str:
    """The first line of a failed report's error: the exception and its message."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def _print_table(outcomes: list[Outcome], out: TextIO) -> None:
    width = max(len("TEST"), *(len(o.name) for o in outcomes))
    print(f"{'TEST'.ljust(width)}  {'RESULT':<7}  DETAIL", file=out)
    for o in outcomes:
        detail = o.detail if len(o.detail) <= _DETAIL_WIDTH else o.detail[: _DETAIL_WIDTH - 3] + "..."
        print(f"{o.name.ljust(width)}  {o.outcome:<7}  {detail}".rstrip(), file=out)
