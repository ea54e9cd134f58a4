"""Progress bars: on at a terminal for work that lasts, off elsewhere, switchable; the demo draws one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from taskrunners import _progress

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_progress_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_progress.ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)


def test_the_option_decides_first(no_progress_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_progress.ENV, "1")
    assert _progress.enabled(False) is False
    monkeypatch.setenv(_progress.ENV, "0")
    assert _progress.enabled(True) is True


def test_the_environment_variable_decides_without_an_option(
    no_progress_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_progress.ENV, "1")
    assert _progress.enabled(None) is True
    for off in ("0", "false", "off", "no"):
        monkeypatch.setenv(_progress.ENV, off)
        assert _progress.enabled(None) is False


def test_off_where_standard_error_is_not_a_terminal(
    no_progress_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Pipe:
        def isatty(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stderr", Pipe())
    assert _progress.enabled(None) is False


def test_off_in_ci_even_at_a_terminal(no_progress_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setenv("TERM", "xterm")
    assert _progress.enabled(None) is True
    monkeypatch.setattr(sys, "stderr", Terminal())  # a new stream: checked again
    monkeypatch.setenv("CI", "true")
    assert _progress.enabled(None) is False


def test_nothing_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "_rich", [False])
    assert _progress.enabled(True) is False
    assert _progress.track("wait", []) is None


SCRIPT = """
import sys
import time
from taskrunners import as_completed, flow, wait
from taskrunners import _progress
from taskrunners.testing import tasks as t

def until_drawn():
    # Ordered by the display itself, not by a sleep: go on once a bar is drawn.
    while not (_progress.active() is not None and _progress.active().drawn):
        time.sleep(0.01)

@flow(task_runner=sys.argv[1], progress=True)
def work():
    first = t.identity.map(range(3))
    wait(first, progress=True)
    until_drawn()
    more = t.identity.map(range(5))
    list(as_completed(more, progress=True))
    return sum(f.result() for f in first + more)

@flow(task_runner=sys.argv[1], progress=True)
def quick():
    return 1

if __name__ == "__main__":
    assert quick() == 1
    print("quick done", file=sys.stderr, flush=True)
    assert work() == 13
"""


@pytest.mark.parametrize("runner", ["threads", "processes"])
def test_a_flow_with_progress_draws_rows_by_state_on_any_runner(runner: str, tmp_path: Path) -> None:
    script = tmp_path / "progress_flow.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "COLUMNS": "160"}
    env.pop(_progress.ENV, None)
    done = subprocess.run(
        [sys.executable, str(script), runner],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    quick, _, shown = done.stderr.partition("quick done\n")
    assert quick == ""  # a flow over within half a second draws nothing
    assert "flow work" in shown and shown.count("identity.map") >= 2
    assert "wait" in shown and "as_completed" in shown
    assert "8/8" in shown and "8 done" in shown  # the flow's row: every run, counted by state
    assert "3/3" in shown and "5/5" in shown


def test_the_demo_draws_a_progress_bar_at_a_terminal() -> None:
    """With defaults at a pseudo-terminal, `python examples/demo.py` draws a progress bar."""
    pty = pytest.importorskip("pty", reason="needs a POSIX pseudo-terminal")
    pytest.importorskip("rich", reason="needs rich (taskrunners-core[progress], in the root test extra)")
    env = {key: value for key, value in os.environ.items() if key not in ("CI", _progress.ENV)}
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the demo, with the pty as its terminal
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, str(ROOT / "examples" / "demo.py")], env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    output = b"".join(chunks).decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert "flow crawl" in output, output
    assert "measure.map" in output
    assert "━" in output  # the bar itself
    assert "17/17" in output and "17 done" in output  # 8 fetch, 8 measure, 1 total
    assert "summary:" in output  # and the demo's own report follows
