"""Ctrl-C on a busy flow, per runner: how long the process takes to exit, and how many
runs start after the signal.

For each runner, a child process runs a flow that maps a 2-second task over 100
inputs. Each run writes the time it started to a file of its own. Once the first run
has started, this script sends the child SIGINT (what Ctrl-C sends; `--signal TERM`
sends SIGTERM, as `kill`, systemd or Kubernetes do) once no further run has started
for `--settle` seconds (0.5 by default; the workers are all busy then: a run started in
the same millisecond as the signal was on its way to a worker before the runner could
know), and measures:

- the seconds from the signal to the child's exit, and its exit status;
- the runs whose start time is after the signal.

Targets: exit within 5 s, and no run started after the signal, on every runner.

    python benchmarks/interrupt.py                       # threads processes dask ray
    python benchmarks/interrupt.py threads processes --signal TERM
    python benchmarks/interrupt.py --group               # to the process group, as a terminal does
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNNERS = ("threads", "processes", "dask", "ray")
RUNS = 100
SECONDS = 2.0
EXIT_TARGET = 5.0

CHILD = """
import sys, time
from pathlib import Path
from taskrunners import flow, task

folder = Path(sys.argv[1])

@task
def two_seconds(i: int) -> int:
    (folder / f"start-{i}").write_text(repr(time.time()))
    time.sleep(SECONDS)
    return i

@flow(task_runner=sys.argv[2])
def busy() -> list[int]:
    return two_seconds.map(range(RUNS))

if __name__ == "__main__":
    busy()
"""


def measure(
    runner: str, signum: int, deadline: float, settle: float, group: bool = False
) -> dict[str, object]:
    """Run the busy flow on `runner` in a child, signal it once its first run starts."""
    with tempfile.TemporaryDirectory(prefix="taskrunners-interrupt-") as folder:
        script = Path(folder) / "busy.py"
        script.write_text(f"SECONDS = {SECONDS!r}\nRUNS = {RUNS!r}\n" + CHILD)
        child = subprocess.Popen(
            [sys.executable, str(script), folder, runner],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=group,
        )
        try:
            limit = time.monotonic() + deadline
            seen, quiet_since = 0, time.monotonic()
            while True:
                if child.poll() is not None or time.monotonic() > limit:
                    raise RuntimeError(f"{runner}: no run started: {child.communicate()[1][-2000:]}")
                count = sum(1 for _ in Path(folder).glob("start-*"))
                if count != seen:
                    seen, quiet_since = count, time.monotonic()
                if seen and time.monotonic() - quiet_since >= settle:
                    break
                time.sleep(0.01)
            signalled = time.time()
            sent = time.monotonic()
            if group:  # as a terminal does: the whole foreground process group
                os.killpg(child.pid, signum)
            else:
                child.send_signal(signum)
            try:
                _, stderr = child.communicate(timeout=deadline)
            except subprocess.TimeoutExpired:
                child.kill()
                _, stderr = child.communicate()
            exited = time.monotonic() - sent
            starts = [float(p.read_text() or 0) for p in Path(folder).glob("start-*")]
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    return {
        "runner": runner,
        "signal": signal.Signals(signum).name,
        "exit_seconds": round(exited, 2),
        "exit_status": child.returncode,
        "started_before": sum(1 for s in starts if s <= signalled),
        "started_after": sum(1 for s in starts if s > signalled),
        "met": exited <= EXIT_TARGET and all(s <= signalled for s in starts),
        "stderr_tail": stderr.strip().splitlines()[-1:] if stderr else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runners", nargs="*", default=list(RUNNERS), help="runner names (default: all four)")
    parser.add_argument("--signal", default="INT", choices=("INT", "TERM"), help="the signal to send")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds before giving up on a child")
    parser.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="signal once no run has started for this long (0: at the first)",
    )
    parser.add_argument(
        "--group",
        action="store_true",
        help="signal the child's whole process group, as a terminal's Ctrl-C does",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    signum = int(signal.SIGINT if args.signal == "INT" else signal.SIGTERM)
    rows = []
    print(f"{'runner':<10} {'signal':<7} {'exit s':>7} {'status':>6} {'before':>6} {'after':>5}  met")
    for runner in args.runners:
        row = measure(runner, signum, args.deadline, args.settle, args.group)
        rows.append(row)
        print(
            f"{runner:<10} {row['signal']:<7} {row['exit_seconds']:>7} {row['exit_status']!s:>6} "
            f"{row['started_before']:>6} {row['started_after']:>5}  {'yes' if row['met'] else 'NO'}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    sys.exit(0 if all(row["met"] for row in rows) else 1)


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
