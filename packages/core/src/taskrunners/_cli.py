"""The `taskrunners` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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
    args = parser.parse_args(argv)
    if args.command == "version":
        from . import __version__

        print(__version__)
        return 0
    return _list_runners(load=args.load)


def _list_runners(load: bool) -> int:
    from .plugins import available_runners, load_runner

    entries = available_runners()
    if not entries:
        print("no task runners are installed; pip install taskrunners")
        return 1
    rows = [("NAME", "DISTRIBUTION", "OBJECT") + (("STATUS",) if load else ())]
    failed = 0
    for entry in entries:
        row: tuple[str, ...] = (entry.name, f"{entry.distribution} {entry.version}", entry.value)
        if load:
            try:
                cls = load_runner(entry.name)
            except Exception as exc:  # report every broken plugin, then go on
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
