"""The process-pool task runner of taskrunners, registered as `"processes"`."""

from taskrunners import RemoteTraceback  # the core's: every runner's remote tracebacks

from ._runner import ProcessPoolTaskRunner, default_start_method
from ._worker import RemoteError

__all__ = ["ProcessPoolTaskRunner", "RemoteError", "RemoteTraceback", "default_start_method"]
