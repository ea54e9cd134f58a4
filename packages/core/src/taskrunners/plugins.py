"""Finding task runners: entry points, loaded one at a time, checked with pluggy.

A runner plugin is a distribution that declares an entry point in the group
`taskrunners.runners`; the entry point's name is the runner's name, and its object is
a module (or any object) that implements the hook `taskrunners_runner_class`::

    # pyproject.toml
    [project.entry-points."taskrunners.runners"]
    mypool = "my_package._plugin"

    # my_package/_plugin.py
    from taskrunners.plugins import hookimpl

    @hookimpl
    def taskrunners_runner_class():
        from my_package import MyPoolTaskRunner
        return MyPoolTaskRunner

Listing runners reads entry-point metadata only and imports no plugin. Loading a name
imports that one plugin, inside its own error handling, so a broken plugin is reported
(with its distribution, version and error) and never hides the others: whatever it
raises at import (`SystemExit` included; only a `KeyboardInterrupt` goes through, as
the user's Ctrl-C) becomes a `PluginLoadError`. A second entry point that names a
plugin already loaded (an alias) answers with that plugin's class.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from ._errors import PluginLoadError, RunnerLookupError

if TYPE_CHECKING:
    from ._runner import TaskRunner

__all__ = ["ENTRY_POINT_GROUP", "RunnerEntry", "available_runners", "hookimpl", "hookspec", "load_runner"]

ENTRY_POINT_GROUP = "taskrunners.runners"

hookspec: pluggy.HookspecMarker = pluggy.HookspecMarker("taskrunners")
hookimpl: pluggy.HookimplMarker = pluggy.HookimplMarker("taskrunners")

#: Where the runners that this project maintains come from, for the hint in errors.
_KNOWN = {
    "threads": "taskrunners",
    "processes": "taskrunners[processes]",
    "dask": "taskrunners[dask]",
    "ray": "taskrunners[ray]",
}


#: The folder of each of them under packages/ in a checkout of this repository.
_MEMBERS = {
    "taskrunners": "runner-threads",
    "taskrunners[processes]": "runner-processes",
    "taskrunners[dask]": "runner-dask",
    "taskrunners[ray]": "runner-ray",
}


def _checkout_member(member: str) -> Path | None:
    """The folder of package `member` (e.g. "runner-dask") in the checkout that this core
    was installed from (editable, or a plain install whose sources sit in a checkout),
    or `None` when the core was installed from a package index."""
    packages = Path(__file__).resolve().parents[3]  # <root>/packages/core/src/taskrunners
    folder = packages / member
    return folder if (folder / "pyproject.toml").is_file() else None


def _install_hint(requirement: str) -> str:
    """`pip install` for a package this project maintains, in the form that works from
    where the user stands: from the package index, and from the checkout when the core
    was installed from one (the umbrella's extras cannot be resolved from a checkout)."""
    hint = f'pip install "{requirement}"'
    member = _MEMBERS.get(requirement)
    folder = _checkout_member(member) if member is not None else None
    if folder is not None:
        hint += f' from a package index, or from this checkout: pip install "{folder}"'
    return hint


class RunnerSpec:
    """The hooks a runner plugin implements."""

    @hookspec(firstresult=True)
    def taskrunners_runner_class(self) -> type[TaskRunner]:  # type: ignore[empty-body]
        """Return the `TaskRunner` subclass that this plugin provides."""


@dataclass(frozen=True)
class RunnerEntry:
    """One installed runner, as its entry point declares it (nothing imported).

    Attributes:
        name: The runner's name, as `@flow(task_runner=...)` takes it.
        value: The entry point's object reference, `"module:attr"` or `"module"`.
        distribution: The distribution that declares it.
        version: That distribution's version.
    """

    name: str
    value: str
    distribution: str
    version: str


def available_runners() -> list[RunnerEntry]:
    """Every installed runner, sorted by name, without importing any plugin."""
    from importlib.metadata import entry_points

    entries = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        entries.append(
            RunnerEntry(
                name=ep.name,
                value=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else "?",
                version=dist.version if dist is not None else "?",
            )
        )
    return sorted(entries, key=lambda e: (e.name, e.distribution))


_lock = threading.Lock()
_loaded: dict[str, type[TaskRunner]] = {}
_manager: pluggy.PluginManager | None = None


def _plugin_manager() -> pluggy.PluginManager:
    global _manager
    if _manager is None:
        manager = pluggy.PluginManager("taskrunners")
        manager.add_hookspecs(RunnerSpec)
        _manager = manager
    return _manager


def load_runner(name: str) -> type[TaskRunner]:
    """The runner class registered under `name`, importing its plugin on first use.

    Raises:
        RunnerLookupError: No installed runner has that name.
        PluginLoadError: The plugin failed to import, does not implement the hook, or
            does not return a `TaskRunner` subclass; or two distributions claim the name.
    """
    cls = _loaded.get(name)
    if cls is not None:
        return cls
    with _lock:
        cls = _loaded.get(name)
        if cls is None:
            cls = _loaded[name] = _load(name)
    return cls


def _load(name: str) -> type[TaskRunner]:
    from importlib.metadata import entry_points

    candidates = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not candidates:
        raise RunnerLookupError(_unknown_message(name))
    if len(candidates) > 1:
        owners = " and ".join(_describe(ep) for ep in candidates)
        raise PluginLoadError(
            f"runner name {name!r} is claimed by {owners}; uninstall one of them",
            name=name,
            distribution=_describe(candidates[0]),
        )
    ep = candidates[0]
    where = _describe(ep)

    def fail(problem: str) -> PluginLoadError:
        return PluginLoadError(
            f"runner plugin {name!r} from {where} ({ep.value}) {problem}. Reinstall or "
            f"upgrade {where.split()[0]}, or uninstall it; other runners are unaffected.",
            name=name,
            distribution=where,
        )

    try:
        plugin = ep.load()
    except KeyboardInterrupt:  # a real Ctrl-C while importing: the user's, not the plugin's
        raise
    except BaseException as exc:  # SystemExit, GeneratorExit...: the plugin's problem only
        raise fail(f"failed to load: {type(exc).__name__}: {exc}") from exc
    manager = _plugin_manager()
    # An alias (a second entry point naming a plugin object registered already) is that
    # same plugin under another name: registered once, its hook answers both names.
    registered = manager.is_registered(plugin)
    if not registered:
        try:
            manager.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise fail(f"is not a valid plugin: {exc}") from exc
    try:
        return _runner_class(manager, plugin, fail)
    except PluginLoadError:
        if not registered:
            manager.unregister(plugin)  # so that loading it again reports the same problem
        raise


def _runner_class(manager: pluggy.PluginManager, plugin: object, fail: Any) -> type[TaskRunner]:
    from ._runner import TaskRunner

    try:
        manager.check_pending()  # a hook implementation that matches no hook: a typo
    except pluggy.PluginValidationError as exc:
        raise fail(f"is not a valid plugin: {exc}") from exc
    others = [p for p in manager.get_plugins() if p is not plugin]
    try:
        cls = manager.subset_hook_caller("taskrunners_runner_class", remove_plugins=others)()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise fail(f"raised in taskrunners_runner_class(): {type(exc).__name__}: {exc}") from exc
    if cls is None:
        raise fail("does not implement the hook taskrunners_runner_class")
    if not (isinstance(cls, type) and issubclass(cls, TaskRunner)):
        raise fail(f"returned {cls!r} from taskrunners_runner_class(), not a TaskRunner subclass")
    return cls


def _describe(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def _unknown_message(name: str) -> str:
    installed = ", ".join(sorted({e.name for e in available_runners()})) or "none"
    package = _KNOWN.get(name)
    if package is not None:
        hint = f"install it with: {_install_hint(package)}"
    else:
        hint = (
            "install the package that provides it (it must declare an entry point named "
            f"{name!r} in the group {ENTRY_POINT_GROUP!r}), or check the spelling"
        )
    return f"no task runner named {name!r} is installed (installed: {installed}); {hint}"
