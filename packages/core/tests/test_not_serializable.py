"""Arguments and return values that cannot be pickled: the core names the run, the
parameter (or "return value"), the type and a hint, once for every runner
(`RunSpec.not_serializable`, `RunSpec.dumps_state`)."""

from __future__ import annotations

import threading
from typing import Any

from taskrunners import NotSerializableError, State, StateType, TaskRunnersError, task
from taskrunners.lowlevel import dumps, loads
from taskrunners_threads import ThreadPoolTaskRunner


@task
def use(resource: Any, count: int = 1) -> int:
    return count


class Holder:
    def __init__(self) -> None:
        self.name = "db"
        self.lock = threading.Lock()


def _problem(parameters: dict[str, Any]) -> tuple[str, State[Any] | None]:
    with ThreadPoolTaskRunner() as runner:
        run = runner.prepare(use, parameters)
        state = run.spec.not_serializable()
        run.set_state(State(StateType.COMPLETED, data=None))  # finish it: the runner waits for it
    return run.info.name, state


def test_an_unpicklable_argument_names_the_run_the_parameter_the_type_and_a_hint() -> None:
    name, state = _problem({"resource": threading.Lock(), "count": 2})
    assert state is not None and state.is_failed() and state.name == "NotSerializable"
    error = state.exception
    assert isinstance(error, NotSerializableError) and isinstance(error, TypeError)
    assert (error.task_run, error.parameter, error.type_name) == (name, "resource", "_thread.lock")
    assert str(error) == (
        f"task run {name!r}: argument 'resource' cannot be pickled to send it to the process that "
        "runs the task: it is a _thread.lock (TypeError: cannot pickle '_thread.lock' object). "
        "Create the object inside the task from something that pickles (a path, an address, "
        "settings), or run this flow on threads (ThreadPoolTaskRunner), which pickles nothing."
    )


def test_a_nested_culprit_is_found_and_located() -> None:
    _, state = _problem({"resource": {"settings": [1, Holder()]}})
    assert state is not None
    error = state.exception
    assert isinstance(error, NotSerializableError) and error.type_name == "_thread.lock"
    assert "it holds a _thread.lock (at resource['settings'][1].lock)" in str(error)


def test_a_run_that_pickles_has_no_problem() -> None:
    assert _problem({"resource": [1, "two", {"three": 3.0}]})[1] is None


def test_a_generator_is_named_too() -> None:
    _, state = _problem({"resource": (x for x in range(3))})
    assert state is not None and "it is a generator" in str(state.exception)


def test_an_unpicklable_return_value_gives_a_failed_state_naming_the_return_value() -> None:
    with ThreadPoolTaskRunner() as runner:
        run = runner.prepare(use, {"resource": 1})
        done = State(StateType.COMPLETED, data={"lock": threading.Lock()}, attempt=2, started=5.0)
        state = loads(run.spec.dumps_state(done))
        run.set_state(State(StateType.COMPLETED, data=None))  # finish it: the runner waits for it
    assert (
        state.is_failed() and state.name == "NotSerializable" and (state.attempt, state.started) == (2, 5.0)
    )
    error = state.exception
    assert isinstance(error, NotSerializableError)
    assert (error.task_run, error.parameter, error.type_name) == (
        run.info.name,
        "return value",
        "_thread.lock",
    )
    assert str(error).startswith(
        f"task run {run.info.name!r}: its return value cannot be pickled to send it back from the "
        "process that ran the task: it holds a _thread.lock (at value['lock'])"
    )


def test_dumps_state_is_one_plain_pickle_when_the_value_pickles() -> None:
    with ThreadPoolTaskRunner() as runner:
        run = runner.prepare(use, {"resource": 1})
        done = State(StateType.COMPLETED, data=[1, 2])
        assert run.spec.dumps_state(done) == dumps(done)
        run.set_state(done)


def test_dumps_raises_a_not_serializable_error_that_is_still_a_taskrunners_error() -> None:
    try:
        dumps(threading.Lock())
    except NotSerializableError as error:
        assert isinstance(error, TaskRunnersError) and error.task_run is None
    else:
        raise AssertionError("a lock must not pickle")


def test_the_error_pickles_with_its_attributes() -> None:
    error = NotSerializableError("text", task_run="r-1", parameter="x", type_name="T")
    again = loads(dumps(error))
    assert (str(again), again.task_run, again.parameter, again.type_name) == ("text", "r-1", "x", "T")
