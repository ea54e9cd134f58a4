"""The Dask task runner of taskrunners, registered as `"dask"`.

`DaskTaskRunner` runs task runs on a `dask.distributed` cluster: a temporary local one
by default, or any running scheduler by address. `dask_options` sets Dask options
(resources, priority, ...) for the runs submitted inside it, and `get_dask_client`
gives code inside a task a client on the same cluster.
"""

from ._options import dask_options, get_dask_client
from ._runner import DaskTaskRunner

__all__ = ["DaskTaskRunner", "dask_options", "get_dask_client"]
