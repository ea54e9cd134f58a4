"""Run logs in the core: `get_run_logger()`, `log_prints`, the engine's lines, the
default handler and level, and readable tracebacks (the threads runner; every runner
is checked by the conformance suite's `ObservabilityTests`)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator

import pytest
from taskrunners import NoActiveFlowError, RemoteTraceback, flow, get_run_logger, task
from taskrunners.lowlevel import current_flow_run


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[tuple[str, str | None, str]]:
        return [(r.levelname, getattr(r, "task_run_name", None), r.getMessage()) for r in self.records]


@pytest.fixture
def records() -> Iterator[Records]:
    logger = logging.getLogger("taskrunners")
    handler = Records()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@task
def greet(name: str) -> str:
    get_run_logger().info("hello %s", name)
    return name


@task
def shout(text: str) -> str:
    print(text.upper())
    return text


@task(log_prints=True)
def shout_always(text: str) -> str:
    print(text, "always")
    return text


@task(retries=2)
def always_fails() -> None:
    raise RuntimeError("nope")


def test_get_run_logger_outside_a_run_says_where_to_call_it() -> None:
    with pytest.raises(NoActiveFlowError, match="@task or @flow"):
        get_run_logger()


def test_flow_and_task_records_carry_the_runs_names(records: Records) -> None:
    @flow
    def hello() -> tuple[str, str]:
        get_run_logger().info("in the flow")
        future = greet.submit("ada")
        future.wait()
        flow_run = current_flow_run()
        assert flow_run is not None
        return flow_run.name, future.task_run.name

    flow_run, task_run = hello()
    assert flow_run.startswith("hello-")
    flow_record = next(r for r in records.records if r.getMessage() == "in the flow")
    assert flow_record.name == "taskrunners.flow_runs" and flow_record.flow_run_name == flow_run  # type: ignore[attr-defined]
    task_record = next(r for r in records.records if r.getMessage() == "hello ada")
    assert task_record.name == "taskrunners.task_runs"
    assert task_record.task_run_name == task_run and task_record.flow_run_name == flow_run  # type: ignore[attr-defined]
    assert str(os.getpid()) in task_record.worker  # type: ignore[attr-defined]


def test_engine_lines_for_a_flow_with_retries_and_a_final_failure(records: Records) -> None:
    @flow
    def failing() -> str:
        future = always_fails.submit()
        future.wait()
        assert future.state.is_failed()
        return future.task_run.name

    name = failing()
    mine = [(level, message) for level, run, message in records.lines() if run == name]
    assert [level for level, _ in mine] == ["DEBUG", "WARNING", "WARNING", "ERROR", "ERROR"], mine
    assert mine[0][1] == "Started"
    assert "Retry 1/2 will start immediately" in mine[1][1] and "Retry 2/2" in mine[2][1]
    assert mine[3][1] == "Task run failed with exception: RuntimeError('nope') - Retries are exhausted"
    final = next(r for r in records.records if r.getMessage() == mine[3][1])
    assert final.exc_info is not None and final.exc_info[1].args == ("nope",)
    flow_lines = [message for level, run, message in records.lines() if run is None]
    assert (
        flow_lines[0].startswith("Beginning flow run 'failing-")
        and flow_lines[-1] == "Finished in state Completed"
    )


def test_a_completed_run_logs_at_debug_only(records: Records) -> None:
    @flow
    def one() -> str:
        future = greet.submit("bo")
        future.wait()
        return future.task_run.name

    name = one()
    assert [(level, message) for level, run, message in records.lines() if run == name] == [
        ("DEBUG", "Started"),
        ("INFO", "hello bo"),
        ("DEBUG", "Finished in state Completed(result='bo')"),
    ]


def test_log_prints_on_the_flow_is_inherited_and_a_task_can_override_it(
    records: Records, capsys: pytest.CaptureFixture[str]
) -> None:
    @flow(log_prints=True)
    def loud() -> list[str]:
        print("from the flow")
        futures = [shout.submit("a"), shout.with_options(log_prints=False).submit("b")]
        for future in futures:
            future.wait()
        return [f.task_run.name for f in futures]

    inheriting, refusing = loud()
    messages = records.lines()
    assert ("INFO", None, "from the flow") in messages
    assert ("INFO", inheriting, "A") in messages
    assert not any(run == refusing and message == "B" for _, run, message in messages)
    assert capsys.readouterr().out == "B\n"  # printed as usual


def test_log_prints_off_by_default_and_on_for_a_task_that_asks(
    records: Records, capsys: pytest.CaptureFixture[str]
) -> None:
    @flow
    def quiet() -> str:
        shout.submit("c").wait()
        future = shout_always.submit("d")
        future.wait()
        return future.task_run.name

    name = quiet()
    assert capsys.readouterr().out == "C\n"
    assert ("INFO", name, "d always") in records.lines()


def test_a_task_called_directly_outside_a_flow_logs_with_its_run_name(records: Records) -> None:
    assert greet("cy") == "cy"
    record = next(r for r in records.records if r.getMessage() == "hello cy")
    assert record.task_run_name.startswith("greet-")  # type: ignore[attr-defined]
    assert record.flow_run_name is None  # type: ignore[attr-defined]


def test_traceback_of_a_failed_run_shows_the_task_not_the_engine() -> None:
    @flow
    def fails() -> None:
        always_fails.with_options(retries=0).submit().result()

    with pytest.raises(RuntimeError) as info:
        fails()
    text = "".join(traceback.format_exception(info.value))
    assert "in always_fails" in text and 'raise RuntimeError("nope")' in text
    assert "_engine.py" not in text and "taskrunners_threads" not in text
    assert not isinstance(info.value.__cause__, RemoteTraceback)  # it ran here: the real frames


# -- the default handler and level, in a fresh interpreter ------------------------------------

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from taskrunners import flow, get_run_logger, task

    if "--configured" in sys.argv:
        logging.basicConfig(level=logging.INFO, format="APP %(name)s %(message)s")

    @task
    def work():
        get_run_logger().info("working")

    @flow
    def job():
        work.submit().wait()

    job()
    """
)


def run_script(*args: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TASKRUNNERS_")}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, env=environment, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_not_at_a_terminal_and_no_level_set_nothing_is_printed() -> None:
    assert run_script() == ""


def test_the_level_variable_installs_the_readable_handler() -> None:
    lines = run_script(TASKRUNNERS_LOGGING_LEVEL="DEBUG").splitlines()
    assert any(" | INFO    | Task run 'work-" in line and line.endswith(" - working") for line in lines), (
        lines
    )
    assert any(
        " | DEBUG   | Task run 'work-" in line and "Finished in state Completed" in line for line in lines
    )
    assert any(" | INFO    | Flow run 'job-" in line and "Beginning flow run" in line for line in lines)
    quieter = run_script(TASKRUNNERS_LOGGING_LEVEL="WARNING")
    assert quieter == ""


def test_an_application_that_configured_logging_is_not_overridden() -> None:
    lines = run_script("--configured").splitlines()
    assert "APP taskrunners.task_runs working" in lines
    assert not any(" | INFO " in line for line in lines)  # no second, taskrunners-made handler
