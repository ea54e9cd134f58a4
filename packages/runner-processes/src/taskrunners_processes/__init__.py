"""The process-pool task runner of taskrunners, registered as `"processes"`."""

from taskrunners import RemoteError  # kept here for compatibility: the core's stand-in
from taskrunners.lowlevel import RemoteTraceback  # kept here for compatibility

from ._runner import ProcessPoolTaskRunner, default_start_method

__all__ = ["ProcessPoolTaskRunner", "RemoteError", "RemoteTraceback", "default_start_method"]
