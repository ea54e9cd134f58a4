"""Packages outside the core use only its public API.

A runner package (and the example plugin, and the docs' code) may import `taskrunners`,
`taskrunners.lowlevel`, `taskrunners.plugins` and `taskrunners.testing`, and use the
public names of their objects. It may not:

- import a private core module (`taskrunners._context`, `from taskrunners import
  _engine`, `taskrunners.testing._suite`), or reach one as an attribute;
- read or write a private attribute of a core object (`future._state`,
  `state._data`, `runner._started`), by attribute or by `getattr("...")`;
- in a subclass of a core class, set or define a private name of that core class
  (a `TaskRunner` subclass with its own `self._lock` would clobber the base's).

A private name of a core object is collected by introspection: the single-underscore
names of the `__slots__`, the class dicts and (where cheap) the instances of the core's
public classes. `self._pool` in a runner's own class is fine: `self`/`cls` inside a
class of the scanned file, for a name that file's own code sets or defines.

The scan is plain `ast`: no code of the scanned files runs.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = "taskrunners"
FIX = (
    "Fix: make what the runner needs public in the core (documented, typed, in "
    "taskrunners.lowlevel.__all__), or use what taskrunners.lowlevel already offers."
)
#: Underscore names that are not the core's: namedtuple's public API, abc's cache.
CONVENTIONAL = frozenset({"_asdict", "_replace", "_make", "_fields", "_field_defaults", "_abc_impl"})


def _private(name: str) -> bool:
    """A single-leading-underscore name: not a dunder, not an enum's `_sunder_`."""
    return (
        name.startswith("_")
        and not name.startswith("__")
        and not (name.endswith("_") and len(name) > 2)
        and name not in CONVENTIONAL
    )


# -- what is private in the core -------------------------------------------------------


def _core_classes() -> list[type]:
    import taskrunners
    import taskrunners.lowlevel
    import taskrunners.plugins
    import taskrunners.testing

    classes: dict[type, None] = {}
    for module in (taskrunners, taskrunners.lowlevel, taskrunners.plugins, taskrunners.testing):
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name, None)
            if isinstance(value, type):
                classes[value] = None
    return list(classes)


def _instances_dicts() -> dict[type, set[str]]:
    """The instance attributes of the core objects that a class dict does not show
    (set in `__init__` or `__enter__`), from instances that are cheap to make."""
    import taskrunners
    from taskrunners import TaskRunner, flow, task
    from taskrunners.lowlevel import RunOptions

    class Bare(TaskRunner):
        def duplicate(self) -> Bare:
            return Bare()

        def submit(self, task, parameters, wait_for=None):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    def body() -> None:
        pass

    found: dict[type, set[str]] = {}
    runner = Bare()
    with runner:
        found[TaskRunner] = set(vars(runner))
    found[taskrunners.Task] = set(vars(task(body)))
    found[taskrunners.Flow] = set(vars(flow(body)))
    found[RunOptions] = set(vars(RunOptions("scan")))
    return found


def core_private_names() -> dict[str, frozenset[str]]:
    """Each public core class (by qualified name) with the private names its objects
    have, its core base classes' included."""
    instance_names = _instances_dicts()
    owned: dict[str, frozenset[str]] = {}
    for cls in _core_classes():
        names: set[str] = set()
        for klass in inspect.getmro(cls):
            if not klass.__module__.startswith(CORE):
                continue  # object, Generic, Exception, Enum...: not the core's
            names.update(vars(klass))
            slots = vars(klass).get("__slots__", ())
            names.update([slots] if isinstance(slots, str) else slots)
            names.update(instance_names.get(klass, ()))
        owned[cls.__name__] = frozenset(n for n in names if _private(n))
    return owned


PRIVATE = core_private_names()
ALL_PRIVATE = frozenset().union(*PRIVATE.values())


# -- the scanner -----------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    where: str
    line: int
    name: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.name}: {self.why}"


def _core_module(module: str | None) -> bool:
    return module is not None and (module == CORE or module.startswith(CORE + "."))


def _private_module(module: str) -> bool:
    return any(_private(part) for part in module.split("."))


