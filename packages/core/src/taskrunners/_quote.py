"""`quote(...)` and `opaque(...)`: arguments that taskrunners must not look inside."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["opaque", "quote"]

T = TypeVar("T")


class quote(Generic[T]):
    """Pass `value` to the task as it is, without looking inside it.

    Futures and States inside a quoted value are not waited for nor replaced by their
    values, and a large collection is not walked (which saves time). In `.map()`, a
    quoted iterable is mapped over, each item quoted; a quoted non-iterable goes whole
    to every run.
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value: T = value

    def unquote(self) -> T:
        """The value."""
        return self.value

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.value,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class opaque(quote[T]):
    """Resolve `value` if it is itself a future or a State, but look no deeper.

    `opaque(future)` passes the run's value (as a plain future would); `opaque([f1, f2])`
    passes the list with the futures in it, untouched.
    """

    __slots__ = ()
