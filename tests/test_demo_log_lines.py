"""At a terminal, with no logging configured, the demo shows its run log lines.

The demo runs under a pseudo-terminal (`pty`), as a person would run it: stderr is a
terminal, so taskrunners puts its readable handler on the `taskrunners` logger at
INFO, and the flow run's start and end, and the line its `total` task logs through
`get_run_logger()`, appear. (Piped, as in `tests/test_demo.py`, stderr stays empty.)
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pty = pytest.importorskip("pty", reason="pseudo-terminals need a POSIX system")

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{3} \| (?P<level>[A-Z]+) +\| (?P<who>(?:Flow|Task) run '[\w-]+') - (?P<msg>.*)$"
)


def run_in_terminal(args: list[str], timeout: float = 60.0) -> tuple[int, str]:
    """Run `args` with stdin, stdout and stderr on a new pseudo-terminal; return the
    exit status and everything it wrote."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKRUNNERS_")}
    env["TERM"] = "dumb"
    process = subprocess.Popen(args, cwd=ROOT, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the program has exited
                break
            if not data:
                break
            chunks.append(data)
        else:
            pytest.fail(f"{args} did not finish within {timeout} s: {b''.join(chunks)!r}")
        code = process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def test_demo_at_a_terminal_prints_run_log_lines() -> None:
    code, output = run_in_terminal([sys.executable, str(ROOT / "examples" / "demo.py")])
    assert code == 0, output
    lines = [m.groupdict() for line in output.splitlines() if (m := LINE.match(line.strip()))]
    flow_lines = [line for line in lines if line["who"].startswith("Flow run 'crawl-")]
    assert any(line["msg"].startswith("Beginning flow run") for line in flow_lines), output
    assert any(line["msg"] == "Finished in state Completed" for line in flow_lines), output
    task_lines = [line for line in lines if line["who"].startswith("Task run 'total-")]
    assert [line["msg"] for line in task_lines] == ["adding up 8 page sizes"], output
    assert all(line["level"] == "INFO" for line in lines), output
    assert "summary:" in output  # the demo's own output is still there
