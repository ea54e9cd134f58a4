"""`ReliabilityTests`: bad input and remote exceptions, the same on every runner.

A mixin of `TaskRunnerTests`. It checks that:

- an argument or a return value that cannot be pickled fails its run (FAILED, a
  `NotSerializableError` naming the run, the parameter or "return value", and the
  type), while other runs complete (runners whose runs leave the process:
  `Capability.OUT_OF_PROCESS`);
- an exception that cannot be rebuilt where the flow runs (its `__init__` does not
  match its `args`, it holds a lock) reaches the flow as a stand-in with its type's
  name and its message, caught by `except TheOriginalType`; never a crash or a hang;
- `except RecursionError`, `except KeyError`, a user-defined exception, and one whose
  class travelled by value (as classes of `__main__` do) catch the same on every runner.
"""

from __future__ import annotations

import textwrap
import types
from typing import Any

import pytest

from taskrunners import Capability, NotSerializableError, RemoteError, TaskRunner, task

from . import _reliability_tasks as rt
from ._base import ConformanceBase

__all__ = ["ReliabilityTests"]

#: The source of a module that workers cannot import: its task and its exception class
#: are pickled by value, as those of `__main__` or a notebook are.
_BY_VALUE_SOURCE = textwrap.dedent(
    """
    class MadeHereError(Exception):
        pass

    def raise_made_here(message):
        raise MadeHereError(message)
    """
)


def _declared(suite: Any, runner: TaskRunner) -> frozenset[Capability]:
    capabilities = suite.capabilities
    return frozenset(capabilities if capabilities is not None else runner.capabilities)


class ReliabilityTests(ConformanceBase):
    """Bad input and remote exceptions (see the module's docstring)."""

    # -- values that cannot be pickled ----------------------------------------------------

    def test_an_argument_that_cannot_be_pickled_fails_its_run_naming_it(
        self, task_runner: TaskRunner
    ) -> None:
        import threading

        if Capability.OUT_OF_PROCESS not in _declared(self, task_runner):
            pytest.skip(f"the runner lacks the capability {Capability.OUT_OF_PROCESS.value}")

        def body() -> Any:
            bad = rt.identity.submit(threading.Lock())
            good = rt.identity.submit(42)
            bad.wait()
            return bad.task_run.name, bad.state, good.result()

        name, state, value = self.run_flow(task_runner, body)
        assert value == 42  # other runs are unaffected
        assert state.is_failed(), state
        error = state.exception
        assert isinstance(error, NotSerializableError) and isinstance(error, TypeError), repr(error)
        assert (error.task_run, error.parameter, error.type_name) == (name, "x", "_thread.lock")
        assert f"task run {name!r}: argument 'x' cannot be pickled" in str(error)
        assert "ThreadPoolTaskRunner" in str(error)  # the hint

    def test_a_return_value_that_cannot_be_pickled_fails_its_run_naming_it(
        self, task_runner: TaskRunner
    ) -> None:
        if Capability.OUT_OF_PROCESS not in _declared(self, task_runner):
            pytest.skip(f"the runner lacks the capability {Capability.OUT_OF_PROCESS.value}")

        def body() -> Any:
            bad = rt.make_lock.submit()
            bad.wait()
            downstream = rt.identity.submit(bad)
            downstream.wait()
            return bad.task_run.name, bad.state, downstream.state, rt.identity.submit(7).result()

        name, state, downstream, value = self.run_flow(task_runner, body)
        assert value == 7
        assert state.is_failed(), state
        error = state.exception
        assert isinstance(error, NotSerializableError), repr(error)
        assert (error.task_run, error.parameter, error.type_name) == (name, "return value", "_thread.lock")
        assert f"task run {name!r}: its return value cannot be pickled" in str(error)
        assert downstream.is_failed() and name in str(downstream.exception)  # an upstream failure

    # -- exceptions that cannot be rebuilt ------------------------------------------------

    def test_an_exception_whose_init_does_not_match_its_args_keeps_its_type_and_message(
        self, task_runner: TaskRunner
    ) -> None:
        expected = "code 7: the init does not match the args"
        self._check_unrebuildable(task_runner, "raise_init_mismatch", 7, rt.InitMismatch, expected)

    def test_an_exception_that_holds_a_lock_keeps_its_type_and_message(self, task_runner: TaskRunner) -> None:
        self._check_unrebuildable(
            task_runner, "raise_holding_a_lock", "locked away", rt.HoldsALock, "locked away"
        )

    def _check_unrebuildable(
        self, task_runner: TaskRunner, raiser: str, argument: Any, expected: type, message: str
    ) -> None:
        raising = getattr(rt, raiser)

        def body() -> Any:
            future = raising.submit(argument)
            future.wait()
            after = rt.identity.submit(1).result()  # the runner goes on
            with pytest.raises(expected) as caught:  # `except TheOriginalType` catches it
                future.result()
            return future.state, caught.value, after

        state, error, after = self.run_flow(task_runner, body)
        assert after == 1
        assert state.is_failed(), state  # failed, as the task did: not crashed
        assert type(error).__qualname__ == expected.__qualname__
        assert type(error).__module__ == expected.__module__
        assert str(error) == message
        if isinstance(error, RemoteError):  # a stand-in: the remote traceback as text
            assert error.type_name == f"{expected.__module__}.{expected.__qualname__}"
            assert raiser in error.remote_traceback, error.remote_traceback

    # -- exception type parity ------------------------------------------------------------

    def test_except_recursion_error_catches_a_recursion_error(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            with pytest.raises(RecursionError) as caught:
                rt.recurse_forever.submit().result()
            return type(caught.value), rt.identity.submit("still here").result()

        assert self.run_flow(task_runner, body) == (RecursionError, "still here")  # itself, no stand-in

    def test_except_key_error_catches_a_key_error(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            with pytest.raises(KeyError) as caught:
                rt.raise_key_error.submit("missing").result()
            return type(caught.value), caught.value.args, str(caught.value)

        assert self.run_flow(task_runner, body) == (KeyError, ("missing",), "'missing'")

    def test_a_user_defined_exception_arrives_as_itself(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            with pytest.raises(rt.ReliabilityError) as caught:
                rt.raise_reliability_error.submit("mine").result()
            return type(caught.value), caught.value.args

        assert self.run_flow(task_runner, body) == (rt.ReliabilityError, ("mine",))

    def test_an_exception_whose_class_travels_by_value_arrives_as_itself(
        self, task_runner: TaskRunner
    ) -> None:
        pytest.importorskip("cloudpickle", reason="classes travel by value with cloudpickle")
        module = types.ModuleType("taskrunners_conformance_made_here")  # not importable elsewhere
        exec(compile(_BY_VALUE_SOURCE, "<made here>", "exec"), module.__dict__)
        made_here_error = module.MadeHereError
        raise_made_here = task(module.raise_made_here)

        def body() -> Any:
            with pytest.raises(made_here_error) as caught:
                raise_made_here.submit("by value").result()
            return type(caught.value), str(caught.value)

        assert self.run_flow(task_runner, body) == (made_here_error, "by value")
