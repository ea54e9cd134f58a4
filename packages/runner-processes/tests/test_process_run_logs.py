"""The process runner streams a run's log records to the flow's process as they are
made: a worker that dies in the middle of a run has sent what the run logged."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from logging.handlers import BufferingHandler
from typing import Any

import cloudpickle
import pytest
from taskrunners import flow, get_run_logger, task
from taskrunners.testing import run_with_deadline
from taskrunners_processes import ProcessPoolTaskRunner

# Workers cannot import this test module by name (pytest imports it by path).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@task
def log_then_die(code: int) -> None:
    logger = get_run_logger()
    logger.info("first words")
    logger.warning("last words")
    os._exit(code)


@pytest.fixture
def kept() -> Iterator[BufferingHandler]:
    logger = logging.getLogger("taskrunners")
    handler = BufferingHandler(capacity=10_000)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_records_of_a_run_whose_worker_dies_arrive_in_order(kept: BufferingHandler) -> None:
    def body() -> Any:
        future = log_then_die.submit(5)
        future.wait()
        return future.task_run.name, future.state

    name, state = run_with_deadline(flow(task_runner=ProcessPoolTaskRunner(max_workers=1))(body), 60.0)
    assert state.is_crashed()
    mine = [(r.levelname, r.getMessage()) for r in kept.buffer if getattr(r, "task_run_name", None) == name]
    assert mine[:2] == [("INFO", "first words"), ("WARNING", "last words")], mine
    assert mine[2][0] == "ERROR" and mine[2][1].startswith("Crashed:"), mine  # the engine's line, after
    first = next(r for r in kept.buffer if r.getMessage() == "first words")
    assert first.process != os.getpid()  # made in the worker, handled here
    assert first.flow_run_name.startswith("body-")  # type: ignore[attr-defined]
