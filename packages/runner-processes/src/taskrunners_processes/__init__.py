"""The process-pool task runner of taskrunners, registered as `"processes"`."""

from ._pool import RemoteTraceback
from ._runner import ProcessPoolTaskRunner, default_start_method
from ._worker import RemoteError

__all__ = ["ProcessPoolTaskRunner", "RemoteError", "RemoteTraceback", "default_start_method"]
