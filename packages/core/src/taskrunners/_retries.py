"""Retry helpers: `exponential_backoff` and the jitter of `retry_jitter_factor`."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["exponential_backoff", "jittered"]


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Delays that double with each retry, for `retry_delay_seconds=`.

    `@task(retries=3, retry_delay_seconds=exponential_backoff(10))` waits 10 s, 20 s
    and 40 s before the three retries.

    Args:
        backoff_factor: The first delay, in seconds.

    Returns:
        A callable that takes the number of retries and returns one delay per retry.

    Raises:
        ValueError: `backoff_factor` is negative.
    """
    if backoff_factor < 0:
        raise ValueError(f"exponential_backoff: backoff_factor must be >= 0, got {backoff_factor!r}")

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**retry for retry in range(retries)]

    return delays


def jittered(delay: float, factor: float) -> float:
    """`delay` moved at random by up to `factor` times itself either way (never below 0):
    drawn uniformly from `[delay * max(0, 1 - factor), delay * (1 + factor)]`."""
    import random  # imported on use: keeps `import taskrunners` light

    return delay * random.uniform(max(0.0, 1.0 - factor), 1.0 + factor)