class _Scanner(ast.NodeVisitor):
    def __init__(self, where: str, tree: ast.Module) -> None:
        self.where = where
        self.findings: list[Finding] = []
        self.classes: list[ast.ClassDef] = []
        self.modules: set[str] = set()  # local names bound to a core module
        self.core_names: dict[str, str] = {}  # local name -> core class name
        self.own = _own_names(tree)
        self.core_bases = self._core_bases(tree)

    def report(self, node: ast.AST, name: str, why: str) -> None:
        self.findings.append(Finding(self.where, getattr(node, "lineno", 0), name, why))

    # -- imports --

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _core_module(alias.name):
                continue
            if _private_module(alias.name):
                self.report(node, alias.name, "imports a private core module")
            elif alias.asname:
                self.modules.add(alias.asname)
            else:
                self.modules.add(alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not _core_module(node.module):
            return
        assert node.module is not None
        if _private_module(node.module):
            self.report(node, node.module, "imports from a private core module")
            return
        for alias in node.names:
            local = alias.asname or alias.name
            if _private(alias.name):
                self.report(node, f"{node.module}.{alias.name}", "imports a private core name")
            elif alias.name in PRIVATE:
                self.core_names[local] = alias.name
            elif alias.name in {"lowlevel", "plugins", "testing"}:
                self.modules.add(local)

    # -- classes --

    def _core_bases(self, tree: ast.Module) -> dict[str, frozenset[str]]:
        """The file's classes that subclass a core class (directly or through another
        class of the file), with the private names they inherit from the core."""
        imported: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _core_module(node.module) and not node.level:
                for alias in node.names:
                    if alias.name in PRIVATE:
                        imported[alias.asname or alias.name] = alias.name
        inherited: dict[str, frozenset[str]] = {}
        classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        for _ in range(len(classes)):  # until no class gains names
            changed = False
            for cls in classes:
                names: set[str] = set(inherited.get(cls.name, ()))
                for base in cls.bases:
                    target = base.value if isinstance(base, ast.Subscript) else base
                    label = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
                    if label in imported:
                        names |= PRIVATE[imported[label]]
                    elif isinstance(target, ast.Attribute) and label in PRIVATE:
                        names |= PRIVATE[label]  # taskrunners.TaskRunner, lowlevel.State
                    elif label in inherited:
                        names |= inherited[label]
                if names and frozenset(names) != inherited.get(cls.name):
                    inherited[cls.name] = frozenset(names)
                    changed = True
            if not changed:
                break
        return inherited

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        clobbered = self.core_bases.get(node.name, frozenset())
        for statement in node.body:
            for name in _defined(statement):
                if name in clobbered:
                    self.report(
                        statement, name, f"overrides a private name of a core base class of {node.name}"
                    )
        self.classes.append(node)
        self.generic_visit(node)
        self.classes.pop()

    # -- attributes --

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)
        name = node.attr
        if not _private(name):
            return
        dotted = _dotted(node.value)
        if dotted is not None and dotted.split(".")[0] in self.modules:
            self.report(node, f"{dotted}.{name}", "reaches a private member of a core module")
            return
        if name not in ALL_PRIVATE:
            return
        receiver = node.value.id if isinstance(node.value, ast.Name) else None
        if receiver in ("self", "cls") and self.classes:
            inherited = frozenset().union(*(self.core_bases.get(c.name, frozenset()) for c in self.classes))
            if name in inherited:
                self.report(node, f"{receiver}.{name}", "is a private attribute of the core base class")
            elif name not in self.own:
                self.report(node, f"{receiver}.{name}", "is a private core attribute this file never sets")
            return
        self.report(node, f"{_dotted(node.value) or '...'}.{name}", "is a private attribute of a core object")

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if not (isinstance(func, ast.Name) and func.id in {"getattr", "setattr", "hasattr", "delattr"}):
            return
        if len(node.args) < 2 or not isinstance(node.args[1], ast.Constant):
            return
        name = node.args[1].value
        if not isinstance(name, str) or name not in ALL_PRIVATE:
            return
        receiver = node.args[0]
        if (
            isinstance(receiver, ast.Name)
            and receiver.id in ("self", "cls")
            and self.classes
            and name in self.own
        ):
            return
        self.report(node, f"{func.id}(..., {name!r})", "reaches a private attribute of a core object")


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _defined(statement: ast.stmt) -> list[str]:
    """The names a statement of a class body defines."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [statement.name]
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
        targets = [statement.target]
    names = [t.id for t in targets if isinstance(t, ast.Name)]
    if "__slots__" in names and isinstance(statement, ast.Assign):
        value = statement.value
        if isinstance(value, (ast.Tuple, ast.List)):
            names += [e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return names


def _own_names(tree: ast.Module) -> frozenset[str]:
    """The names the file's own code sets on `self`/`cls` or defines in its classes."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                own.update(_defined(statement))
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [e for t in node.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id in ("self", "cls")
            ):
                own.add(target.attr)
    return frozenset(own)


def scan_source(source: str, where: str = "<source>") -> list[Finding]:
    """Every use of a private core module or attribute in `source`."""
    tree = ast.parse(source, filename=where)
    scanner = _Scanner(where, tree)
    scanner.visit(tree)
    return scanner.findings


# -- what is scanned -------------------------------------------------------------------

