"""`taskrunners migrate PATH...`: port files, show the diff, or check."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import libcst as cst

from ._codemod import Migration, migrate_source

#: Directories never searched for modules.
_SKIPPED = frozenset({"__pycache__", "node_modules", "site-packages", "venv"})


def python_files(paths: Sequence[str]) -> Iterator[tuple[str, Path | None]]:
    """Each `*.py` file named or found (recursively) under the paths, in order.

    A path that does not exist comes back as `(path, None)`. Hidden directories
    (`.git`, `.venv`, ...) and `__pycache__`, `venv`, `site-packages` are not searched.
    """
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for found in sorted(path.rglob("*.py")):
                parts = found.relative_to(path).parts[:-1]
                if not any(part.startswith(".") or part in _SKIPPED for part in parts):
                    yield str(found), found
        elif path.is_file():
            yield given, path
        else:
            yield given, None


def run(
    paths: Sequence[str],
    *,
    diff: bool = False,
    check: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Port the Python files under `paths` from Prefect to taskrunners.

    By default the files are rewritten in place. Each use of a Prefect API that has no
    counterpart is printed to `err` as `file:line: api: ...; see docs/...#section`.

    Args:
        paths: Files and directories (searched recursively for `*.py`).
        diff: Print a unified diff to `out` and write nothing.
        check: Write nothing; the status is 1 when a file would change.
        out: Where the diff goes (standard output by default).
        err: Where notes and the summary go (standard error by default).

    Returns:
        The exit status: 0 done (or, with `--check`, nothing would change), 1 with
        `--check` when a file would change, 2 when a path is missing or not Python.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    write = not (diff or check)
    status = 0
    changed = unchanged = notes = 0
    for shown, path in python_files(paths):
        if path is None:
            print(f"{shown}: no such file or directory", file=err)
            status = 2
            continue
        try:
            migration = migrate_source(path.read_bytes())
        except cst.ParserSyntaxError as exc:
            print(f"{shown}:{exc.raw_line}: cannot parse: {exc.message}", file=err)
            status = 2
            continue
        for note in migration.notes:
            print(
                f"{shown}:{note.line}: {note.api} has no counterpart in taskrunners; see {note.link}",
                file=err,
            )
        notes += len(migration.notes)
        if not migration.changed:
            unchanged += 1
            continue
        changed += 1
        if diff:
            out.write(_unified_diff(shown, migration))
        if write:
            path.write_bytes(migration.code)
        if check:
            print(f"would rewrite {shown}", file=err)
    verb = "rewrote" if write else "would rewrite"
    print(f"{verb} {changed} file(s), {unchanged} unchanged; {notes} note(s)", file=err)
    if check and changed and status == 0:
        status = 1
    return status


def _unified_diff(shown: str, migration: Migration) -> str:
    def lines(data: bytes) -> list[str]:
        return data.decode("utf-8", errors="surrogateescape").splitlines(keepends=True)

    diff = difflib.unified_diff(lines(migration.source), lines(migration.code), *_labels(shown))
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in diff
    )


def _labels(shown: str) -> tuple[str, str]:
    if Path(shown).is_absolute():
        return shown, shown
    return f"a/{shown}", f"b/{shown}"
