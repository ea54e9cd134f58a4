"""The runner-author API (`taskrunners.lowlevel`): what a runner may build on.

Each test drives a small runner written here with the public API only, the way a
third-party plugin would, and checks one promise of the contract.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import taskrunners
from taskrunners import (
    Future,
    RunnerLifecycleError,
    RunnerLookupError,
    State,
    StateType,
    Task,
    TaskRunCrashed,
    TaskRunInfo,
    TaskRunner,
    TaskRunnersError,
    UnobservedFailureWarning,
    flow,
    task,
)
from taskrunners.lowlevel import (
    DeferredState,
    PreparedRun,
    RunOptions,
    RunSpec,
    StateFields,
    blocking,
    current_runner,
    current_task_run,
    dumps,
    lending,
    loads,
    using_runner,
)

LONG = 30


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def boom() -> None:
    raise ValueError("boom")


class InlineRunner(TaskRunner):
    """Runs each run in the submitting thread once its upstream runs are final."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def duplicate(self) -> InlineRunner:
        return InlineRunner()

    def start(self) -> None:
        self.events.append("start")

    def shutdown(self, interrupted: bool) -> None:
        self.events.append(f"shutdown interrupted={interrupted}")

    def submit(
        self, task: Task[Any, Any], parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> Future[Any]:
        run = self.prepare(task, parameters, wait_for)
        run.when_ready(lambda ready: ready.run_here())
        return run.future


class HoldingRunner(InlineRunner):
    """Keeps every run until `release()`; an interrupt takes back the unstarted ones."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[PreparedRun] = []

    def duplicate(self) -> HoldingRunner:
        return HoldingRunner()

    def submit(
        self, task: Task[Any, Any], parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> Future[Any]:
        run = self.prepare(task, parameters, wait_for)
        self.held.append(run)
        return run.future

    def take_back_unstarted(self) -> list[PreparedRun]:
        taken, self.held = self.held, []
        return taken


# -- lifecycle -----------------------------------------------------------------------------


def test_the_base_calls_start_and_shutdown_around_the_block() -> None:
    runner = InlineRunner()
    with runner:
        assert runner.started and runner.events == ["start"]
        assert runner.submit(add, {"x": 1, "y": 2}).result(timeout=LONG) == 3
    assert not runner.started
    assert runner.events == ["start", "shutdown interrupted=False"]


def test_a_start_that_raises_leaves_the_runner_unstarted_and_enterable_again() -> None:
    class FailsOnce(InlineRunner):
        attempts = 0

        def start(self) -> None:
            type(self).attempts += 1
            if type(self).attempts == 1:
                raise OSError("no cluster here")
            super().start()

    runner = FailsOnce()
    with pytest.raises(OSError, match="no cluster here"):
        runner.__enter__()
    assert not runner.started
    with pytest.raises(RunnerLifecycleError, match="not started"):
        runner.submit(add, {"x": 1, "y": 1})
    with runner:  # not "already started"
        assert runner.submit(add, {"x": 1, "y": 1}).result(timeout=LONG) == 2
    assert runner.events == ["start", "shutdown interrupted=False"]


def test_an_interrupt_crashes_the_runs_taken_back_and_shuts_down_interrupted() -> None:
    runner = HoldingRunner()
    with pytest.raises(KeyboardInterrupt):
        with runner:
            future = runner.submit(add, {"x": 1, "y": 1})
            raise KeyboardInterrupt
    state = future.state
    assert state.is_crashed() and "interrupted by SIGINT (Ctrl-C) before the run finished" in str(
        state.exception
    )
    assert runner.events == ["start", "shutdown interrupted=True"]
    assert not runner.started


def test_runs_still_open_after_an_interrupted_wait_are_abandoned() -> None:
    """A second interrupt while the base waits for running runs: nothing stays open."""

    class CannotWithdraw(HoldingRunner):
        def take_back_unstarted(self) -> list[PreparedRun]:
            return []  # its runs count as started: the base waits for them

        def wait_idle(self, timeout: float | None = None) -> bool:
            raise KeyboardInterrupt  # stands for the second Ctrl-C, during that wait

    runner = CannotWithdraw()
    with pytest.raises(KeyboardInterrupt):
        with runner:
            future = runner.submit(add, {"x": 1, "y": 1})
    assert future.done() and future.state.is_crashed()
    assert "interrupted" in str(future.state.exception)
    assert runner.events == ["start", "shutdown interrupted=True"]
    assert runner.open_runs() == [] and not runner.started


def test_abandon_crashes_every_open_run_with_the_reason() -> None:
    runner = HoldingRunner()
    with pytest.warns(UnobservedFailureWarning, match="the cluster went away"), runner:
        futures = [runner.submit(add, {"x": i, "y": 1}) for i in range(3)]
        assert len(runner.open_runs()) == 3
        assert runner.abandon("the cluster went away") == 3
        assert runner.abandon("again") == 0  # final runs stay as they are
        assert runner.open_runs() == []
    for future in futures:
        with pytest.raises(TaskRunCrashed, match="the cluster went away"):
            future.result()


# -- prepared runs and specs -------------------------------------------------------------------


def test_a_prepared_run_refuses_to_pickle_and_its_spec_round_trips() -> None:
    runner = HoldingRunner()
    with runner:
        upstream = runner.submit(add, {"x": 1, "y": 1})
        downstream = runner.submit(add, {"x": upstream, "y": 10})
        run = runner.held[1]
        assert run.future is downstream and run.upstream == (upstream,)
        with pytest.raises(TypeError, match="ship its `spec`"):
            pickle.dumps(run)
        copy = pickle.loads(pickle.dumps(run.spec))
        assert copy.info.name == run.info.name and copy.info.id == run.info.id
        assert RunSpec.from_wire(run.spec.to_wire()).upstream_runs[0].id == upstream.task_run.id
        runner.held[0].run_here()
        assert copy.execute(run.upstream_states()).result() == 12
        run.set_state(copy.execute(run.upstream_states()))
    assert downstream.result() == 12


def test_a_list_of_specs_pickles_their_shared_task_once() -> None:
    runner = HoldingRunner()
    with runner:
        for i in range(50):
            runner.submit(add, {"x": i, "y": 1})
        specs = [run.spec for run in runner.held]
        one = len(dumps([specs[0]]))
        fifty = len(dumps(specs))
        assert fifty < 50 * one / 2
        assert [spec.execute().result() for spec in loads(dumps(specs))] == [i + 1 for i in range(50)]
        for run in runner.held:
            run.run_here()


def test_wire_forms_refuse_what_they_did_not_make() -> None:
    with pytest.raises(ValueError, match="RunSpec"):
        RunSpec.from_wire((1, 2))
    with pytest.raises(ValueError, match="TaskRunInfo"):
        TaskRunInfo.from_wire(("x",))


def test_set_state_and_crash_leave_a_final_run_as_it_is() -> None:
    runner = HoldingRunner()
    with runner:
        future = runner.submit(add, {"x": 1, "y": 1})
        run = runner.held.pop()
        assert run.set_state(State(StateType.COMPLETED, data=2))
        assert not run.crash("too late")
        assert not run.set_state(State(StateType.COMPLETED, data=3))
    assert future.result() == 2


def test_count_loss_uses_the_tasks_retries() -> None:
    runner = HoldingRunner()
    with runner:
        runner.submit(add.with_options(retries=1), {"x": 1, "y": 1})
        run = runner.held[0]
        assert run.count_loss() is True  # first loss: one retry left
        assert run.count_loss() is False  # second loss: none left
        assert run.losses == 2
        run.run_here()


def test_native_upstreams_route_own_runs_and_wait_for_others() -> None:
    mine, other = HoldingRunner(), HoldingRunner()
    with mine, other:
        a = mine.submit(add, {"x": 1, "y": 1})
        b = other.submit(add, {"x": 1, "y": 1})
        a.native = "handle-of-a"
        ours = mine.submit(add, {"x": a, "y": 1})
        mixed = mine.submit(add, {"x": a, "y": b})
        assert mine.held[1].native_upstreams(mine) == ("handle-of-a",)
        assert mine.held[2].native_upstreams(mine) is None
        other.held[0].run_here()
        mine.held[0].run_here()
        routed = mine.held[2].final_upstreams(mine)
        assert routed[0] == "handle-of-a" and isinstance(routed[1], State)
        assert mine.held[2].final_upstreams(mine, usable=lambda native: False)[0].result() == 2
        for run in mine.held[1:]:
            run.run_here()
    assert (ours.result(), mixed.result()) == (3, 4)


# -- futures and states ---------------------------------------------------------------------------


def test_peek_does_not_mark_a_failed_run_as_observed() -> None:
    runner = InlineRunner()
    with pytest.warns(UnobservedFailureWarning, match="boom"):
        with runner:
            future = runner.submit(boom, {})
            assert future.peek().is_failed()
    assert future.owner is runner


def test_reading_state_marks_a_failed_run_as_observed() -> None:
    runner = InlineRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnobservedFailureWarning)
        with runner:
            assert runner.submit(boom, {}).state.is_failed()


def test_state_fields_round_trip_and_pickle_as_fields() -> None:
    error = ValueError("x")
    state = State(StateType.FAILED, exception=error, name="Oops", message="m", attempt=2, started=1.0)
    fields = state.fields()
    assert isinstance(fields, StateFields)
    assert fields == (StateType.FAILED, "Oops", "m", state.timestamp, 2, 1.0, None, error, ())
    again = State.from_fields((fields.type.value, *fields[1:]))
    assert again.fields() == fields
    assert State.from_fields(fields[:8]).fields() == fields  # the eight-value form: no logs
    copy = pickle.loads(pickle.dumps(State(StateType.COMPLETED, data=[1, 2], attempt=1)))
    assert copy.result() == [1, 2] and copy.attempt == 1


def test_a_deferred_state_fetches_once_on_first_read() -> None:
    calls: list[int] = []

    def fetch() -> State[Any]:
        calls.append(1)
        return State(StateType.COMPLETED, data="value", attempt=3, started=5.0)

    state: DeferredState[str] = DeferredState(fetch, handle="ref")
    assert state.is_completed() and not state.loaded and state.handle == "ref"
    assert "not fetched" in repr(state) and calls == []
    assert state.result() == "value" and state.attempt == 3 and state.started == 5.0
    assert state.result() == "value" and calls == [1]
    assert state.loaded and state.handle is None


def test_a_deferred_state_says_why_its_value_cannot_be_fetched() -> None:
    def fetch() -> State[Any]:
        raise ConnectionError("cluster gone")

    state: DeferredState[Any] = DeferredState(fetch)
    with pytest.raises(TaskRunnersError, match="cluster gone") as info:
        state.result()
    assert isinstance(info.value.__cause__, ConnectionError)


def test_a_deferred_state_filled_in_bulk_and_pickled_as_plain() -> None:
    state: DeferredState[int] = DeferredState(lambda: pytest.fail("must not fetch"))
    state.fill(State(StateType.COMPLETED, data=7))
    copy = pickle.loads(pickle.dumps(state))
    assert type(copy) is State and copy.result() == 7


def test_deferred_states_loaded_all_at_once_or_one_by_one_when_some_are_lost() -> None:
    def lost() -> State[Any]:
        raise ConnectionError("lost with its worker")

    calls: list[list[Any]] = []

    def fetch_many(handles: list[Any]) -> list[State[Any]]:
        calls.append(handles)
        return [State(StateType.COMPLETED, data=handle.upper()) for handle in handles]

    loaded: DeferredState[str] = DeferredState(lambda: pytest.fail("must not fetch"), handle="done")
    loaded.fill(State(StateType.COMPLETED, data="done"))
    one: DeferredState[str] = DeferredState(lambda: pytest.fail("must not fetch"), handle="one")
    two: DeferredState[str] = DeferredState(lambda: pytest.fail("must not fetch"), handle="two")
    DeferredState.load_all([loaded, one, two], fetch_many)
    assert calls == [["one", "two"]] and (one.result(), two.result()) == ("ONE", "TWO")

    kept: DeferredState[int] = DeferredState(lambda: State(StateType.COMPLETED, data=5), handle="kept")
    gone: DeferredState[int] = DeferredState(lost, handle="gone")
    DeferredState.load_all([kept, gone], lambda handles: [])  # the engine skipped what it lost
    assert kept.loaded and kept.result() == 5 and not gone.loaded
    with pytest.raises(TaskRunnersError, match="lost with its worker"):
        gone.result()


# -- context, slot lending, options, shipping -----------------------------------------------


def test_current_runner_and_task_run_inside_a_flow_and_a_task() -> None:
    seen: dict[str, Any] = {}

    @task
    def inside() -> None:
        info = current_task_run()
        assert info is not None
        seen["task_run"] = info.name

    @flow(task_runner=InlineRunner())
    def body() -> None:
        seen["runner"] = current_runner()
        inside.submit().result()

    assert current_runner() is None
    body()
    assert isinstance(seen["runner"], InlineRunner)
    assert seen["task_run"].startswith("inside-")


def test_using_runner_makes_submit_reach_it() -> None:
    runner = InlineRunner()
    with runner, using_runner(runner):
        assert add.submit(2, 3).result() == 5
    assert current_runner() is None


def test_lending_installs_a_hook_that_blocking_opens_once() -> None:
    opened: list[str] = []

    class Lend:
        def __enter__(self) -> None:
            opened.append("lend")

        def __exit__(self, *exc: object) -> None:
            opened.append("back")

    with lending(Lend):
        with blocking():
            with blocking():  # nested waits lend once
                pass
    with blocking():  # no hook here any more
        pass
    assert opened == ["lend", "back"]


def test_run_options_nest_merge_and_refuse() -> None:
    options = RunOptions(
        "engine_options",
        allowed={"priority", "resources", "mode"},
        refused={"mode": "the runner sets it"},
        merge={"resources"},
    )
    assert not options.current()
    with options.using(priority=1, resources={"GPU": 1}):
        with options.using(resources={"CPU": 2}) as merged:
            assert merged == {"priority": 1, "resources": {"GPU": 1, "CPU": 2}}
            assert options.current().key is not None
        assert options.current().values == {"priority": 1, "resources": {"GPU": 1}}
    with pytest.raises(TypeError, match="unknown option"):
        with options.using(colour="red"):
            pass
    with pytest.raises(ValueError, match="the runner sets it"):
        with options.using(mode="x"):
            pass


def test_run_options_follow_the_context_into_threads_of_their_own() -> None:
    options = RunOptions("o")
    seen: list[Any] = []
    with options.using(a=1):
        thread = threading.Thread(target=lambda: seen.append(dict(options.current().values)))
        thread.start()
        thread.join()
    assert seen == [{}]  # a new thread starts with an empty context, as contextvars do


def test_dumps_sends_tasks_of_main_by_value(tmp_path: Path) -> None:
    script = tmp_path / "ship.py"
    script.write_text(
        "import sys\n"
        "from taskrunners import task\n"
        "from taskrunners.lowlevel import dumps\n"
        "@task\n"
        "def double(x):\n"
        "    return 2 * x\n"
        "import pickle\n"
        "from taskrunners import TaskRunInfo\n"
        "from taskrunners.lowlevel import RunSpec\n"
        "spec = RunSpec(double, TaskRunInfo('double'), {'x': 1})\n"
        "# the task's cached by-value bytes name __main__: still the standard pickler's output\n"
        "assert dumps(spec) == pickle.dumps(spec, pickle.HIGHEST_PROTOCOL)\n"
        "class Local:\n"
        "    pass\n"
        "# an argument of a class of __main__ sends the whole spec by value\n"
        "local = RunSpec(double, TaskRunInfo('double'), {'x': Local()})\n"
        "assert dumps(local) != pickle.dumps(local, pickle.HIGHEST_PROTOCOL)\n"
        "sys.stdout.buffer.write(dumps(double))\n"
    )
    blob = subprocess.run([sys.executable, str(script)], capture_output=True, check=True).stdout
    shipped = loads(blob)
    assert shipped(21) == 42 and shipped.name == "double"


# -- only the core installed --------------------------------------------------------------------


def test_with_only_the_core_a_flow_runs_and_submit_names_the_package(tmp_path: Path) -> None:
    """A bare `@flow` works where no runner package is installed; `.submit()` says what to install.

    The child interpreter sees the core's sources and pluggy, nothing else: `-S` keeps
    site-packages (and the installed runner packages' entry points) out.
    """
    import pluggy

    shutil.copytree(Path(pluggy.__file__).parent, tmp_path / "pluggy")
    core = Path(taskrunners.__file__).parent.parent
    script = (
        "from taskrunners import flow, task\n"
        "from taskrunners.plugins import available_runners\n"
        "assert available_runners() == [], available_runners()\n"
        "@task\n"
        "def add(x, y):\n"
        "    return x + y\n"
        "@flow\n"
        "def direct():\n"
        "    return add(1, 2)\n"
        "@flow\n"
        "def submits():\n"
        "    return add.submit(1, 2).result()\n"
        "print(direct())\n"
        "try:\n"
        "    submits()\n"
        "except LookupError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TASKRUNNERS_RUNNER"}
    env["PYTHONPATH"] = os.pathsep.join([str(core), str(tmp_path)])
    done = subprocess.run(
        [sys.executable, "-S", "-c", script], capture_output=True, text=True, env=env, timeout=LONG
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert first == "3"
    assert second.startswith(RunnerLookupError.__name__) and "pip install taskrunners-threads" in second
