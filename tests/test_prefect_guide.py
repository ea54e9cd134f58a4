"""The examples of Prefect 3's guide "Run tasks concurrently or in parallel", ported.

Each test keeps the shape of one example of the guide (task and flow names, the calls
it makes) with taskrunners' imports, and asserts what the example shows. Sleeps are
the examples' workload, scaled down; ordering and overlap are read from the start and
end times that each run records, never from how long a test took.
"""

from __future__ import annotations

import threading
import time

import pytest
from taskrunners import Future, TaskRunInfo, UnobservedFailureWarning, flow, task, unmapped, wait
from taskrunners_threads import ThreadPoolTaskRunner


def overlap_peak(runs: list[TaskRunInfo]) -> int:
    """The most runs in progress at one instant (a run ending as another starts is not overlap)."""
    spans = [(run.start, run.end) for run in runs]
    assert all(start is not None and end is not None for start, end in spans)
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)  # type: ignore[operator]


# -- configure a task runner: the elevator ---------------------------------------------


def test_elevator_stops_at_every_floor_with_three_at_a_time(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    def stop_at_floor(floor: int) -> None:
        print(f"elevator moving to floor {floor}")
        time.sleep(floor / 50)
        print(f"elevator stops on floor {floor}")

    floors: list[Future[None]] = []

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def elevator() -> None:
        for floor in range(10, 0, -1):
            floors.append(stop_at_floor.submit(floor))
        done, not_done = wait(floors)  # wait for the sequence of futures to complete
        assert len(done) == 10 and not not_done

    elevator()

    assert all(f.state.is_completed() for f in floors)
    lines = capsys.readouterr().out.splitlines()
    moving = [f"elevator moving to floor {n}" for n in range(1, 11)]
    stops = [f"elevator stops on floor {n}" for n in range(1, 11)]
    assert sorted(lines) == sorted(moving + stops)
    peak = overlap_peak([f.task_run for f in floors])
    assert peak > 1  # floors were served concurrently...
    assert peak <= 3  # ...by at most max_workers threads at a time


# -- submit tasks: futures as arguments, .result(), raise_on_failure --------------------


def test_future_passed_to_a_downstream_task_arrives_as_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    def say_hello(name: str) -> str:
        return f"Hello {name}!"

    @task
    def print_result(result: object) -> None:
        print(type(result))
        print(result)

    @flow(name="hello-flow")
    def hello_world() -> None:
        future = say_hello.submit("Marvin")
        print_result.submit(future)

    hello_world()  # the flow waits for print_result before it returns

    assert capsys.readouterr().out == "<class 'str'>\nHello Marvin!\n"


def test_result_waits_for_the_run_and_returns_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    release = threading.Event()

    @task
    def my_task() -> int:
        release.wait(5)
        return 42

    @flow
    def my_flow() -> int:
        future = my_task.submit()
        assert not future.done()  # .submit() returned before the run could finish
        release.set()
        result = future.result()
        print(result)
        return result

    assert my_flow() == 42
    assert capsys.readouterr().out == "42\n"


@pytest.mark.parametrize("fails", [False, True], ids=["completes", "fails"])
def test_result_with_raise_on_failure_false_returns_value_or_exception(
    fails: bool, recwarn: pytest.WarningsRecorder
) -> None:
    boom = ValueError("no task for you")

    @task
    def my_task() -> str:
        if fails:
            raise boom
        return "I'm a task!"

    @flow
    def my_flow() -> tuple[str, object]:
        future = my_task.submit()
        result = future.result(raise_on_failure=False)
        if future.state.is_failed():
            return "failed", result  # `result` is the exception the task raised
        return "completed", result  # `result` is the task's return value

    branch, result = my_flow()

    if fails:
        assert branch == "failed" and result is boom
    else:
        assert branch == "completed" and result == "I'm a task!"
    assert not [w for w in recwarn if issubclass(w.category, UnobservedFailureWarning)]


# -- wait_for: ordering without passing data ---------------------------------------------


def test_wait_for_orders_four_tasks() -> None:
    spans: dict[str, tuple[float, float, threading.Thread]] = {}

    def record(name: str, work: float) -> None:
        start = time.perf_counter()
        time.sleep(work)  # long enough that an ignored wait_for would show as overlap
        spans[name] = (start, time.perf_counter(), threading.current_thread())

    @task
    def task_1() -> None:
        record("task_1", 0.05)

    @task
    def task_2() -> None:
        record("task_2", 0.02)

    @task
    def task_3() -> None:
        record("task_3", 0)

    @task
    def task_4() -> None:
        record("task_4", 0)

    @flow
    def my_flow() -> None:
        x = task_1.submit()
        # task_2 starts once task_1 has finished
        y = task_2.submit(wait_for=[x])
        # task_3, called here, runs once task_1 and task_2 have finished
        task_3(wait_for=[x, y])
        # task_4 runs after task_3, which returned before this line
        task_4()

    my_flow()

    start_2, end_2 = spans["task_2"][:2]
    assert start_2 >= spans["task_1"][1]
    assert spans["task_3"][0] >= max(spans["task_1"][1], end_2)
    assert spans["task_4"][0] >= spans["task_3"][1]
    main = threading.current_thread()
    assert spans["task_1"][2] is not main and spans["task_2"][2] is not main  # submitted: a worker
    assert spans["task_3"][2] is main and spans["task_4"][2] is main  # called directly: the flow's thread


# -- map ---------------------------------------------------------------------------------


def test_map_squares_each_number(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    def print_nums(nums: list[int]) -> None:
        for n in nums:
            print(n)

    @task
    def square_num(num: int) -> int:
        return num**2

    @flow
    def map_flow(nums: list[int]) -> list[Future[int]]:
        print_nums(nums)
        squared_nums = square_num.map(nums)
        assert len(squared_nums) == len(nums)
        assert all(isinstance(f, Future) for f in squared_nums)
        print_nums(squared_nums)  # a list of futures, resolved to their values
        return squared_nums

    assert map_flow([1, 2, 3, 5, 8, 13]) == [1, 4, 9, 25, 64, 169]
    printed = [int(line) for line in capsys.readouterr().out.split()]
    assert printed == [1, 2, 3, 5, 8, 13, 1, 4, 9, 25, 64, 169]


def test_map_broadcasts_a_static_value() -> None:
    @task
    def add_together(x: int, y: int) -> int:
        return x + y

    @flow
    def sum_it(numbers: list[int], static_value: int) -> list[Future[int]]:
        futures = add_together.map(numbers, static_value)
        return futures

    assert sum_it([1, 2, 3], 5) == [6, 7, 8]


def test_map_broadcasts_an_unmapped_iterable() -> None:
    @task
    def sum_plus(x: int, static_iterable: list[int]) -> int:
        return x + sum(static_iterable)

    @flow
    def sum_it(numbers: list[int], static_iterable: list[int]) -> list[Future[int]]:
        futures = sum_plus.map(numbers, unmapped(static_iterable))
        return futures

    # [1, 2, 3] has the length of `numbers`: without unmapped() it would be zipped.
    assert sum_it([4, 5, 6], [1, 2, 3]) == [10, 11, 12]


# -- nested flows, each on its own runner -------------------------------------------------


def test_nested_flows_run_their_tasks_on_their_own_runners() -> None:
    ran: dict[str, set[str]] = {"local": set(), "pool_of_two": set(), "by_name": set()}
    owners: dict[str, object] = {}

    def note(where: str) -> str:
        name = threading.current_thread().name
        ran[where].add(name)
        return name

    @task
    def hello_local() -> str:
        return note("local")

    @task
    def hello_pool_of_two(i: int) -> str:
        time.sleep(0.01)  # a little work, so that the four runs share the two workers
        return note("pool_of_two")

    @task
    def hello_by_name() -> str:
        return note("by_name")

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def pool_of_two_subflow() -> list[Future[str]]:
        futures = hello_pool_of_two.map(range(4))
        owners["pool_of_two"] = futures[0].owner
        return futures

    @flow(task_runner="threads")
    def by_name_subflow() -> Future[str]:
        future = hello_by_name.submit()
        owners["by_name"] = future.owner
        return future

    @flow(name="Hello Flow")
    def hello_world() -> None:
        direct = hello_local()
        assert direct == threading.current_thread().name  # called directly: runs here
        owners["parent"] = hello_local.submit().owner
        pool_of_two_subflow()
        by_name_subflow()

    hello_world()

    pool, named, parent = owners["pool_of_two"], owners["by_name"], owners["parent"]
    assert isinstance(pool, ThreadPoolTaskRunner) and pool.max_workers == 2
    assert isinstance(named, ThreadPoolTaskRunner) and named.max_workers is None
    assert len({id(pool), id(named), id(parent)}) == 3  # three flow runs, three runners
    assert all(t.startswith(f"taskrunners-threads-{id(pool):x}_") for t in ran["pool_of_two"])
    assert len(ran["pool_of_two"]) <= 2  # max_workers=2: two threads at most
    assert all(t.startswith(f"taskrunners-threads-{id(named):x}_") for t in ran["by_name"])
    parent_threads = ran["local"] - {threading.current_thread().name}
    assert len(parent_threads) == 1
    assert parent_threads.pop().startswith(f"taskrunners-threads-{id(parent):x}_")
