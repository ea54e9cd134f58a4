"""`RunOptions`: engine options for the runs submitted inside a `with` block.

A runner whose engine takes per-run options (resources, priorities, placement) gives
its users a context manager such as `dask_options(...)` or `remote_options(...)`. The
mechanics are the same for every engine, so they live here once: options are held in
a context variable (so they follow threads and tasks as context does), blocks nest,
an inner block's value wins, and mapping-valued options named in `merge` merge key by
key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

__all__ = ["OptionSet", "RunOptions"]


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


class OptionSet:
    """The options in force: a read-only view and a hashable key (for caching).

    Attributes:
        values: The options by name. Do not modify it.
        key: A hashable form of `values`, or `None` if a value cannot be hashed.
    """

    __slots__ = ("key", "values")

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values: Mapping[str, Any] = values
        try:
            key: Any = _freeze(values)
            hash(key)
        except TypeError:
            key = None
        self.key: Any = key

    def __bool__(self) -> bool:
        return bool(self.values)

    def __repr__(self) -> str:
        return f"OptionSet({dict(self.values)!r})"


_EMPTY = OptionSet({})


class RunOptions:
    """A family of per-run engine options, set with `with options.using(**values):`.

    For runner implementations; the runner's users see it through a function of the
    runner package (see `taskrunners_dask.dask_options`).

    Args:
        name: How error messages name the user-facing function, e.g. `"dask_options"`.
        allowed: The option names accepted; `None` accepts any name.
        refused: Names refused with the reason why (options the runner sets itself).
        merge: Names of mapping-valued options that an inner block merges key by key
            into the outer block's value instead of replacing it.
        validate: Called with the merged options before a block opens; raises
            `ValueError` or `TypeError` to refuse them.
    """

    def __init__(
        self,
        name: str,
        *,
        allowed: Collection[str] | None = None,
        refused: Mapping[str, str] | None = None,
        merge: Collection[str] = (),
        validate: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.name = name
        self.allowed: frozenset[str] | None = frozenset(allowed) if allowed is not None else None
        self.refused: dict[str, str] = dict(refused or {})
        self.merge: frozenset[str] = frozenset(merge)
        self.validate = validate
        self._var: ContextVar[OptionSet] = ContextVar(f"taskrunners_options_{name}", default=_EMPTY)

    @contextlib.contextmanager
    def using(self, **options: Any) -> Iterator[dict[str, Any]]:
        """Apply `options` to the runs submitted in this context inside the block.

        Yields:
            A copy of the merged options now in force.

        Raises:
            TypeError: An option name is not accepted.
            ValueError: An option is refused, or `validate` refused the values.
        """
        for key, why in self.refused.items():
            if key in options:
                raise ValueError(f"{self.name}() does not accept {key!r}: {why}")
        if self.allowed is not None:
            unknown = set(options) - self.allowed
            if unknown:
                raise TypeError(
                    f"{self.name}() got unknown option(s) {sorted(unknown)}; the options are "
                    f"{sorted(self.allowed)}"
                )
        merged = dict(self._var.get().values)
        for key, value in options.items():
            if key in self.merge and isinstance(merged.get(key), Mapping) and isinstance(value, Mapping):
                value = {**merged[key], **value}
            merged[key] = value
        if self.validate is not None:
            self.validate(merged)
        token = self._var.set(OptionSet(merged))
        try:
            yield dict(merged)
        finally:
            self._var.reset(token)

    def current(self) -> OptionSet:
        """The options of the innermost open block (empty outside any)."""
        return self._var.get()
