"""The messages that docs/when-things-go-wrong.md quotes are the ones runs really get.

Every line of the page's `text` blocks that starts with `task run 'NAME' crashed:` or
`taskrunners:` is a pattern (`NAME` a run's name; `PID`, `CODE`, `N` and any number a
number). The interrupt messages and the process runner's lost worker are produced here
for real and each must match a line of the page, and each line of the page must match
one of them (a SIGTERM message in its Ctrl-C form). The Dask and Ray lost-worker lines (produced only by killing cluster
workers, in those runners' own tests) must appear verbatim in the runner's source.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from taskrunners import Future, Terminated, flow, task
from taskrunners_processes import ProcessPoolTaskRunner
from taskrunners_threads import ThreadPoolTaskRunner

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "when-things-go-wrong.md"
CLUSTER_LOSSES = {
    "the Dask worker running it died": ROOT / "packages/runner-dask/src/taskrunners_dask/_runner.py",
    "the Ray worker process running it died": ROOT / "packages/runner-ray/src/taskrunners_ray/_runner.py",
}
LONG = 30.0


def quoted() -> list[str]:
    """The message lines of the page's `text` blocks."""
    lines, inside = [], False
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```text"
            continue
        if inside and line.startswith(("task run 'NAME' crashed:", "taskrunners:")):
            lines.append(line)
    return lines


def pattern(line: str) -> re.Pattern[str]:
    text = re.escape(line)
    text = re.sub(r"\d+(?:\\\.\d+)?", r"[\\d.]+", text)
    for word, regex in (("NAME", r"[\w.-]+"), ("PID", r"\d+"), ("CODE", r"-?\d+"), ("N", r"\d+")):
        text = re.sub(rf"\b{word}\b", lambda _, regex=regex: regex, text)
    return re.compile(text + "$")


@task
def held(release: threading.Event) -> str:
    release.wait(LONG)
    return "done"


@task
def after(x: Any) -> Any:
    return x


@task
def exits() -> None:
    os._exit(3)


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "taskrunners":  # the runners' own lines, not each run's log lines
            self.lines.append(record.getMessage())


@pytest.fixture
def logged() -> Any:
    handler = Messages()
    logger = logging.getLogger("taskrunners")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def interrupted(
    runner: ThreadPoolTaskRunner, body: Any, raised: type[BaseException] = KeyboardInterrupt
) -> None:
    with pytest.raises(raised):
        flow(task_runner=runner)(body)()


def crash_messages(futures: list[Future[Any]]) -> list[str]:
    return [str(f.state.exception) for f in futures if f.state.is_crashed()]


def real_messages(logged: Messages) -> list[str]:
    """Produce every message the page quotes (but the cluster losses) for real."""
    messages: list[str] = []
    release = threading.Event()

    # Ctrl-C: one run in progress past a short grace period, one queued, one waiting on it.
    runner = ThreadPoolTaskRunner(max_workers=1)
    runner.shutdown_grace = 0.05
    futures: list[Future[Any]] = []

    def ctrl_c() -> None:
        futures.append(held.submit(release))
        futures.append(after.submit(1))
        futures.append(after.submit(futures[0]))
        raise KeyboardInterrupt

    try:
        interrupted(runner, ctrl_c)
    finally:
        release.set()
    messages += crash_messages(futures)

    # Nothing in progress.
    interrupted(ThreadPoolTaskRunner(), lambda: (_ for _ in ()).throw(KeyboardInterrupt()))

    # A second Ctrl-C during the grace period.
    release = threading.Event()
    runner = ThreadPoolTaskRunner(max_workers=1)
    runner.shutdown_grace = LONG
    futures = []

    class Again(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting up to" in record.getMessage():
                os.kill(os.getpid(), signal.SIGINT)

    again = Again(logging.WARNING)
    logging.getLogger("taskrunners").addHandler(again)
    try:

        def twice() -> None:
            futures.append(held.submit(release))
            raise KeyboardInterrupt

        interrupted(runner, twice)
    finally:
        logging.getLogger("taskrunners").removeHandler(again)
        release.set()
    messages += crash_messages(futures)

    # SIGTERM.
    release = threading.Event()
    futures = []

    def terminated() -> None:
        futures.append(held.submit(release))
        futures.append(after.submit(2))
        futures[1].add_done_callback(lambda _: release.set())
        signal.raise_signal(signal.SIGTERM)

    interrupted(ThreadPoolTaskRunner(max_workers=1), terminated, Terminated)
    messages += crash_messages(futures)

    # A lost process worker.
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def loses() -> Future[None]:
        lost = exits.submit()
        lost.wait()
        return lost.state

    messages.append(str(loses(return_state=True).exception))  # a returned State is the flow's end
    return messages + logged.lines


def test_every_quoted_message_is_a_real_one_and_back(logged: Messages) -> None:
    lines = quoted()
    assert len(lines) >= 10, lines
    real = real_messages(logged)
    local = [line for line in lines if not any(loss in line for loss in CLUSTER_LOSSES)]
    for line in local:
        assert any(pattern(line).match(message) for message in real), (
            f"the page quotes {line!r}; runs said {real}"
        )
    for message in real:  # the page quotes the Ctrl-C form of each; SIGTERM differs only in its name
        as_ctrl_c = message.replace("by SIGTERM", "by SIGINT (Ctrl-C)")
        assert any(pattern(line).match(m) for line in lines for m in (message, as_ctrl_c)), (
            f"{message!r} is not on the page"
        )


def test_the_cluster_runners_lost_worker_messages_are_theirs() -> None:
    lines = quoted()
    for loss, source in CLUSTER_LOSSES.items():
        line = next(line for line in lines if loss in line)
        reason = line.split("crashed: ", 1)[1]
        assert reason in source.read_text(encoding="utf-8"), f"{source.name} no longer says {reason!r}"
