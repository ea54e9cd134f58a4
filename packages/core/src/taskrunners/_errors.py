"""Every exception and warning that taskrunners raises, in one place.

The hierarchy::

    TaskRunnersError                     base of every error raised by taskrunners itself
    ├── DefinitionError (TypeError)      a task or flow is declared wrongly
    │   └── ReservedArgumentError        its function declares `wait_for` / `return_state`
    ├── ParameterError (TypeError)       arguments do not fit the task's signature
    ├── MappingError (ValueError)        `.map()` cannot pair up its arguments
    │   ├── MappingLengthMismatch        iterables of different lengths
    │   └── MappingMissingIterable       no argument to map over
    ├── DependencyError (ValueError)     a run would wait for itself
    ├── NoActiveFlowError (RuntimeError) `.submit()` / `.map()` outside a flow
    ├── RunnerLifecycleError (RuntimeError)
    │                                    submit to a runner outside its `with` block,
    │                                    or enter a runner twice
    ├── RunnerLookupError (LookupError)  no installed runner has that name
    ├── PluginLoadError (ImportError)    an installed runner plugin failed to load
    ├── UpstreamFailedError              the run did not start: an upstream did not complete
    ├── TaskRunCrashed                   the run ended outside its own code
    │                                    (runner shut down, worker lost, interrupt)
    ├── TaskRunCancelled                 the run was cancelled before it finished
    ├── TaskTimeoutError (TimeoutError)  the task ran longer than its `timeout_seconds`
    └── WaitTimeout (TimeoutError)       *waiting* for a run gave up (`result(timeout=)`,
                                         `as_completed(timeout=)`): the run goes on

    TaskRunnersWarning (UserWarning)
    └── UnobservedFailureWarning         a run failed and nobody looked at its result

An exception raised by a task's own code is never wrapped: `Future.result()` re-raises
that same object. `TaskTimeoutError` and `WaitTimeout` both subclass the built-in
`TimeoutError`, so `except TimeoutError` catches them, while `except WaitTimeout`
tells a timeout of ours from a `TimeoutError` raised by the task itself.
"""

from __future__ import annotations

__all__ = [
    "DefinitionError",
    "DependencyError",
    "MappingError",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "NoActiveFlowError",
    "ParameterError",
    "PluginLoadError",
    "ReservedArgumentError",
    "RunnerLookupError",
    "RunnerLifecycleError",
    "TaskRunCancelled",
    "TaskRunCrashed",
    "TaskRunnersError",
    "TaskRunnersWarning",
    "TaskTimeoutError",
    "UnobservedFailureWarning",
    "UpstreamFailedError",
    "WaitTimeout",
]


class TaskRunnersError(Exception):
    """Base class of every error raised by taskrunners itself."""


class DefinitionError(TaskRunnersError, TypeError):
    """A task or flow is declared in a way taskrunners cannot run."""


class ReservedArgumentError(DefinitionError):
    """A task or flow function declares a parameter whose name taskrunners reserves."""


class ParameterError(TaskRunnersError, TypeError):
    """The arguments given to a task do not fit its function's signature."""


class MappingError(TaskRunnersError, ValueError):
    """`Task.map` cannot pair up its arguments into runs."""


class MappingLengthMismatch(MappingError):
    """The iterables given to `Task.map` have different lengths."""


class MappingMissingIterable(MappingError):
    """`Task.map` was given no iterable argument to map over."""


class DependencyError(TaskRunnersError, ValueError):
    """A run would wait for itself, so it could never start."""


class NoActiveFlowError(TaskRunnersError, RuntimeError):
    """`.submit()` or `.map()` was called where no flow is running."""


class RunnerLifecycleError(TaskRunnersError, RuntimeError):
    """A runner was used outside its `with` block, or entered twice."""


class RunnerLookupError(TaskRunnersError, LookupError):
    """No installed task runner has the requested name."""


class PluginLoadError(TaskRunnersError, ImportError):
    """An installed runner plugin could not be loaded.

    Attributes:
        name: The runner name (entry-point name).
        distribution: The distribution that declares the plugin, with its version.
    """

    def __init__(self, message: str, *, name: str, distribution: str) -> None:
        super().__init__(message)
        self.name: str = name
        self.distribution: str = distribution


class UpstreamFailedError(TaskRunnersError):
    """A run did not start because a run it depends on did not complete.

    Attributes:
        upstream: The `TaskRunInfo` of the upstream run that did not complete.
    """

    def __init__(self, message: str, upstream: object = None) -> None:
        super().__init__(message)
        self.upstream = upstream


class TaskRunCrashed(TaskRunnersError):
    """A run ended because of something outside its own code.

    The runner was shut down, the worker running it was lost, or the run was
    interrupted (`KeyboardInterrupt`, `SystemExit`).
    """


class TaskRunCancelled(TaskRunnersError):
    """A run was cancelled before it finished."""


class TaskTimeoutError(TaskRunnersError, TimeoutError):
    """A task ran longer than its `timeout_seconds`."""


class WaitTimeout(TaskRunnersError, TimeoutError):
    """Waiting for a run gave up before the run finished; the run itself goes on."""


class TaskRunnersWarning(UserWarning):
    """Base class of the warnings taskrunners emits."""


class UnobservedFailureWarning(TaskRunnersWarning):
    """A run failed and its flow ended without anyone reading its result or state."""
