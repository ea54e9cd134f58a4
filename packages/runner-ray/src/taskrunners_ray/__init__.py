"""The Ray task runner of taskrunners, registered as `"ray"`.

`RayTaskRunner()` starts a local Ray for each flow run (on 127.0.0.1 only);
`RayTaskRunner(address=...)` runs on a Ray cluster that is already running.
`remote_options(...)` sets Ray options (CPUs, GPUs, memory, custom resources,
retries of lost workers) for the runs submitted inside a `with` block.
"""

from ._options import remote_options
from ._runner import InfeasibleRequestError, RayTaskRunner
from ._session import DEFAULT_OBJECT_STORE_MEMORY

__all__ = ["DEFAULT_OBJECT_STORE_MEMORY", "InfeasibleRequestError", "RayTaskRunner", "remote_options"]
