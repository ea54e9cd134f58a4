"""State hooks and run names (`on_completion=`, `task_run_name=`, ...), as in Prefect.

Hooks are lists of callables `hook(task, task_run, state)` for tasks and
`hook(flow, flow_run, state)` for flows. A hook that raises is logged and ignored: it
never changes the run's state.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from ._states import State, StateType

__all__ = ["FINAL_HOOKS", "check_hooks", "render_name", "run_hooks"]

#: The hook option fired for each final state type, for tasks and flows.
FINAL_HOOKS = {
    StateType.COMPLETED: "on_completion",
    StateType.FAILED: "on_failure",
    StateType.CRASHED: "on_crashed",
    StateType.CANCELLED: "on_cancellation",
}


def check_hooks(what: str, name: str, option: str, hooks: Any) -> tuple[Callable[..., Any], ...]:
    """`hooks` (one callable, a list of them, or `None`) as a tuple.

    Raises:
        DefinitionError: An entry is not callable.
    """
    from ._errors import DefinitionError

    if hooks is None:
        return ()
    if callable(hooks):
        return (hooks,)
    if isinstance(hooks, Iterable) and not isinstance(hooks, (str, bytes)):
        found = tuple(hooks)
        for hook in found:
            if not callable(hook):
                raise DefinitionError(f"{what} {name!r}: {option} must hold callables, got {hook!r}")
        return found
    raise DefinitionError(f"{what} {name!r}: {option} must be a callable or a list of them, got {hooks!r}")


def run_hooks(hooks: Iterable[Callable[..., Any]], owner: Any, run: Any, state: State[Any]) -> None:
    """Call each `hook(owner, run, state)`; log and ignore what one raises."""
    for hook in hooks:
        try:
            hook(owner, run, state)
        except Exception:
            import logging  # imported on use: keeps `import taskrunners` light

            logging.getLogger("taskrunners").exception(
                "the %s hook %s of %s raised; the run's state stays %s",
                state.type.value,
                getattr(hook, "__qualname__", repr(hook)),
                getattr(run, "name", run),
                state.name,
            )


def render_name(what: str, template: str | Callable[..., Any], parameters: dict[str, Any]) -> str:
    """A run name from `template`: a `str.format` template filled with the run's
    parameters, or a callable called with no argument (or with the parameters, if it
    takes one).

    Raises:
        DefinitionError: The template names a parameter the run does not have, or the
            callable did not return a string.
    """
    from ._errors import DefinitionError

    if callable(template):
        try:
            takes_one = bool(inspect.signature(template).parameters)
        except (TypeError, ValueError):
            takes_one = False
        name = template(parameters) if takes_one else template()
        if not isinstance(name, str):
            raise DefinitionError(f"{what}_run_name must return a string, got {name!r}")
        return name
    try:
        return template.format(**{key: _shown(value) for key, value in parameters.items()})
    except (KeyError, IndexError) as exc:
        raise DefinitionError(
            f"{what}_run_name {template!r} names {exc}, which is not a parameter of the run "
            f"(its parameters: {', '.join(parameters) or 'none'})"
        ) from None


def _shown(value: Any) -> Any:
    """A future in a run name shows its value when it has one, else its run's name."""
    from ._futures import Future

    if isinstance(value, Future):
        state = value.peek()
        if state.type is StateType.COMPLETED:
            return state.result()
        return value.task_run.name
    if isinstance(value, State) and value.type is StateType.COMPLETED:
        return value.result()
    return value
