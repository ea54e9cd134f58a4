"""taskrunners-executor: a taskrunners runner plugin for any `concurrent.futures.Executor`.

Registered under the runner name `"executor"`::

    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from taskrunners import flow
    from taskrunners_executor import ExecutorTaskRunner

    @flow(task_runner=ExecutorTaskRunner(partial(ProcessPoolExecutor, max_workers=4)))
    def my_flow(): ...
"""

from ._runner import ExecutorTaskRunner

__version__ = "0.1.0"

__all__ = ["ExecutorTaskRunner", "__version__"]
