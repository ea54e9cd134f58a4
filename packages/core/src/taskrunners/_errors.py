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
    ├── NotSerializableError (TypeError) an argument or return value of a run cannot be
    │                                    pickled to travel between processes
    ├── UpstreamFailedError              the run did not start: an upstream did not complete
    ├── TaskRunCrashed                   the run ended outside its own code
    │                                    (runner shut down, worker lost, interrupt)
    ├── TaskRunCancelled                 the run was cancelled before it finished
    ├── FailedRun                        a state made with `Failed(...)` and no exception
    ├── FlowTimeoutError (TimeoutError)  a flow run ran longer than its `timeout_seconds`
    ├── TaskTimeoutError (TimeoutError)  the task ran longer than its `timeout_seconds`
    └── WaitTimeout (TimeoutError)       *waiting* for a run gave up (`result(timeout=)`,
                                         `as_completed(timeout=)`): the run goes on

    RemoteError                          stands in for an exception from another process
                                         that cannot be rebuilt here (its class is made
                                         on the fly: it also subclasses the original's
                                         nearest importable class)

    TaskRunnersWarning (UserWarning)
    └── UnobservedFailureWarning         a run failed and nobody looked at its result

An exception raised by a task's own code is never wrapped: `Future.result()` re-raises
that same object. `TaskTimeoutError` and `WaitTimeout` both subclass the built-in
`TimeoutError`, so `except TimeoutError` catches them, while `except WaitTimeout`
tells a timeout of ours from a `TimeoutError` raised by the task itself.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DefinitionError",
    "DependencyError",
    "FailedRun",
    "FlowTimeoutError",
    "MappingError",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "NoActiveFlowError",
    "NotSerializableError",
    "ParameterError",
    "PluginLoadError",
    "RemoteError",
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


class NotSerializableError(TaskRunnersError, TypeError):
    """An argument or return value of a run cannot be pickled to travel between processes.

    The run ends FAILED with this error; other runs are unaffected. It is the same on
    every runner that executes runs in other processes (threads pickle nothing).

    Attributes:
        task_run: The name of the task run, or `None` when no run is known.
        parameter: The parameter whose argument cannot travel, `"return value"`, or
            `None` when the task itself (or the run as a whole) cannot.
        type_name: The qualified name of the type that cannot be pickled, or `None`.
    """

    def __init__(
        self,
        message: str,
        *,
        task_run: str | None = None,
        parameter: str | None = None,
        type_name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.task_run = task_run
        self.parameter = parameter
        self.type_name = type_name

    def __reduce__(self) -> tuple[Any, ...]:
        return (_not_serializable, (str(self), self.task_run, self.parameter, self.type_name))


def _not_serializable(
    message: str, task_run: str | None, parameter: str | None, type_name: str | None
) -> NotSerializableError:
    return NotSerializableError(message, task_run=task_run, parameter=parameter, type_name=type_name)


class RemoteError(Exception):
    """Stands in for an exception raised in another process that cannot be rebuilt here.

    A failed run's exception reaches the flow as itself whenever it can be pickled there
    and back. When it cannot (its `__init__` does not accept its own `args`, it holds a
    lock, its module cannot be imported here), the flow gets an instance of a class made
    on the fly: it has the original class's name, qualified name and module, and
    subclasses both `RemoteError` and the nearest class of the original's hierarchy that
    can be imported here (the class itself, if it can), so that `except ValueError` (or
    `except TheOriginalClass`) catches it as it would have caught the original.

    Attributes:
        type_name: The original type's module and qualified name, `"module.Qual.Name"`.
        remote_traceback: The traceback of the original, as text (also shown as the
            stand-in's `__cause__`).
    """

    remote_traceback: str = ""
    _module: str = ""
    _qualname: str = ""
    _bases: tuple[tuple[str, str], ...] = ()

    @property
    def type_name(self) -> str:
        """The original type's module and qualified name, `"module.Qual.Name"`."""
        return f"{self._module}.{self._qualname}" if self._module else self._qualname

    @staticmethod
    def standing_in_for(exc: BaseException, message: str | None = None) -> RemoteError:
        """A stand-in for `exc`, for a runner that cannot send `exc` itself (it is too
        large, say): the same type name, `message` (default: `str(exc)`), and `exc`'s
        traceback as text; its class subclasses the nearest importable class of
        `exc`'s hierarchy."""
        from ._portable import stand_in_for

        return stand_in_for(exc, message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        from ._portable import stand_in

        return (stand_in, (self._module, self._qualname, self._bases, str(self), self.remote_traceback))


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


class FailedRun(TaskRunnersError):
    """What `result()` raises for a FAILED state that carries no exception of its own:
    one made with `taskrunners.states.Failed(message=...)`, or the aggregate of
    returned states that are not final. Its message is the state's message."""


class FlowTimeoutError(TaskRunnersError, TimeoutError):
    """A flow run ran longer than its flow's `timeout_seconds`."""
