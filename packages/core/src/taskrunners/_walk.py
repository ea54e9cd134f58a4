"""Finding futures inside task arguments, and putting values in their place.

A future may sit at any depth inside lists, tuples (named ones too), sets, frozensets,
dicts (keys and values) and dataclass instances. `Extractor` replaces each future with
a `Slot` that names its position in a list of upstream runs, so that the template can
travel to wherever the task runs; `fill` later rebuilds the structure with the upstream
values in the slots. Other objects are left alone, not traversed.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any, Generic, TypeVar

from ._futures import Future, FutureList
from ._quote import opaque, quote
from ._states import _FINAL, State

__all__ = ["Extractor", "Slot", "allow_failure", "fill", "unmapped"]

T = TypeVar("T")

_ATOMIC = frozenset({int, float, str, bytes, bool, type(None), complex, bytearray, range})


class unmapped(Generic[T]):
    """Pass `value` whole to every run of `Task.map`, even if it is iterable.

    `unmapped(v)[i]` is `v` for any `i`: it acts as an endless sequence of `v`.
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value: T = value

    def __getitem__(self, _index: Any) -> T:
        return self.value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"


class allow_failure(Generic[T]):
    """Let a task run even if the upstream runs inside `value` did not complete.

    Wrap a future (or a collection holding futures) given as an argument or in
    `wait_for`. The task then runs once the upstream is final, and receives the
    upstream's exception object in place of a value that could not be produced.
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value: T = value

    def __repr__(self) -> str:
        return f"allow_failure({self.value!r})"


class Slot:
    """Placeholder for the value of upstream run number `index`."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return (Slot, (self.index,))

    def __repr__(self) -> str:
        return f"Slot({self.index})"


class Extractor:
    """Collects the futures found in values, replacing each by a `Slot`.

    A final `State` found in a value (with `states`, for arguments) stands for a run
    that ended in it: it is resolved to its value like a finished run's future.

    Attributes:
        futures: The distinct futures found, in order of discovery.
        required: Indices of the futures that must complete for the run to start
            (those found outside any `allow_failure`).
    """

    __slots__ = ("futures", "required", "_index", "_states")

    def __init__(self, states: bool = True) -> None:
        self.futures: list[Future[Any]] = []
        self.required: set[int] = set()
        self._index: dict[Future[Any], int] = {}
        self._states = states  # resolve final States as well (arguments), or leave them

    def visit(self, value: Any, allowed: bool = False) -> Any:
        """`value` with futures replaced by slots; `value` itself if it holds none."""
        cls = type(value)
        if cls in _ATOMIC:
            return value
        if isinstance(value, Future):
            index = self._index.get(value)
            if index is None:
                index = self._index[value] = len(self.futures)
                self.futures.append(value)
            if not allowed:
                self.required.add(index)
            return Slot(index)
        if cls is allow_failure:
            return self.visit(value.value, True)
        if cls is unmapped:
            return self.visit(value.value, allowed)
        if isinstance(value, State):
            if value.type not in _FINAL or not self._states:
                return value  # nothing to resolve yet: passed as the State it is
            return self.visit(_settled(value), allowed)
        if cls is quote:
            return value.value  # passed as it is, never searched
        if cls is opaque:
            inner = value.value
            if isinstance(inner, (Future, State)):
                return self.visit(inner, allowed)
            return inner
        return _rebuild(value, lambda item: self.visit(item, allowed))


def _settled(state: State[Any]) -> Future[Any]:
    """A future that is already final in `state`: a State given as an argument
    resolves to its value exactly as a finished run's future does."""
    from ._engine import TaskRunInfo

    future: Future[Any] = Future(TaskRunInfo(f"state-{state.name}"))
    future._state = state
    future._observed = True
    return future


def fill(template: Any, values: list[Any]) -> Any:
    """Rebuild `template` with `values[i]` in place of each `Slot(i)`."""
    cls = type(template)
    if cls in _ATOMIC:
        return template
    if cls is Slot:
        return values[template.index]
    return _rebuild(template, lambda item: fill(item, values))


def _rebuild(value: Any, visit: Any) -> Any:
    """Apply `visit` to the items of a container; return `value` if none changed."""
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [visit(item) for item in value]
        if all(new is old for new, old in zip(items, value)):
            return value
        cls = type(value)
        if isinstance(value, list):
            return items if cls is list or issubclass(cls, FutureList) else _construct(cls, items, list)
        if isinstance(value, tuple):
            if hasattr(cls, "_fields"):  # a named tuple
                return cls(*items)
            return tuple(items) if cls is tuple else _construct(cls, items, tuple)
        if isinstance(value, frozenset):
            return frozenset(items) if cls is frozenset else _construct(cls, items, frozenset)
        return set(items) if cls is set else _construct(cls, items, set)
    if isinstance(value, dict):
        pairs = [(visit(k), visit(v)) for k, v in value.items()]
        if all(nk is k and nv is v for (nk, nv), (k, v) in zip(pairs, value.items())):
            return value
        if type(value) is dict:
            return dict(pairs)
        if isinstance(value, defaultdict):
            return defaultdict(value.default_factory, pairs)
        return _construct(type(value), pairs, dict)
    fields = getattr(type(value), "__dataclass_fields__", None)
    if fields is not None and not isinstance(value, type):
        changed = {}
        for name in fields:
            if not hasattr(value, name):
                continue
            old = getattr(value, name)
            new = visit(old)
            if new is not old:
                changed[name] = new
        if not changed:
            return value
        clone = copy.copy(value)
        for name, new in changed.items():
            object.__setattr__(clone, name, new)  # works for frozen dataclasses too
        return clone
    return value


def _construct(cls: type, items: Any, fallback: type) -> Any:
    try:
        return cls(items)
    except Exception:  # noqa: BLE001 - a collection type that cannot be rebuilt from items falls back
        return fallback(items)
