"""Prefect's task options: task_run_name, retry_jitter_factor, exponential_backoff,
retry_condition_fn, state hooks, description/version."""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

import pytest
from taskrunners import DefinitionError, exponential_backoff, flow, task
from taskrunners.lowlevel import current_task_run
from taskrunners_threads import ThreadPoolTaskRunner

RUNNER = ThreadPoolTaskRunner(max_workers=4)


def test_task_run_name_from_a_template_or_a_callable() -> None:
    @task(task_run_name="fetch-{url}")
    def fetch(url: str) -> str:
        info = current_task_run()
        return info.name if info else ""

    @task(task_run_name=lambda: "fixed")
    def fixed() -> str:
        return "x"

    @task(task_run_name=lambda parameters: f"p-{parameters['n']}")
    def given(n: int) -> int:
        return n

    @flow(task_runner=RUNNER)
    def body() -> Any:
        one = fetch.submit("a")
        many = fetch.map(["b", "c"])
        upstream = given.submit(7)
        downstream = fetch.submit(upstream)  # a finished future shows its value
        upstream.wait()
        late = fetch.submit(upstream)
        return (
            one.task_run.name,
            one.result(),
            [f.task_run.name for f in many],
            fixed.submit().task_run.name,
            upstream.task_run.name,
            late.task_run.name,
            downstream.result(),
        )

    one, inside, many, fixed_name, upstream, late, _ = body()
    assert (one, inside) == ("fetch-a", "fetch-a")
    assert many == ["fetch-b", "fetch-c"]
    assert fixed_name == "fixed" and upstream == "p-7" and late == "fetch-7"
    assert fetch("z", return_state=True).result() == "fetch-z"  # a direct call is named too


def test_a_template_naming_a_missing_parameter_says_which() -> None:
    @task(task_run_name="x-{nope}")
    def bad(a: int) -> int:
        return a

    with pytest.raises(DefinitionError, match=r"nope.*its parameters: a"):
        bad(1)
    with pytest.raises(DefinitionError, match="task_run_name"):
        task(task_run_name=3)(lambda: None)  # type: ignore[arg-type]


def test_exponential_backoff_and_jitter() -> None:
    assert exponential_backoff(2)(4) == [2, 4, 8, 16]

    @task(retries=3, retry_delay_seconds=exponential_backoff(10), retry_jitter_factor=0.5)
    def flaky() -> None:
        pass

    assert flaky.retry_delay_seconds == (10.0, 20.0, 40.0)
    random.seed(1)
    delays = [flaky._retry_delay(3) for _ in range(200)]
    assert all(20.0 <= d <= 60.0 for d in delays) and len(set(delays)) > 100
    assert task(retries=1, retry_delay_seconds=[1])(lambda: None)._retry_delay(1) == 1.0  # no jitter
    with pytest.raises(DefinitionError, match="retry_jitter_factor"):
        task(retry_jitter_factor=-1)(lambda: None)
    with pytest.raises(ValueError):
        exponential_backoff(-1)


def test_retry_condition_fn_sees_the_failed_state() -> None:
    seen: list[Any] = []
    calls: list[int] = []

    def only_value_errors(task: Any, task_run: Any, state: Any) -> bool:
        seen.append((task.name, task_run.name.startswith("picky-"), state.is_failed()))
        return isinstance(state.exception, ValueError)

    @task(retries=5, retry_condition_fn=only_value_errors)
    def picky() -> None:
        calls.append(1)
        raise ValueError("again") if len(calls) < 3 else KeyError("stop")

    state = picky(return_state=True)
    assert isinstance(state.exception, KeyError) and state.attempt == 3
    assert seen == [("picky", True, True)] * 3


def test_a_retry_condition_that_raises_means_no_retry(caplog: pytest.LogCaptureFixture) -> None:
    def broken(task: Any, task_run: Any, state: Any) -> bool:
        raise RuntimeError("bug")

    @task(retries=2, retry_condition_fn=broken)
    def once() -> None:
        raise ValueError("x")

    with caplog.at_level(logging.ERROR, logger="taskrunners"):
        assert once(return_state=True).attempt == 1
    assert "retry_condition_fn" in caplog.text


def test_hooks_fire_once_per_final_state_before_the_future_is_final() -> None:
    events: list[tuple[str, str, str]] = []
    main = threading.get_ident()

    def hook(task: Any, task_run: Any, state: Any) -> None:
        events.append((task.name, state.type.value, "flow" if threading.get_ident() == main else "worker"))

    @task(on_completion=[hook], on_failure=[hook], on_running=[hook], retries=1)
    def sometimes(fail: bool) -> int:
        if fail:
            raise ValueError("no")
        return 1

    @flow(task_runner=RUNNER)
    def body() -> Any:
        good, bad = sometimes.submit(False), sometimes.submit(True)
        good.wait(), bad.wait()
        snapshot = sorted(events)
        return snapshot, bad.state.is_failed()

    snapshot, failed = body()
    assert failed
    finals = [e for e in snapshot if e[1] != "RUNNING"]
    running = [e for e in snapshot if e[1] == "RUNNING"]
    assert finals == [("sometimes", "COMPLETED", "worker"), ("sometimes", "FAILED", "worker")]
    assert len(running) == 3  # one per attempt: 1 + 2 (the failing run was retried)


def test_hook_decorators_and_a_hook_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    @task
    def job() -> int:
        return 1

    seen: list[str] = []

    @job.on_completion
    def first(task: Any, task_run: Any, state: Any) -> None:
        raise RuntimeError("hook bug")

    @job.on_completion
    def second(task: Any, task_run: Any, state: Any) -> None:
        seen.append(state.name)

    with caplog.at_level(logging.ERROR, logger="taskrunners"):
        assert job() == 1
    assert seen == ["Completed"] and "hook bug" in caplog.text
    assert job.with_options(name="again").on_completion_hooks == [first, second]
    with pytest.raises(DefinitionError, match="on_failure"):
        task(on_failure=[1])(lambda: None)  # type: ignore[list-item]


def test_description_and_version() -> None:
    @task(version="2")
    def documented() -> None:
        """Does a thing."""

    assert (documented.description, documented.version) == ("Does a thing.", "2")


def test_final_state_hooks_stay_in_the_flows_process_when_a_task_travels_by_value() -> None:
    import pickle
    import threading as th

    lock = th.Lock()  # cannot be pickled: a hook closing over it must not travel

    def hook(task: Any, task_run: Any, state: Any) -> None:
        with lock:
            pass

    @task(on_completion=[hook], on_failure=[hook], on_crashed=[hook], retries=1)
    def local(x: int) -> int:
        return x

    travelled = pickle.loads(pickle.dumps(local))
    assert travelled.retries == 1 and travelled(2) == 2
    assert travelled.on_completion_hooks == [] and local.on_completion_hooks == [hook]
