"""`tags(...)`: labels for every run submitted (or flow called) inside a `with` block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["current_tags", "tags"]

_EMPTY: frozenset[str] = frozenset()
_tags_var: ContextVar[frozenset[str]] = ContextVar("taskrunners_tags", default=_EMPTY)


@contextlib.contextmanager
def tags(*names: str) -> Iterator[frozenset[str]]:
    """Add `names` to the tags of the task runs and flow runs made inside the block.

    Blocks nest (an inner block adds to the outer one's tags), and the tags follow the
    context into threads that a runner starts from it. A run's tags are its task's
    tags and those of the blocks open where it was submitted: `future.task_run.tags`.

    Yields:
        All the tags in force inside the block.

    Raises:
        TypeError: A name is not a string.
    """
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"tags() takes strings, got {name!r}; write tags('a', 'b')")
    current = _tags_var.get() | frozenset(names)
    token = _tags_var.set(current)
    try:
        yield current
    finally:
        _tags_var.reset(token)


def current_tags() -> frozenset[str]:
    """The tags of the `tags(...)` blocks open here (empty outside any)."""
    return _tags_var.get()
