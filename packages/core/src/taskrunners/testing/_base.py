"""The base of the conformance suite's mixins: fixtures, the capability gate, helpers."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar, TypeVar

import pytest

from taskrunners import (
    Capability,
    TaskRunner,
    flow,
)

__all__ = ["ConformanceBase", "requires", "run_with_deadline"]

F = TypeVar("F", bound=Callable[..., Any])


def requires(*capabilities: Capability) -> Callable[[F], F]:
    """Mark a test of the suite as needing `capabilities` of the runner.

    A test so marked is skipped, naming what is missing, on a runner that does not
    declare them all.
    """

    def mark(test: F) -> F:
        test._requires = frozenset(capabilities)  # type: ignore[attr-defined]
        return test

    return mark


class ConformanceBase:
    """What every mixin of the suite shares: the fixtures, the capability gate, `run_flow`.

    Subclass `TaskRunnerTests` (all of the suite) or any of its mixins, and provide
    `task_runner`.

    Class attributes a runner's test class may override:

    Attributes:
        capabilities: What the runner can do beyond the basics (see `Capability`);
            `None` (the default) takes what the runner class declares in its own
            `capabilities` attribute.
        deadline: Seconds a single flow in a test may take before the test fails.
        many_runs: How many runs the "many runs" test submits.
        known_failures: Test names mapped to the reason they fail on this runner;
            each is applied as a strict xfail, so a fixed test is noticed. Added to
            those the runner class declares in `known_conformance_failures`.
    """

    capabilities: ClassVar[frozenset[Capability] | None] = None
    deadline: ClassVar[float] = 60.0
    many_runs: ClassVar[int] = 10_000
    known_failures: ClassVar[dict[str, str]] = {}

    @pytest.fixture
    def task_runner(self) -> TaskRunner:
        """Return an unstarted instance of the runner under test."""
        raise NotImplementedError(
            "subclass TaskRunnerTests and define a `task_runner` fixture (decorated with "
            "@pytest.fixture) that returns an unstarted runner"
        )

    @pytest.fixture
    def task_runner_with_one_worker(self) -> TaskRunner | None:
        """Return an unstarted runner that runs one task at a time, if it has such a setting.

        The default, `None`, skips the tests that need it.
        """
        return None

    @pytest.fixture
    def resource_limited_runner(self) -> tuple[TaskRunner, Callable[[], AbstractContextManager[Any]]] | None:
        """For `Capability.RESOURCE_REQUESTS`: an unstarted runner, and a function that
        returns a context manager under which each run submitted asks for the whole of
        a resource the runner has one unit of (so such runs run one at a time, though
        the runner has room for two runs otherwise).

        For example, on Dask: a LocalCluster of one worker with two threads and
        `resources={"slot": 1}`, and `lambda: dask_options(resources={"slot": 1})`.
        The default, `None`, skips the test that needs it, saying so.
        """
        return None

    @pytest.fixture(autouse=True)
    def _apply_capabilities_and_known_failures(self, request: pytest.FixtureRequest) -> None:
        runner = request.getfixturevalue("task_runner")  # an instance may differ from its class
        declared = self.capabilities if self.capabilities is not None else runner.capabilities
        needed: frozenset[Capability] = getattr(request.function, "_requires", frozenset())
        missing = sorted(Capability(c).value for c in set(needed) - {Capability(c) for c in declared})
        if missing:
            pytest.skip(f"the runner lacks the capability {', '.join(missing)}")
        name = getattr(request.node, "originalname", request.node.name)
        reason = {**runner.known_conformance_failures, **self.known_failures}.get(name)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))

    @pytest.fixture
    def signals(self, tmp_path: Any) -> str:
        """A directory for the signal files of one test."""
        return str(tmp_path)

    # -- helpers ----------------------------------------------------------------------

    def run_flow(self, task_runner: TaskRunner, body: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `body` as a flow on `task_runner`, failing the test past `deadline`.

        Returns what `body` returned, even a collection of States that includes failed
        ones (which makes the flow run FAILED, as in Prefect); raises what `body` raised.
        """
        run = flow(task_runner=task_runner)(body)
        if "return_state" in kwargs:
            return run_with_deadline(run, self.deadline, *args, **kwargs)
        state = run_with_deadline(run, self.deadline, *args, return_state=True, **kwargs)
        if state.is_completed():
            return state.result()
        value = state.result(raise_on_failure=False)
        if value is state.exception:
            raise value
        return value


def run_with_deadline(fn: Callable[..., Any], deadline: float, *args: Any, **kwargs: Any) -> Any:
    """Call `fn(*args, **kwargs)` in a thread; fail the test if it runs past `deadline`."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, fn(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="taskrunners-conformance", daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        pytest.fail(f"the flow did not finish within {deadline} s: the runner hangs", pytrace=False)
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def _resources() -> dict[str, int]:
    """Threads, child processes and open file descriptors of this process (Linux)."""
    me = os.getpid()
    children = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                children += 1
    return {
        "threads": threading.active_count(),
        "children": children,
        "files": len(os.listdir("/proc/self/fd")),
    }