_FENCE = re.compile(r"^```(?:python|py|python3)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _markdown_python(path: Path) -> Iterator[tuple[int, str]]:
    """The Python blocks of a Markdown page, with the line of their first code line."""
    text = path.read_text(encoding="utf-8")
    for match in _FENCE.finditer(text):
        yield text.count("\n", 0, match.start(1)), match.group(1)


def scan_path(path: Path) -> list[Finding]:
    where = path.relative_to(ROOT).as_posix()
    if path.suffix == ".md":
        findings = []
        for offset, code in _markdown_python(path):
            try:
                found = scan_source("\n" * offset + code, where)
            except SyntaxError:
                continue  # an outline with `...` in odd places: not code to scan
            findings += found
        return findings
    return scan_source(path.read_text(encoding="utf-8"), where)


def _trees() -> dict[str, list[Path]]:
    """The groups of files to scan, by id: each package's sources and tests, the
    examples, the docs and the benchmarks."""
    groups: dict[str, list[Path]] = {}
    for package in sorted([*ROOT.glob("packages/runner-*"), *ROOT.glob("examples/*/")]):
        if not package.is_dir():
            continue
        for part in ("src", "tests"):
            files = sorted((package / part).rglob("*.py"))
            if files:
                groups[f"{package.relative_to(ROOT).as_posix()}/{part}"] = files
    groups["examples/*.py"] = sorted(ROOT.glob("examples/*.py"))
    groups["docs"] = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    groups["benchmarks"] = sorted((ROOT / "benchmarks").glob("*.py"))
    return {key: files for key, files in groups.items() if files}


TREES = _trees()


@pytest.mark.parametrize("tree", sorted(TREES))
def test_only_the_public_core_api_is_used(tree: str) -> None:
    findings = [f for path in TREES[tree] for f in scan_path(path)]
    assert not findings, (
        f"{len(findings)} use(s) of the core's private API in {tree}:\n"
        + "\n".join(f"  {f}" for f in findings)
        + f"\n{FIX}"
    )


def test_the_scan_covers_every_runner_package_the_example_and_the_docs() -> None:
    for expected in (
        "packages/runner-threads/src",
        "packages/runner-processes/src",
        "packages/runner-dask/src",
        "packages/runner-ray/src",
        "examples/runner-plugin/src",
        "docs",
    ):
        assert expected in TREES, f"{expected} is not scanned"


def test_the_private_names_come_from_the_core_classes() -> None:
    assert {"_state", "_owner", "_observed", "_waiters"} <= PRIVATE["Future"]
    assert {"_data", "_exception"} <= PRIVATE["State"]
    assert {"_fetch", "_data"} <= PRIVATE["DeferredState"]  # its own and State's
    assert {"_TaskRunner__started", "_TaskRunner__lock", "_TaskRunner__runs", "_run_final"} <= PRIVATE[
        "TaskRunner"
    ]
    assert "_id" in PRIVATE["TaskRunInfo"]
    assert not any(name.startswith("__") for name in ALL_PRIVATE)


def test_the_scanner_finds_private_modules_and_attributes() -> None:
    source = (
        "from taskrunners._context import current_runner_var\n"
        "import taskrunners\n"
        "from taskrunners import Future, TaskRunner\n"
        "\n"
        "def peek(future):\n"
        "    return future._state\n"
        "\n"
        "def hidden(future):\n"
        "    return getattr(future, '_owner'), taskrunners._engine\n"
        "\n"
        "class Mine(TaskRunner):\n"
        "    def start(self):\n"
        "        self._pool = []      # its own: fine\n"
        "        self._when_idle = None    # the base's: clobbers it\n"
        "\n"
        "    def _run_final(self, future, state):  # overrides a base private\n"
        "        pass\n"
    )
    findings = scan_source(source, "mine.py")
    report = "\n".join(map(str, findings))
    assert "mine.py:1: taskrunners._context: imports from a private core module" in report
    assert "mine.py:6: future._state: is a private attribute of a core object" in report
    assert "mine.py:9: getattr(..., '_owner')" in report
    assert "mine.py:9: taskrunners._engine: reaches a private member of a core module" in report
    assert "mine.py:14: self._when_idle: is a private attribute of the core base class" in report
    assert "mine.py:16: _run_final: overrides a private name of a core base class of Mine" in report
    assert "_pool" not in report
    assert len(findings) == 6, report


def test_the_scanner_allows_a_classs_own_private_attributes() -> None:
    source = (
        "import threading\n"
        "from taskrunners.lowlevel import PreparedRun, worker_thread\n"
        "\n"
        "class Pool:\n"
        "    def __init__(self):\n"
        "        self._lock = threading.Lock()\n"
        "        self._state = 'open'\n"
        "\n"
        "    def close(self):\n"
        "        with self._lock:\n"
        "            self._state = 'closed'\n"
    )
    assert scan_source(source) == []


@pytest.mark.parametrize(
    "line",
    [
        "import taskrunners._engine",
        "import taskrunners._engine as engine",
        "from taskrunners import _context",
        "from taskrunners.testing import _suite",
        "from taskrunners.testing._suite import requires",
        "import taskrunners.lowlevel as ll\nll._context",
    ],
)
def test_the_scanner_finds_every_form_of_private_import(line: str) -> None:
    assert scan_source(line), line
