"""The child process of the suite's interrupt tests (no pytest here).

`python -c "from taskrunners.testing._interrupt_child import main; main()" FOLDER`
loads the runner that `FOLDER/runner.pickle` holds (a pickled runner) or that
`FOLDER/runner.path` names (`module:callable` or `path/to/file.py:callable`, called
without arguments), and runs a
flow that maps `hold` over `RUNS` inputs on it. Each run writes `started-<i>` (its
start time) and waits for the file `release`. When the runner logs that an interrupt
reached it, the child writes `interrupted` (the message); once the flow has raised, it writes
`results.json` (each run's final state) and lets the exception end the process.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from taskrunners import Future, TaskRunner, flow, task, unmapped
from taskrunners.lowlevel import loads

__all__ = ["RUNS", "hold", "main"]

#: How many runs the flow maps: more than a test runner runs at once.
RUNS = 40
#: How long a run waits for `release` at most (a broken test must not leave it behind).
HOLD_TIMEOUT = 120.0


@task
def hold(folder: str, index: int) -> int:
    """Write `started-<index>`, then wait for the file `release`."""
    started = Path(folder, f"started-{index}")
    temporary = started.with_name(f".{started.name}.{os.getpid()}")
    temporary.write_text(repr(time.time()))
    temporary.replace(started)
    release = Path(folder, "release")
    deadline = time.monotonic() + HOLD_TIMEOUT
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    return index


def load_runner(folder: Path) -> TaskRunner:
    """The runner the test gave: `runner.pickle`, or the factory `runner.path` names."""
    path = folder / "runner.path"
    if path.exists():
        module, _, name = path.read_text().strip().rpartition(":")
        factory: Any
        if module.endswith(".py"):  # a file, such as the test module itself
            spec = importlib.util.spec_from_file_location(Path(module).stem, module)
            assert spec is not None and spec.loader is not None, module
            factory = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = factory
            spec.loader.exec_module(factory)
        else:
            factory = importlib.import_module(module)
        for part in name.split("."):
            factory = getattr(factory, part)
        runner = factory()
    else:
        runner = loads((folder / "runner.pickle").read_bytes())
    if not isinstance(runner, TaskRunner):
        raise TypeError(f"the runner for the interrupt test is not a TaskRunner: {runner!r}")
    return runner


class _Marker(logging.Handler):
    """Writes `interrupted` when the runner logs that an interrupt reached it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(logging.WARNING)
        self.folder = folder

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "end CRASHED without finishing" in message:
            marker = self.folder / "interrupted"
            marker.with_suffix(".tmp").write_text(message)
            marker.with_suffix(".tmp").replace(marker)


def _describe(future: Future[Any]) -> dict[str, Any]:
    state = future.peek()
    return {
        "name": future.task_run.name,
        "type": state.type.value,
        "message": "" if state.exception is None else str(state.exception),
    }


def main() -> None:
    """Run the held flow on the given runner; see the module's docstring."""
    folder = Path(sys.argv[1])
    runner = load_runner(folder)
    logging.getLogger("taskrunners").addHandler(_Marker(folder))
    futures: list[Future[Any]] = []

    @flow(task_runner=runner)
    def held() -> list[int]:
        futures.extend(hold.map(unmapped(str(folder)), range(RUNS)))
        (folder / "submitted").write_text("")
        return [future.result() for future in futures]

    outcome = "returned"
    try:
        held()
    except BaseException as exc:
        outcome = type(exc).__name__
        for signum in (signal.SIGINT, signal.SIGTERM):  # a later signal must not cut the report short
            signal.signal(signum, signal.SIG_IGN)
        raise
    finally:
        results = {
            "outcome": outcome,
            "runs": [dict(_describe(f), index=i) for i, f in enumerate(futures)],
        }
        target = folder / "results.json"
        target.with_suffix(".tmp").write_text(json.dumps(results))
        target.with_suffix(".tmp").replace(target)
