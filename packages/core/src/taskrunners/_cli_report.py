"""`taskrunners report RUN.json -o run.html`: a saved run report as a timeline or a trace."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_command(commands: Any) -> None:
    """Add the `report` subcommand to the command line's subparsers."""
    report = commands.add_parser(
        "report",
        help="turn a saved run report into an HTML timeline or a Perfetto trace",
        description="Read a run report saved with my_flow(return_state=True).run.save(RUN.json) and write "
        "it as a self-contained HTML timeline (one row per worker, hover for details) or, with "
        "--format perfetto, as Chrome/Perfetto trace JSON (open it in ui.perfetto.dev).",
    )
    report.add_argument("path", metavar="RUN.json", help="the saved run report")
    report.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="where to write (default: RUN.html, or RUN.trace.json for perfetto)",
    )
    report.add_argument(
        "--format",
        choices=("html", "perfetto"),
        default=None,
        help="what to write (default: from the output's "
        "name: .html, else perfetto for .json; html without -o)",
    )


def run(args: argparse.Namespace) -> int:
    """Carry out `taskrunners report`; returns the exit status."""
    from pathlib import Path

    from .report import FlowRun

    source = Path(args.path)
    kind = args.format
    if kind is None:
        kind = "perfetto" if args.output and args.output.endswith(".json") else "html"
    output = (
        Path(args.output) if args.output else source.with_suffix(".html" if kind == "html" else ".trace.json")
    )
    try:
        flow_run = FlowRun.load(source)
    except (OSError, ValueError) as exc:
        print(f"taskrunners report: cannot read {str(source)!r}: {exc}", file=sys.stderr)
        return 1
    try:
        if kind == "html":
            flow_run.save_html(output)
        else:
            flow_run.save_perfetto(output)
    except OSError as exc:
        print(f"taskrunners report: cannot write {str(output)!r}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {output} ({len(flow_run.all_task_runs())} task runs, {len(flow_run.workers())} workers)")
    return 0
