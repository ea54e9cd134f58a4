"""`InterruptTests`: Ctrl-C and SIGTERM during a flow, in a child process.

Each test starts a child process (`_interrupt_child`) that runs a flow of `RUNS` runs
of a task that holds until released, on the runner under test. Once runs have started,
the test signals the child; once the child's runner says the interrupt reached it, the
test releases the running runs, and checks:

- the child exits with the conventional status: killed by SIGINT (shells show 130)
  for Ctrl-C, 143 for SIGTERM;
- every run is final; every run that never started ended CRASHED, naming the signal;
- no run started after the release (a runner that did not take its queued runs back
  would start them in the freed workers);
- none of the child's processes (workers, pools, a cluster it started) outlives it.

The order comes from files the child writes, never from sleeps. `run_interrupted` is
the same case as a function, for a runner's own tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from taskrunners import TaskRunner
from taskrunners.lowlevel import dumps

from ._base import ConformanceBase
from ._interrupt_child import RUNS

__all__ = ["InterruptOutcome", "InterruptTests", "check_interrupted", "descendants", "run_interrupted"]

#: The grace period the child's runner gets: far longer than any test waits, so that a
#: child that ends in time did not do it by running out of grace.
CHILD_GRACE = 120.0
_CHILD = "from taskrunners.testing._interrupt_child import main; main()"


@dataclass
class InterruptOutcome:
    """What `run_interrupted` saw.

    Attributes:
        returncode: The child's exit status (`-2`: killed by SIGINT; `143`: SIGTERM).
        runs: Per run, in map order: `name`, `type` (the final state's type) and
            `message` (its exception's text), and `started` (the time it started, or
            `None`).
        released: The time the test released the running runs (`None` if it did not).
        stopped_in: Seconds from the last signal to the child's report of its runs.
        processes: The child's descendants (pid, start time) before the signal.
        left: Those still alive once the child had exited and `deadline` passed.
        stderr: The child's error output.
    """

    returncode: int
    runs: list[dict[str, Any]]
    released: float | None
    stopped_in: float
    processes: list[tuple[int, int]] = field(default_factory=list)
    left: list[tuple[int, int]] = field(default_factory=list)
    stderr: str = ""


def descendants(pid: int) -> list[tuple[int, int]]:
    """The live descendants of `pid` as (pid, start time in clock ticks), from /proc."""
    parents: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is not None and fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append((int(entry), int(fields[19])))
    found: list[tuple[int, int]] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(process: tuple[int, int]) -> bool:
    fields = _stat(process[0])
    return fields is not None and fields[0] != "Z" and int(fields[19]) == process[1]


def _wait_for(path: Path, child: subprocess.Popen[str], deadline: float, what: str) -> None:
    """Wait until `path` exists; fail if the child exits first or `deadline` passes."""
    limit = time.monotonic() + deadline
    while not path.exists():
        if child.poll() is not None and not path.exists():
            _, err = child.communicate()
            pytest.fail(f"the child exited ({child.returncode}) before {what}:\n{err[-4000:]}", pytrace=False)
        if time.monotonic() > limit:
            child.kill()
            _, err = child.communicate()
            pytest.fail(f"{what} did not happen within {deadline} s:\n{err[-4000:]}", pytrace=False)
        time.sleep(0.005)


def run_interrupted(
    runner: TaskRunner | str,
    folder: Path,
    signals: tuple[signal.Signals, ...] = (signal.SIGINT,),
    release: bool = True,
    deadline: float = 120.0,
) -> InterruptOutcome:
    """Run the held flow on `runner` in a child process and interrupt it.

    Args:
        runner: The runner (pickled to the child with `taskrunners.lowlevel.dumps`), or
            where to find a function that makes it: `"module:callable"` or
            `"path/to/file.py:callable"`.
        folder: An empty directory for the files of the exchange.
        signals: Sent in turn: the first once runs have started, each further one once
            the runner has said that the interrupt reached it.
        release: Release the running runs once the runner has taken the interrupt in
            (and, without it, once the child has reported its runs).
        deadline: Seconds each step may take.

    Raises:
        pytest.skip.Exception: The runner cannot be pickled (give an import path).
    """
    if isinstance(runner, str):
        (folder / "runner.path").write_text(runner)
    else:
        try:
            (folder / "runner.pickle").write_bytes(dumps(runner))
        except Exception as exc:  # noqa: BLE001 - any pickling error: the test cannot run
            pytest.skip(
                f"the runner cannot be pickled for the child process ({exc}); override the "
                "`task_runner_in_child` fixture to return 'module:function' or 'file.py:function' "
                "that makes it"
            )
    env = {**os.environ, "TASKRUNNERS_SHUTDOWN_GRACE": str(CHILD_GRACE), "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(folder)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(folder / "submitted", child, deadline, "the flow submitted its runs")
        limit = time.monotonic() + deadline
        while not any(folder.glob("started-*")):
            if child.poll() is not None or time.monotonic() > limit:
                _wait_for(folder / "never", child, 0, "a run started")
            time.sleep(0.005)
        processes = descendants(child.pid)
        child.send_signal(signals[0])
        _wait_for(folder / "interrupted", child, deadline, "the runner took the interrupt in")
        sent = time.monotonic()
        for again in signals[1:]:
            child.send_signal(again)
            sent = time.monotonic()
        # With runs still running, release them now: they may finish in the grace period.
        # With none (the engine cancelled them), release once the child is done: a run
        # that starts then is code running after its flow ended.
        running = "no run is in progress" not in (folder / "interrupted").read_text()
        released = _release(folder) if release and running else None
        _wait_for(folder / "results.json", child, deadline, "the child reported its runs")
        stopped_in = time.monotonic() - sent
        if released is None:
            if release:
                with contextlib.suppress(subprocess.TimeoutExpired):  # one that waits for it at exit
                    child.wait(timeout=deadline)
            at = _release(folder)
            released = at if release else None
        try:
            _, stderr = child.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            child.kill()
            _, stderr = child.communicate()
            pytest.fail(f"the child did not exit within {deadline} s of its report:\n{stderr[-4000:]}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    limit = time.monotonic() + deadline
    left = [p for p in processes if _alive(p)]
    while left and time.monotonic() < limit:
        time.sleep(0.05)
        left = [p for p in left if _alive(p)]
    report = json.loads((folder / "results.json").read_text())
    runs = report["runs"]
    for index, run in enumerate(runs):
        started = folder / f"started-{index}"
        run["started"] = float(started.read_text()) if started.exists() else None
    return InterruptOutcome(child.returncode, runs, released, stopped_in, processes, left, stderr)


def _release(folder: Path) -> float:
    at = time.time()
    (folder / "release").write_text("")
    return at


class InterruptTests(ConformanceBase):
    """Ctrl-C and SIGTERM during a flow: mixed into `TaskRunnerTests`.

    A runner that cannot be pickled to reach the child process overrides
    `task_runner_in_child` to say where a function that makes it is:
    `"module:function"`, or `f"{__file__}:function"` for one in the test module.
    """

    @pytest.fixture
    def task_runner_in_child(self, task_runner: TaskRunner) -> TaskRunner | str:
        """How the child process of the interrupt tests gets the runner: the runner
        (pickled), or `"module:callable"` / `"path/to/file.py:callable"` naming a
        function that makes it."""
        return task_runner

    def _interrupted(self, runner: TaskRunner | str, tmp_path: Path, **kwargs: Any) -> InterruptOutcome:
        if not sys.platform.startswith("linux"):
            pytest.skip("the interrupt tests read /proc and send POSIX signals (Linux only)")
        return run_interrupted(runner, tmp_path, deadline=max(self.deadline, 60.0), **kwargs)

    def test_ctrl_c_ends_unstarted_runs_and_exits_130(
        self, task_runner_in_child: TaskRunner | str, tmp_path: Path
    ) -> None:
        outcome = self._interrupted(task_runner_in_child, tmp_path)
        assert outcome.returncode in (-signal.SIGINT, 130), outcome.stderr[-4000:]
        check_interrupted(outcome, "SIGINT (Ctrl-C)")

    def test_sigterm_ends_unstarted_runs_and_exits_143(
        self, task_runner_in_child: TaskRunner | str, tmp_path: Path
    ) -> None:
        outcome = self._interrupted(task_runner_in_child, tmp_path, signals=(signal.SIGTERM,))
        assert outcome.returncode == 143, outcome.stderr[-4000:]
        check_interrupted(outcome, "SIGTERM")

    def test_second_ctrl_c_stops_running_runs_at_once(
        self, task_runner_in_child: TaskRunner | str, tmp_path: Path
    ) -> None:
        outcome = self._interrupted(
            task_runner_in_child, tmp_path, signals=(signal.SIGINT, signal.SIGINT), release=False
        )
        assert outcome.returncode in (-signal.SIGINT, 130), outcome.stderr[-4000:]
        assert outcome.stopped_in < CHILD_GRACE / 4, "the second Ctrl-C did not cut the grace period short"
        check_interrupted(outcome, "SIGINT (Ctrl-C)")
        for run in outcome.runs:
            assert run["type"] == "CRASHED", f"{run['name']} ended {run['type']}, not stopped"


def check_interrupted(outcome: InterruptOutcome, signal_name: str) -> None:
    """The checks every interrupt shares: runs final, unstarted ones CRASHED naming the
    signal, nothing started after the release, no process left behind."""
    assert len(outcome.runs) == RUNS
    unstarted = [run for run in outcome.runs if run["started"] is None]
    assert unstarted, "every run started: the runner held no run back to test"
    for run in outcome.runs:
        assert run["type"] in ("COMPLETED", "CRASHED"), f"{run['name']} ended {run['type']}: {run['message']}"
    for run in unstarted:
        assert run["type"] == "CRASHED", f"{run['name']} never started but ended {run['type']}"
        assert signal_name in run["message"], run["message"]
    if outcome.released is not None:
        late = [run["name"] for run in outcome.runs if run["started"] and run["started"] >= outcome.released]
        assert not late, f"runs started after the interrupt: {late}"
    assert not outcome.left, f"processes outlived the flow's process: {outcome.left}"
