"""Prefect's `@task` / `@flow` keywords that taskrunners refuses, and how it says so."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["GUIDE", "refuse"]

#: The page that lists every deliberate difference from Prefect.
GUIDE = "docs/migrating-from-prefect.md"

_CACHING = ("results, caching and persistence need a result store", "results-caching-and-persistence")
_SERVER = ("it only affects Prefect's server and UI", "options-that-need-a-server")
_TRANSACTIONS = ("there are no transactions", "options-that-need-a-server")
_VALIDATION = ("parameters are passed as given", "parameters-are-not-validated")

_TASK: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        (
            "cache_policy",
            "cache_key_fn",
            "cache_expiration",
            "refresh_cache",
            "persist_result",
            "result_storage",
            "result_serializer",
            "result_storage_key",
            "cache_result_in_memory",
        ),
        _CACHING,
    ),
    "on_commit": _TRANSACTIONS,
    "on_rollback": _TRANSACTIONS,
    "viz_return_value": _SERVER,
    "asset_deps": _SERVER,
}

_FLOW: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        ("persist_result", "result_storage", "result_serializer", "cache_result_in_memory"), _CACHING
    ),
    "validate_parameters": _VALIDATION,
}


def refuse(what: str, name: str, options: Mapping[str, Any]) -> None:
    """Raise for keywords that `@task` / `@flow` (`what`) of `name` does not take.

    Raises:
        TypeError: Always, when `options` is not empty: for a Prefect option, naming it,
            saying it is Prefect's and pointing at its section of the migration guide.
    """
    if not options:
        return
    table = _TASK if what == "task" else _FLOW
    for option in options:
        known = table.get(option)
        if known is not None:
            why, anchor = known
            raise TypeError(
                f"{what} {name!r}: {option}= is a Prefect option that taskrunners does not "
                f"support ({why}). Remove it; see {GUIDE}#{anchor}."
            )
    unknown = ", ".join(sorted(options))
    raise TypeError(f"{what} {name!r}: unexpected keyword argument(s) {unknown}")
