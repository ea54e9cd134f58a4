"""The thread-pool task runner of taskrunners, registered as `"threads"`."""

from ._runner import ThreadPoolTaskRunner, default_max_workers

__all__ = ["ThreadPoolTaskRunner", "default_max_workers"]
