"""The `taskrunners` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import _cli_report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="taskrunners", description="taskrunners command line")
    commands = parser.add_subparsers(dest="command", required=True)
    runners = commands.add_parser("runners", help="list the installed task runners")
    runners.add_argument(
        "--load",
        action="store_true",
        help="also import each plugin and report whether it loads",
    )
    commands.add_parser("version", help="print the version of taskrunners")
    _add_check_command(commands)
    _add_migrate_command(commands)
    _cli_report.add_command(commands)
    args = parser.parse_args(argv)
    if args.command == "version":
        from . import __version__

        print(__version__)
        return 0
    if args.command == "check":
        return _check(args)
    if args.command == "migrate":
        return _migrate(args)
    if args.command == "report":
        return _cli_report.run(args)
    return _list_runners(load=args.load)


def _list_runners(load: bool) -> int:
    from .plugins import _install_hint, available_runners, load_runner

    entries = available_runners()
    if not entries:
        print(f"no task runners are installed; {_install_hint('taskrunners')}")
        return 1
    rows = [("NAME", "DISTRIBUTION", "OBJECT") + (("STATUS",) if load else ())]
    failed = 0
    for entry in entries:
        row: tuple[str, ...] = (entry.name, f"{entry.distribution} {entry.version}", entry.value)
        if load:
            try:
                cls = load_runner(entry.name)
            except Exception as exc:  # noqa: BLE001 - report every broken plugin, then go on
                failed += 1
                row += (f"error: {exc}",)
            else:
                row += (f"ok: {cls.__module__}.{cls.__qualname__}",)
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        print("  ".join(cells).rstrip())
    if failed:
        print(f"{failed} runner plugin(s) failed to load", file=sys.stderr)
    return 1 if failed else 0


def _add_check_command(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="run the conformance suite against an installed runner",
        description="Run the conformance suite (taskrunners.testing) against the installed runner NAME "
        "and print one row per test: passed, skipped (with the capability the runner lacks), "
        "xfailed (a known failure the runner declares) or failed (with the error). Exit status: "
        "0 when no test failed, 1 when one did, 2 when the suite could not run. Needs pytest.",
    )
    check.add_argument("name", help="the runner's name, as `taskrunners runners` lists it")
    check.add_argument(
        "-k", dest="keyword", metavar="EXPR", help="run only the tests that match (as pytest -k)"
    )
    check.add_argument(
        "--deadline", type=_positive(float), metavar="SECONDS", help="how long one flow may take (default 60)"
    )
    check.add_argument(
        "--many-runs", type=_positive(int), metavar="N", help="runs in the many-runs test (default 10000)"
    )
    check.add_argument(
        "--runner-arg",
        dest="runner_args",
        action="append",
        type=_keyword_argument,
        default=[],
        metavar="KEY=VALUE",
        help="a keyword argument for the runner class (VALUE as a Python literal, else a string); repeatable",
    )
    check.add_argument(
        "--one-worker",
        dest="one_worker",
        action="append",
        type=_keyword_argument,
        metavar="KEY=VALUE",
        help="a keyword argument that makes the runner run one task at a time (e.g. max_workers=1); "
        "without it the one-worker tests are skipped; repeatable",
    )
    check.add_argument(
        "-v", "--verbose", action="store_true", help="also print pytest's report, with tracebacks"
    )


def _keyword_argument(text: str) -> tuple[str, Any]:
    import ast

    key, equals, value = text.partition("=")
    if not equals or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a Python name, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def _check(args: argparse.Namespace) -> int:
    try:
        import pytest  # noqa: F401  (the suite is pytest tests)
    except ImportError:
        print(
            'taskrunners check needs pytest: pip install "taskrunners-core[testing]"',
            file=sys.stderr,
        )
        return 2
    from .testing._check import check

    return check(
        args.name,
        runner_kwargs=dict(args.runner_args),
        one_worker_kwargs=dict(args.one_worker) if args.one_worker else None,
        keyword=args.keyword,
        deadline=args.deadline,
        many_runs=args.many_runs,
        verbose=args.verbose,
    )


def _add_migrate_command(commands: Any) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="port Prefect code to taskrunners (rewrites imports and names)",
        description="Port Prefect code to taskrunners: rewrite the imports of prefect, prefect-dask and "
        "prefect-ray, and the names taskrunners spells otherwise, keeping comments and layout. Each "
        "use of a Prefect API with no counterpart is printed as FILE:LINE with the docs section that "
        "says what to do instead. Files are rewritten in place unless --diff or --check is given. "
        "Exit status: 0 done, 1 with --check when a file would change, 2 when a path is missing or "
        "not Python. Needs libcst.",
    )
    migrate.add_argument("paths", nargs="+", metavar="PATH", help="a file, or a directory searched for *.py")
    mode = migrate.add_mutually_exclusive_group()
    mode.add_argument("--diff", action="store_true", help="print a unified diff and write nothing")
    mode.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file would change")


def _migrate(args: argparse.Namespace) -> int:
    try:
        import libcst  # noqa: F401  (the codemod works on libcst's syntax trees)
    except ImportError:
        print(
            'taskrunners migrate needs libcst: pip install "taskrunners[migrate]" '
            '(or "taskrunners-core[migrate]")',
            file=sys.stderr,
        )
        return 2
    from ._migrate import run

    return run(args.paths, diff=args.diff, check=args.check)
