"""The codemod behind `taskrunners migrate`: Prefect source in, taskrunners source out.

It works on libcst's concrete syntax tree, so comments, blank lines, quotes and the
layout of every line it does not rewrite stay as they were. Two passes over one tree:
`_Scan` resolves every name to the Prefect API it stands for (libcst's scope analysis,
so a local variable called `task` is left alone) and decides what each import and each
use becomes; `_Rewrite` applies those decisions. What to rewrite comes from `_table`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import libcst as cst
from libcst.metadata import (
    MetadataWrapper,
    ParentNodeProvider,
    PositionProvider,
    QualifiedNameProvider,
    QualifiedNameSource,
)

from . import _table

_TASK_OR_FLOW = {
    "prefect.task": "task",
    "prefect.tasks.task": "task",
    "taskrunners.task": "task",
    "prefect.flow": "flow",
    "prefect.flows.flow": "flow",
    "taskrunners.flow": "flow",
}

_Chain = cst.Name | cst.Attribute


@dataclass(frozen=True)
class Note:
    """A Prefect API at a line of the source that taskrunners has no counterpart for.

    Attributes:
        line: The line (1-based) where the source uses it.
        api: The API as the source spells it (`prefect.serve`, `@task(cache_key_fn=...)`).
        section: The anchor of the docs section that says what to do instead.
    """

    line: int
    api: str
    section: str

    @property
    def link(self) -> str:
        """Where the docs explain it: `docs/migrate-command.md#<section>`."""
        return f"{_table.GUIDE}#{self.section}"


@dataclass(frozen=True)
class Migration:
    """The result of porting one module.

    Attributes:
        source: The module as it was.
        code: The module ported (the same bytes when nothing changed).
        notes: What has no counterpart, in source order.
    """

    source: bytes
    code: bytes
    notes: tuple[Note, ...]

    @property
    def changed(self) -> bool:
        """Whether the port differs from the source."""
        return self.code != self.source


def migrate_source(source: str | bytes) -> Migration:
    """Port one module of Prefect code to taskrunners.

    Args:
        source: The module's text (bytes keep its encoding and line endings exactly).

    Returns:
        The ported module and the notes on what it could not port.

    Raises:
        libcst.ParserSyntaxError: The source is not valid Python.
    """
    original = source.encode("utf-8") if isinstance(source, str) else source
    wrapper = MetadataWrapper(cst.parse_module(original))
    scan = _Scan()
    wrapper.visit(scan)
    notes = tuple(sorted(scan.notes, key=lambda n: n.line))
    if not scan.touches_anything():
        return Migration(original, original, notes)
    ported = wrapper.module.visit(_Rewrite(scan))
    return Migration(original, ported.bytes, notes)


# -- the scan: what each import and each use becomes ----------------------------------


@dataclass
class _ModuleBinding:
    """A name bound to a Prefect module (`import prefect`, `import prefect_dask as pd`)."""

    module: str  # the Prefect module the name stands for
    aliased: bool  # `import M as A`: A may stay, bound to M's counterpart
    from_import: bool  # `from prefect import task_runners`
    needs: list[str] = field(default_factory=list)  # modules the rewritten uses need
    keeps_alias: bool = False  # some use stays `A.name`
    unresolved: bool = False  # some use has no counterpart: keep the Prefect import
    used: bool = False


def _dotted(node: cst.BaseExpression) -> str:
    name = cst.helpers.get_full_name_for_node(node)
    assert name is not None, "an import names a dotted module"
    return name


def _root(dotted: str) -> str:
    return dotted.split(".", 1)[0]


def _unsupported(qualified: str) -> str | None:
    """The section for a Prefect path with no counterpart (by path or by prefix)."""
    parts = qualified.split(".")
    for end in range(len(parts), 0, -1):
        section = _table.UNSUPPORTED.get(".".join(parts[:end]))
        if section is not None:
            return section
    return None


def _is_prefect_module(qualified: str) -> bool:
    if qualified in _table.MODULES or qualified in _table.PREFECT_PACKAGES:
        return True
    prefix = qualified + "."
    return any(name.startswith(prefix) for name in _table.NAMES)


class _Scan(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (QualifiedNameProvider, PositionProvider, ParentNodeProvider)

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[Note] = []
        self.bindings: dict[tuple[cst.CSTNode, str], _ModuleBinding] = {}  # by scope and bound name
        self.replace: dict[cst.CSTNode, str] = {}  # a use -> the dotted expression it becomes
        self.renames: dict[str, str] = {}  # a name from `from prefect... import` -> its new name
        self.rename_nodes: set[cst.Name] = set()
        self.imports: dict[cst.CSTNode, None] = {}  # the Prefect import statements
        self.existing_imports: set[str] = set()  # `import M` already in the module
        self.ported_modules = False  # the module imports prefect (or taskrunners)
        self._taken: set[str] = set()
        self._in_import = 0
        self._kinds: dict[str, str] = {}  # a decorated function's name -> "task" / "flow"
        self._calls: list[cst.Call] = []
        self._scopes: list[cst.CSTNode] = []  # the module, functions and classes we are in

    # -- helpers

    def _line(self, node: cst.CSTNode) -> int:
        return int(self.get_metadata(PositionProvider, node).start.line)

    def _qualified(self, node: cst.CSTNode) -> set[str]:
        names = self.get_metadata(QualifiedNameProvider, node, set())
        return {q.name for q in names if q.source is QualifiedNameSource.IMPORT}

    def _prefect(self, node: cst.CSTNode) -> list[str]:
        return sorted(q for q in self._qualified(node) if _root(q) in _table.PREFECT_PACKAGES)

    def _note(self, node: cst.CSTNode, api: str, section: str) -> None:
        self.notes.append(Note(self._line(node), api, section))

    def _bind(self, name: str, binding: _ModuleBinding, replace: bool = True) -> _ModuleBinding:
        key = (self._scopes[-1], name)
        if replace or key not in self.bindings:
            self.bindings[key] = binding
        return self.bindings[key]

    def _binding(self, name: str) -> _ModuleBinding | None:
        """The module binding a name refers to, from the innermost scope out."""
        for scope in reversed(self._scopes):
            binding = self.bindings.get((scope, name))
            if binding is not None:
                return binding
        return None

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._scopes.pop()

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._scopes.append(node)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self._scopes.pop()

    def touches_anything(self) -> bool:
        return bool(self.imports or self.replace or self.rename_nodes or self.ported_modules)

    # -- imports

    def visit_Module(self, node: cst.Module) -> None:
        names: set[str] = set()

        class Names(cst.CSTVisitor):
            def visit_Name(self, name: cst.Name) -> None:
                names.add(name.value)

        node.visit(Names())
        self._taken = names
        self._scopes.append(node)
        for statement in node.body:
            if isinstance(statement, cst.SimpleStatementLine):
                for small in statement.body:
                    if isinstance(small, cst.Import):
                        self.existing_imports.update(_dotted(a.name) for a in small.names if a.asname is None)

    def visit_Import(self, node: cst.Import) -> None:
        self._in_import += 1
        for alias in node.names:
            module = _dotted(alias.name)
            if _root(module) in _ours_and_prefect():
                self.ported_modules = True
            if _root(module) not in _table.PREFECT_PACKAGES:
                continue
            self.imports[node] = None
            if alias.asname is not None:
                binding = self._bind(_dotted(alias.asname.name), _ModuleBinding(module, True, False))
            else:
                binding = self._bind(
                    _root(module), _ModuleBinding(_root(module), False, False), replace=False
                )
            section = _unsupported(module)
            if section is not None:
                self._note(alias, f"import {module}", section)
                binding.unresolved = True

    def leave_Import(self, original_node: cst.Import) -> None:
        self._in_import -= 1

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        self._in_import += 1
        if node.relative or node.module is None:
            return
        module = _dotted(node.module)
        if _root(module) in _ours_and_prefect():
            self.ported_modules = True
        if _root(module) not in _table.PREFECT_PACKAGES:
            return
        self.imports[node] = None
        if isinstance(node.names, cst.ImportStar):
            if module not in _table.MODULES:
                self._note(node, f"from {module} import *", _unsupported(module) or _table.OTHER)
            return
        for alias in node.names:
            name = _dotted(alias.name)
            qualified = f"{module}.{name}"
            bound = _dotted(alias.asname.name) if alias.asname else name
            if qualified in _table.NAMES:
                new = _table.NAMES[qualified][1]
                if alias.asname is None and new != name and new not in self._taken:
                    self.renames[name] = new
                    self._taken.add(new)
                continue
            section = _unsupported(qualified)
            if section is None and _is_prefect_module(qualified):
                self._bind(bound, _ModuleBinding(qualified, alias.asname is not None, True))
                continue
            self._note(alias, qualified, section or _table.OTHER)

    def leave_ImportFrom(self, original_node: cst.ImportFrom) -> None:
        self._in_import -= 1

    # -- uses

    def visit_Name(self, node: cst.Name) -> None:
        self._use(node)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self._use(node)

    def _use(self, node: _Chain) -> None:
        if self._in_import:
            return
        if isinstance(node, cst.Attribute) and node.attr.value in _table.ATTRIBUTES:
            self.replace.setdefault(node, "")  # decided in leave_Module: only in ported modules
        parent = self.get_metadata(ParentNodeProvider, node, None)
        if isinstance(parent, cst.Attribute) and (parent.value is node or parent.attr is node):
            return  # not the outermost node of a dotted chain (or an attribute's name)
        chain: list[_Chain] = []
        current: cst.BaseExpression = node
        while isinstance(current, cst.Attribute):
            chain.append(current)
            current = current.value
        if not isinstance(current, cst.Name):
            return
        chain.append(current)
        base = current
        longest = None
        for link in chain:
            for qualified in self._prefect(link):
                longest = longest or qualified
                if qualified in _table.NAMES:
                    self._port(link, base, qualified)
                    return
                section = _unsupported(qualified)
                if section is not None:
                    binding = self._binding(base.value)
                    if binding is not None:
                        binding.used = binding.unresolved = True
                    if isinstance(link, cst.Attribute):  # a bare name is noted at its import
                        self._note(link, qualified, section)
                    return
        binding = self._binding(base.value)
        if longest is not None and binding is not None and self._prefect(base):
            binding.used = binding.unresolved = True  # the Prefect import stays for this use
            self._note(node, longest, _table.OTHER)

    def _port(self, link: _Chain, base: cst.Name, qualified: str) -> None:
        module, name = _table.NAMES[qualified]
        if isinstance(link, cst.Name):  # a name from `from prefect... import`
            if link.value in self.renames:
                self.rename_nodes.add(link)
            return
        binding = self._binding(base.value)
        if binding is None:
            return
        binding.used = True
        if binding.aliased and not binding.from_import and _table.MODULES.get(binding.module) == module:
            binding.keeps_alias = True
            self.replace[link] = f"{base.value}.{name}"
            return
        if module not in binding.needs:
            binding.needs.append(module)
        self.replace[link] = f"{module}.{name}"

    # -- tasks, flows and their calls

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._scopes.append(node)
        for decorator in node.decorators:
            expression = decorator.decorator
            if isinstance(expression, cst.Call):
                expression = expression.func
            for qualified in self._qualified(expression):
                if qualified in _TASK_OR_FLOW:
                    self._kinds[node.name.value] = _TASK_OR_FLOW[qualified]

    def visit_Call(self, node: cst.Call) -> None:
        self._calls.append(node)

    def leave_Module(self, original_node: cst.Module) -> None:
        for call in self._calls:
            self._check_call(call)
        for node, target in list(self.replace.items()):
            if target == "":  # an attribute Prefect names otherwise (future.wrapped_future)
                if self.ported_modules:
                    assert isinstance(node, cst.Attribute)
                    self.replace[node] = _table.ATTRIBUTES[node.attr.value]
                else:
                    del self.replace[node]

    def _kind(self, node: cst.BaseExpression) -> str | None:
        if isinstance(node, cst.Name) and node.value in self._kinds:
            return self._kinds[node.value]
        for qualified in self._qualified(node):
            if qualified in _TASK_OR_FLOW:
                return _TASK_OR_FLOW[qualified]
        return None

    def _check_call(self, call: cst.Call) -> None:
        func = call.func
        keywords = [arg.keyword.value for arg in call.args if arg.keyword is not None]
        for qualified in self._qualified(func):
            prefect = _table.OURS_KEYWORDS.get(qualified, qualified)
            if prefect in _table.KEYWORDS and prefect in _table.NAMES:
                self._check_keywords(call, prefect, keywords, _code(func))
        if not isinstance(func, cst.Attribute):
            return
        method, receiver = func.attr.value, func.value
        kind = self._kind(receiver)
        if kind is None:
            return
        if method == "with_options":
            self._check_keywords(call, f"prefect.{kind}", keywords, _code(func))
        if method in _table.METHODS:
            kinds, section = _table.METHODS[method]
            if kind in kinds and not self._prefect(func):  # a Prefect path is noted as a use
                self._note(call, f"{_code(func)}()", section)
        for keyword in keywords:
            section_or_none = _table.METHOD_KEYWORDS.get((method, keyword))
            if section_or_none is not None and kind == "task":
                self._note(call, f"{_code(func)}({keyword}=...)", section_or_none)

    def _check_keywords(self, call: cst.Call, prefect: str, keywords: list[str], spelled: str) -> None:
        accepted = _accepted(*_table.NAMES[prefect])
        if accepted is None:
            return
        for keyword in keywords:
            if keyword in _table.KEYWORDS[prefect] and keyword not in accepted:
                section = _table.KEYWORD_SECTIONS.get(keyword, _table.OPTIONS)
                self._note(call, f"{spelled}({keyword}=...)", section)


def _ours_and_prefect() -> frozenset[str]:
    return _table.PREFECT_PACKAGES | {"taskrunners"}


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


_SIGNATURES: dict[tuple[str, str], frozenset[str] | None] = {}


def _accepted(module: str, name: str) -> frozenset[str] | None:
    """The keywords our counterpart accepts (None: it is not installed, or takes any)."""
    key = (module, name)
    if key not in _SIGNATURES:
        try:
            target: Callable[..., Any] = getattr(importlib.import_module(module), name)
            parameters = inspect.signature(target).parameters.values()
        except (ImportError, AttributeError, TypeError, ValueError):
            _SIGNATURES[key] = None
        else:
            _SIGNATURES[key] = frozenset(
                p.name
                for p in parameters
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            )
    return _SIGNATURES[key]


# -- the rewrite -------------------------------------------------------------------------


def _expression(dotted: str) -> cst.Attribute | cst.Name:
    parts = dotted.split(".")
    node: cst.Attribute | cst.Name = cst.Name(parts[0])
    for part in parts[1:]:
        node = cst.Attribute(value=node, attr=cst.Name(part))
    return node


def _import(module: str, asname: str | None = None) -> cst.Import:
    alias = cst.ImportAlias(name=_expression(module), asname=cst.AsName(cst.Name(asname)) if asname else None)
    return cst.Import(names=[alias])


class _Rewrite(cst.CSTTransformer):
    def __init__(self, scan: _Scan) -> None:
        super().__init__()
        self.scan = scan
        self._emitted: set[tuple[cst.CSTNode, str]] = set()  # (scope, module) imported there
        self._bound_done: set[tuple[cst.CSTNode, str]] = set()  # (scope, name) ported there
        self._scopes: list[cst.CSTNode] = []
        self._statements: dict[cst.CSTNode, list[cst.BaseSmallStatement]] = {}

    # -- scopes: a binding belongs to the module, function or class it is made in

    def visit_Module(self, node: cst.Module) -> None:
        self._scopes.append(node)
        self._emitted.update((node, module) for module in self.scan.existing_imports)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._scopes.append(node)

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef:
        self._scopes.pop()
        return updated_node

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._scopes.append(node)

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        self._scopes.pop()
        return updated_node

    # -- uses

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        if original_node in self.scan.rename_nodes:
            return updated_node.with_changes(value=self.scan.renames[original_node.value])
        return updated_node

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        target = self.scan.replace.get(original_node)
        if target is None:
            return updated_node
        if (
            original_node.attr.value in _table.ATTRIBUTES
            and target == _table.ATTRIBUTES[original_node.attr.value]
        ):
            value: cst.BaseExpression = updated_node.value
            *inner, last = target.split(".")
            for part in inner:
                value = cst.Attribute(value=value, attr=cst.Name(part))
            return updated_node.with_changes(value=value, attr=cst.Name(last))
        new = _expression(target)
        return new.with_changes(lpar=updated_node.lpar, rpar=updated_node.rpar)

    # -- imports

    def leave_Import(self, original_node: cst.Import, updated_node: cst.Import) -> cst.Import:
        if original_node not in self.scan.imports:
            return updated_node
        kept: list[cst.ImportAlias] = []
        added: list[cst.BaseSmallStatement] = []
        for alias in updated_node.names:
            module = _dotted(alias.name)
            if _root(module) not in _table.PREFECT_PACKAGES:
                kept.append(alias)
                continue
            bound = (self._scopes[-1], _dotted(alias.asname.name) if alias.asname else _root(module))
            binding = self.scan.bindings[bound]
            counterpart = _table.MODULES.get(module)
            if binding.unresolved:
                kept.append(alias)
            elif alias.asname is not None and counterpart and (binding.keeps_alias or not binding.used):
                kept.append(alias.with_changes(name=_expression(counterpart)))
            elif alias.asname is None and counterpart and not binding.used and bound not in self._bound_done:
                added.append(_import(counterpart))
            if bound not in self._bound_done:
                self._bound_done.add(bound)
                added.extend(self._needs(binding))
        return self._split(original_node, updated_node, kept, added)

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom) -> cst.ImportFrom:
        if original_node not in self.scan.imports:
            return updated_node
        assert updated_node.module is not None
        module = _dotted(updated_node.module)
        if isinstance(updated_node.names, cst.ImportStar):
            if module in _table.MODULES:
                return updated_node.with_changes(module=_expression(_table.MODULES[module]))
            return updated_node
        groups: dict[str, list[cst.ImportAlias]] = {}
        kept: list[cst.ImportAlias] = []
        added: list[cst.BaseSmallStatement] = []
        for alias in updated_node.names:
            name = _dotted(alias.name)
            qualified = f"{module}.{name}"
            if qualified in _table.NAMES:
                target_module, new = _table.NAMES[qualified]
                groups.setdefault(target_module, []).append(self._alias(alias, name, new))
                continue
            bound = (self._scopes[-1], _dotted(alias.asname.name) if alias.asname else name)
            binding = self.scan.bindings.get(bound)
            if binding is None or binding.module != qualified or binding.unresolved:
                kept.append(alias)
            if binding is not None and binding.module == qualified and bound not in self._bound_done:
                self._bound_done.add(bound)
                added.extend(self._needs(binding))
        if len(groups) == 1 and not kept and not added:
            [(target_module, aliases)] = groups.items()
            return updated_node.with_changes(module=_expression(target_module), names=aliases)
        statements: list[cst.BaseSmallStatement] = [
            self._from(updated_node, _expression(target), aliases) for target, aliases in groups.items()
        ]
        if kept:
            statements.append(self._from(updated_node, updated_node.module, kept))
        self._statements[original_node] = statements + added
        return updated_node

    def _alias(self, alias: cst.ImportAlias, name: str, new: str) -> cst.ImportAlias:
        if alias.asname is not None:
            asname = _dotted(alias.asname.name)
            if asname == new != name:  # `PrefectFuture as Future`; `x as x` is a re-export
                return alias.with_changes(name=cst.Name(new), asname=None)
            return alias.with_changes(name=cst.Name(new))
        if new == name or self.scan.renames.get(name) == new:
            return alias.with_changes(name=cst.Name(new))
        return alias.with_changes(name=cst.Name(new), asname=cst.AsName(cst.Name(name)))

    def _needs(self, binding: _ModuleBinding) -> list[cst.BaseSmallStatement]:
        statements: list[cst.BaseSmallStatement] = []
        for module in binding.needs:
            if (self._scopes[-1], module) not in self._emitted:
                self._emitted.add((self._scopes[-1], module))
                statements.append(_import(module))
        return statements

    def _from(
        self, original: cst.ImportFrom, module: cst.Attribute | cst.Name, aliases: Sequence[cst.ImportAlias]
    ) -> cst.ImportFrom:
        """One of the statements an import is split into, in the original's layout."""
        aliases = list(aliases)
        last = aliases[-1]
        multiline = original.lpar is not None and isinstance(
            original.lpar.whitespace_after, cst.ParenthesizedWhitespace
        )
        if not multiline or original.rpar is None:
            aliases[-1] = last.with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return original.with_changes(module=module, names=aliases)
        # One alias a line: each part ends with `NAME,  # its comment` and `)` on a line.
        if isinstance(last.comma, cst.Comma) and isinstance(
            last.comma.whitespace_after, cst.ParenthesizedWhitespace
        ):
            first_line = last.comma.whitespace_after.first_line
        elif isinstance(original.rpar.whitespace_before, cst.ParenthesizedWhitespace):
            first_line = original.rpar.whitespace_before.first_line
        else:
            first_line = cst.TrailingWhitespace()
        closing = cst.ParenthesizedWhitespace(
            first_line=first_line, indent=True, last_line=cst.SimpleWhitespace("")
        )
        aliases[-1] = last.with_changes(comma=cst.Comma(whitespace_after=closing))
        rpar = original.rpar.with_changes(whitespace_before=cst.SimpleWhitespace(""))
        return original.with_changes(module=module, names=aliases, rpar=rpar)

    def _split(
        self,
        original: cst.Import,
        updated: cst.Import,
        kept: list[cst.ImportAlias],
        added: list[cst.BaseSmallStatement],
    ) -> cst.Import:
        if kept:
            kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            if kept == list(updated.names) and not added:
                return updated
            self._statements[original] = [updated.with_changes(names=kept), *added]
        else:
            self._statements[original] = added
        return updated

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        if not any(small in self._statements for small in original_node.body):
            return updated_node
        body: list[cst.BaseSmallStatement] = []
        for before, after in zip(original_node.body, updated_node.body):
            body.extend(self._statements.get(before, [after]))
        if not body:
            return cst.RemoveFromParent()
        body = [small.with_changes(semicolon=cst.MaybeSentinel.DEFAULT) for small in body]
        if len(original_node.body) > 1:  # keep one line: `import a; import b`
            return updated_node.with_changes(body=body)
        lines = [cst.SimpleStatementLine(body=[small]) for small in body]
        lines[0] = lines[0].with_changes(  # the line's comments stay with its first part
            leading_lines=updated_node.leading_lines, trailing_whitespace=updated_node.trailing_whitespace
        )
        return cst.FlattenSentinel(lines)
