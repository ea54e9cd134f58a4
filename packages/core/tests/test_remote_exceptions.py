"""Exceptions that cross a process boundary: as themselves when they can be rebuilt,
as `RemoteError` stand-ins otherwise (the core's part; every runner ships states with
`State.to_wire`, and the conformance suite checks each runner end to end)."""

from __future__ import annotations

import pickle
import sys
import threading
import types
from typing import Any

import pytest
from taskrunners import RemoteError, State, StateType
from taskrunners.lowlevel import RemoteTraceback, dumps, loads


class InitMismatch(ValueError):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")

    def __reduce__(self) -> Any:
        # What BaseException.__reduce__ gives, spelled out: tblib (which importing
        # distributed installs) rebuilds exceptions that keep the built-in __reduce__
        # without calling __init__, and this one must stay unrebuildable wherever the
        # tests run.
        return (type(self), self.args)


class HoldsALock(KeyError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class Plain(Exception):
    pass


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def _travel(exc: BaseException) -> BaseException:
    """`exc` as a failed state's exception after a pickle round trip (what runners do)."""
    state = loads(dumps(State(StateType.FAILED, exception=_raised(exc))))
    assert state.is_failed()
    error = state.exception
    assert error is not None
    return error


def test_an_exception_that_rebuilds_arrives_as_itself_with_the_remote_traceback() -> None:
    error = _travel(Plain("as it was"))
    assert type(error) is Plain and error.args == ("as it was",)
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "in _raised" in error.__cause__.text and "Plain: as it was" in error.__cause__.text


@pytest.mark.parametrize("original", [InitMismatch(3, "bad"), HoldsALock("locked")], ids=["init", "lock"])
def test_an_exception_that_cannot_be_rebuilt_arrives_as_a_stand_in_of_its_own_class(
    original: BaseException,
) -> None:
    error = _travel(original)
    cls = type(original)
    assert isinstance(error, RemoteError) and isinstance(error, cls)
    assert (type(error).__name__, type(error).__qualname__, type(error).__module__) == (
        cls.__name__,
        cls.__qualname__,
        cls.__module__,
    )
    assert str(error) == str(original) and repr(error) == f"{cls.__qualname__}({str(original)!r})"
    assert error.type_name == f"{cls.__module__}.{cls.__qualname__}"
    assert "in _raised" in error.remote_traceback
    assert isinstance(error.__cause__, RemoteTraceback)


def test_a_stand_in_subclasses_the_nearest_importable_class() -> None:
    module = types.ModuleType("not_importable_anywhere")
    exec(
        "class Gone(LookupError):\n    def __init__(self, a, b):\n        super().__init__(a)\n",
        module.__dict__,
    )
    sys.modules[module.__name__] = module
    try:
        blob = dumps(State(StateType.FAILED, exception=module.Gone("x", "y")))
    finally:
        del sys.modules[module.__name__]  # the flow's process cannot import it
    error = loads(blob).exception
    assert isinstance(error, RemoteError) and isinstance(error, LookupError)
    assert not isinstance(error, module.Gone)
    assert type(error).__qualname__ == "Gone" and error.type_name == "not_importable_anywhere.Gone"


def test_a_stand_in_pickles_again_to_the_same_stand_in() -> None:
    error = _travel(InitMismatch(1, "twice"))
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == "1: twice"
    assert again.remote_traceback == error.remote_traceback


def test_stand_ins_of_one_type_share_one_class() -> None:
    assert type(_travel(InitMismatch(1, "a"))) is type(_travel(InitMismatch(2, "b")))


@pytest.mark.parametrize(
    "original", [RecursionError("deep"), KeyError("k"), OSError(2, "gone")], ids=["recursion", "key", "os"]
)
def test_builtin_exceptions_arrive_as_themselves(original: BaseException) -> None:
    error = _travel(original)
    assert type(error) is type(original) and error.args == original.args


def test_standing_in_for_keeps_the_type_and_takes_a_message() -> None:
    error = RemoteError.standing_in_for(_raised(InitMismatch(4, "big")), "shortened")
    assert isinstance(error, InitMismatch) and isinstance(error, RemoteError)
    assert str(error) == "shortened" and "InitMismatch" in error.remote_traceback


def test_a_state_without_an_exception_pickles_as_before() -> None:
    state: State[Any] = loads(dumps(State(StateType.COMPLETED, data=[1, 2], attempt=2)))
    assert state.result() == [1, 2] and state.attempt == 2
    assert State(StateType.COMPLETED, data=1).to_wire()[7] is None
