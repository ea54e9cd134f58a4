"""Behaviour of DaskTaskRunner beyond the conformance suite."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import types
from typing import Any

import dask
import dask_runner_tasks as dt
import distributed
import psutil
import pytest
from taskrunners import (
    Future,
    NotSerializableError,
    StateType,
    TaskRunCrashed,
    UpstreamFailedError,
    flow,
    task,
)
from taskrunners.lowlevel import DeferredState, current_runner
from taskrunners.plugins import load_runner
from taskrunners.testing import run_with_deadline
from taskrunners.testing import tasks as t
from taskrunners_dask import DaskTaskRunner, dask_options, get_dask_client
from taskrunners_dask._remote import INLINE_LIMIT

DEADLINE = 60.0


def run(runner: DaskTaskRunner, body: Any, *args: Any) -> Any:
    return run_with_deadline(flow(task_runner=runner)(body), DEADLINE, *args)


# -- configuration ------------------------------------------------------------------------


def test_registered_as_dask_through_its_entry_point() -> None:
    assert load_runner("dask") is DaskTaskRunner


def test_equality_follows_configuration() -> None:
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2}, adapt_kwargs={"maximum": 4})
    assert runner == DaskTaskRunner(cluster_kwargs={"n_workers": 2}, adapt_kwargs={"maximum": 4})
    assert runner.duplicate() == runner and runner.duplicate() is not runner
    assert runner != DaskTaskRunner(cluster_kwargs={"n_workers": 3})
    assert DaskTaskRunner(address="tcp://127.0.0.1:8786") != DaskTaskRunner()
    assert DaskTaskRunner(cluster_class="distributed.LocalCluster") != DaskTaskRunner()
    assert (
        repr(DaskTaskRunner(address="tcp://127.0.0.1:8786"))
        == "DaskTaskRunner(address='tcp://127.0.0.1:8786')"
    )


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        DaskTaskRunner(address="tcp://127.0.0.1:8786", cluster_class="distributed.LocalCluster")
    with pytest.raises(TypeError, match="address"):
        DaskTaskRunner(address=8786)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cluster_class"):
        DaskTaskRunner(cluster_class=42)  # type: ignore[arg-type]


def test_unknown_cluster_class_says_what_to_install() -> None:
    runner = DaskTaskRunner(cluster_class="no_such_package.SomeCluster")
    with pytest.raises(ImportError, match="no_such_package"):
        runner.__enter__()
    assert not runner.started


def test_dask_options_refuses_unknown_options() -> None:
    with pytest.raises(TypeError, match="unknown option"), dask_options(gpus=1):
        pass


def test_get_dask_client_outside_dask_says_where_it_works() -> None:
    with pytest.raises(RuntimeError, match="DaskTaskRunner"), get_dask_client():
        pass


# -- the temporary cluster ------------------------------------------------------------------


def _listening(pids: set[int]) -> list[str]:
    addresses = []
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                addresses.append(conn.laddr.ip)
    return addresses


def test_default_runner_starts_a_local_cluster_on_loopback_and_closes_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: dict[str, Any] = {}

    def body() -> Any:
        runner = current_runner()
        cluster = runner.cluster
        seen["cluster"] = cluster
        info = runner.client.scheduler_info()
        seen["scheduler"] = info["address"]
        seen["workers"] = list(info["workers"])
        worker_pids = {p.pid for p in psutil.Process().children(recursive=True)}
        seen["listening"] = _listening(worker_pids | {psutil.Process().pid})
        seen["dashboard"] = runner.client.dashboard_link
        return [r for r in t.add.map([1, 2, 3], 1).result()]

    with caplog.at_level(logging.INFO, logger="taskrunners"):
        assert run(DaskTaskRunner(), body) == [2, 3, 4]
    cluster = seen["cluster"]
    assert isinstance(cluster, distributed.LocalCluster)
    assert seen["scheduler"].startswith("tcp://127.0.0.1:")
    assert seen["workers"] and all(w.startswith("tcp://127.0.0.1:") for w in seen["workers"])
    assert seen["listening"] and set(seen["listening"]) == {"127.0.0.1"}
    assert seen["dashboard"].startswith("http://127.0.0.1:")
    assert cluster.status.name == "closed"
    assert any("dashboard" in r.getMessage() and seen["dashboard"] in r.getMessage() for r in caplog.records)


def test_cluster_class_by_dotted_name_with_kwargs_and_adapt() -> None:
    dt.RecordingCluster.adapt_calls.clear()
    runner = DaskTaskRunner(
        cluster_class="dask_runner_tasks.RecordingCluster",
        cluster_kwargs={"n_workers": 1, "processes": False, "dashboard_address": None},
        adapt_kwargs={"minimum": 1, "maximum": 1},
    )
    seen = []

    def body() -> Any:
        seen.append(current_runner().cluster)
        return t.add.submit(20, 22).result()

    assert run(runner, body) == 42
    assert type(seen[0]) is dt.RecordingCluster
    assert seen[0].scheduler_address.startswith("inproc://")  # no host forced on in-process workers
    assert dt.RecordingCluster.adapt_calls == [{"minimum": 1, "maximum": 1}]


def test_async_adapt_is_awaited() -> None:
    dt.AsyncAdaptCluster.adapt_calls.clear()
    runner = DaskTaskRunner(
        cluster_class=dt.AsyncAdaptCluster,
        cluster_kwargs={"n_workers": 1, "processes": False, "dashboard_address": None},
        adapt_kwargs={"maximum": 3},
    )
    assert run(runner, lambda: t.add.submit(1, 1).result()) == 2
    assert dt.AsyncAdaptCluster.adapt_calls == [{"maximum": 3}]


def test_a_local_cluster_subclass_gets_only_the_keywords_it_takes() -> None:
    runner = DaskTaskRunner(cluster_class=dt.NarrowCluster, cluster_kwargs={"n_workers": 1})
    seen = []

    def body() -> Any:
        seen.append(current_runner().cluster)
        return t.add.submit(1, 2).result()

    assert run(runner, body) == 3  # no TypeError for host=, dashboard_address=, scheduler_kwargs=
    assert type(seen[0]) is dt.NarrowCluster


# -- an existing cluster --------------------------------------------------------------------


def test_address_connects_and_leaves_the_cluster_running(cli_cluster: Any) -> None:
    runner = DaskTaskRunner(address=cli_cluster.address)

    def body() -> Any:
        assert current_runner().cluster is None
        return [f.result() for f in [dt.where.submit() for _ in range(4)]]

    places = run(runner, body)
    assert set(_listening(cli_cluster.pids())) == {"127.0.0.1"}  # scheduler, workers, dashboards
    workers = cli_cluster.client.scheduler_info()["workers"]
    assert {p["worker"] for p in places} <= set(workers)
    assert len(workers) == 2  # still running after the flow
    assert cli_cluster.client.submit(sum, [1, 2]).result() == 3


def test_keys_start_with_the_task_name(local_cluster: Any) -> None:
    def body() -> Any:
        one = t.add.submit(1, 2)
        many = t.identity.map([1, 2])
        wait_for = [one, *many]
        for future in wait_for:
            future.wait()
        return [(f.native.key, isinstance(f.native, distributed.Future)) for f in wait_for]

    keys = run(DaskTaskRunner(address=local_cluster.scheduler_address), body)
    assert [k.split("-")[0] for k, _ in keys] == ["add", "identity", "identity"]
    assert all(is_native for _, is_native in keys)
    assert len({k for k, _ in keys}) == 3
    assert all(dask.utils.key_split(k) in ("add", "identity") for k, _ in keys)


# -- results stay on the cluster ----------------------------------------------------------------


def _bytes_received(ports: set[int]) -> int:
    """Bytes this process received on its TCP connections to `ports` (the kernel's count)."""
    done = subprocess.run(
        ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True
    )
    me = f"pid={psutil.Process().pid},"
    total = 0
    lines = done.stdout.splitlines()
    for head, detail in zip(lines[::2], lines[1::2]):
        if me not in head:
            continue
        peer = head.split()[3]  # Recv-Q Send-Q Local Peer Process
        if int(peer.rsplit(":", 1)[1]) not in ports:
            continue
        match = re.search(r"bytes_received:(\d+)", detail)
        total += int(match.group(1)) if match else 0
    return total


@pytest.mark.skipif(
    shutil.which("ss") is None, reason="counts socket bytes with `ss` (iproute2), not installed"
)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the kernel's socket counters (Linux)")
@pytest.mark.parametrize("read_each", [False, True], ids=["chain", "chain-reading-each-link"])
def test_results_move_worker_to_worker_not_through_the_client(cli_cluster: Any, read_each: bool) -> None:
    """A chain of 8 MB values alternating between the two workers: the values move from
    worker to worker (their transfer logs show it) and never reach the flow's process
    (the kernel's byte count of its connections to the cluster stays small), unless
    the flow reads them (the control case)."""
    size, links = 8 * 1024 * 1024, 4
    client = cli_cluster.client
    workers = sorted(client.scheduler_info()["workers"])
    ports = {int(a.rsplit(":", 1)[1]) for a in [cli_cluster.address, *workers]}
    client.run(lambda dask_worker: dask_worker.transfer_outgoing_log.clear())

    def body() -> Any:
        before = _bytes_received(ports)
        with dask_options(workers=[workers[0]]):
            value = dt.make_bytes.submit(size)
        for i in range(links):
            with dask_options(workers=[workers[(i + 1) % 2]], allow_other_workers=False):
                value = dt.grow.submit(value)
            if read_each:
                assert len(value.result()) == size
        last = dt.first_byte.submit(value).result()
        return last, _bytes_received(ports) - before, type(value.state).__name__

    last, received, state_type = run(DaskTaskRunner(address=cli_cluster.address), body)
    assert last == 1 + links
    moved = client.run(lambda dask_worker: sum(entry["total"] for entry in dask_worker.transfer_outgoing_log))
    assert sum(moved.values()) >= links * size  # each link's input came from the other worker
    if read_each:
        assert received >= links * size  # the control: the measure sees values that reach us
    else:
        assert received < size // 4, f"the flow's process received {received} bytes"
        assert state_type == "DeferredState"


def test_large_value_is_fetched_when_read_and_kept_after_the_flow(local_cluster: Any) -> None:
    size = 4 * INLINE_LIMIT

    def body() -> Any:
        big = dt.make_bytes.submit(size, 7)
        small = t.identity.submit(b"x" * 10)
        big.wait()
        small.wait()
        lazy = big.state
        assert isinstance(lazy, DeferredState) and not lazy.loaded
        assert "not fetched yet" in repr(lazy)
        assert not isinstance(small.state, DeferredState)
        unread = dt.make_bytes.submit(size, 9)
        unread.wait()
        return len(big.result()), lazy.loaded, unread.state

    length, loaded, unread_state = run(DaskTaskRunner(address=local_cluster.scheduler_address), body)
    assert (length, loaded) == (size, True)
    # A state still referenced when the flow ends gets its value before the client closes.
    assert unread_state.loaded and unread_state.result() == bytes([9]) * size


# -- Dask options -------------------------------------------------------------------------------


def test_dask_options_reach_the_scheduler(local_cluster: Any, tmp_path: Any) -> None:
    signals = str(tmp_path)
    client = distributed.Client(local_cluster.scheduler_address, set_as_default=False)
    worker = sorted(client.scheduler_info()["workers"])[1]

    def restrictions(key: str) -> dict[str, Any]:
        def read(dask_scheduler: Any, key: str = key) -> dict[str, Any]:
            ts = dask_scheduler.tasks[key]
            return {
                "priority": ts.priority[0] if ts.priority else None,
                "retries": ts.retries,
                "workers": set(ts.worker_restrictions or ()),
                "resources": ts.resource_restrictions,
            }

        return client.run_on_scheduler(read)  # type: ignore[no-any-return]

    def body() -> Any:
        with dask_options(priority=5, retries=2), dask_options(workers=[worker]):
            pinned = dt.held.submit(signals, "pinned", value="p")
        with dask.annotate(priority=3):
            annotated = dt.held.submit(signals, "annotated", value="a")
        t.wait_signal(signals, "pinned-started")
        t.wait_signal(signals, "annotated-started")
        seen = restrictions(pinned.native.key), restrictions(annotated.native.key)
        t.signal(signals, "pinned")
        t.signal(signals, "annotated")
        return seen, pinned.result(), annotated.result(), dt.where.submit().result()

    try:
        (pinned, annotated), p, a, _ = run(DaskTaskRunner(address=local_cluster.scheduler_address), body)
    finally:
        client.close()
    assert (p, a) == ("p", "a")
    assert pinned["priority"] == -5 and pinned["retries"] == 2 and pinned["workers"] == {worker}
    assert annotated["priority"] == -3


def test_resources_restrict_where_runs_go() -> None:
    runner = DaskTaskRunner(
        cluster_kwargs={"n_workers": 1, "threads_per_worker": 2, "processes": False, "dashboard_address": None,
                        "resources": {"GPU": 1}},
    )  # fmt: skip

    def body() -> Any:
        import time

        client = current_runner().client
        with dask_options(resources={"GPU": 1}):
            gpu = dt.where.submit()
        with dask_options(resources={"TPU": 1}):  # no worker has one: Dask holds it back
            tpu = dt.where.submit()
        gpu.wait()

        def scheduler_view(key: str) -> Any:
            return client.run_on_scheduler(
                lambda dask_scheduler: (
                    dask_scheduler.tasks[key].state,
                    dask_scheduler.tasks[key].resource_restrictions,
                )
            )

        deadline = time.monotonic() + DEADLINE
        while scheduler_view(tpu.native.key)[0] != "no-worker" and time.monotonic() < deadline:
            time.sleep(0.02)  # polling the scheduler's state, bounded
        held_back = scheduler_view(tpu.native.key)
        tpu.native.cancel()
        tpu.wait()
        return gpu.state, scheduler_view(gpu.native.key)[1], held_back, tpu.state

    gpu, gpu_resources, held_back, tpu = run(runner, body)
    assert gpu.is_completed() and gpu_resources == {"GPU": 1}
    assert held_back == ("no-worker", {"TPU": 1})
    assert tpu.is_crashed() and "cancelled" in str(tpu.exception)


# -- inside tasks ---------------------------------------------------------------------------------


def test_get_dask_client_inside_a_task_on_one_thread_does_not_deadlock(one_worker_cluster: Any) -> None:
    runner = DaskTaskRunner(address=one_worker_cluster.scheduler_address)

    def body() -> Any:
        return dt.compute_with_dask_client.submit(10).result(), dt.dask_compute_inside.submit(5).result()

    total, (computed, scheduler) = run(runner, body)
    assert total == sum(i * i for i in range(10))
    assert computed == 15 and scheduler == one_worker_cluster.scheduler_address


def test_get_dask_client_in_the_flow_is_the_runners(local_cluster: Any) -> None:
    def body() -> Any:
        with get_dask_client() as client:
            return client is current_runner().client, client.submit(sum, [1, 2, 3]).result()

    assert run(DaskTaskRunner(address=local_cluster.scheduler_address), body) == (True, 6)


def test_nested_submission_reaches_the_same_cluster(local_cluster: Any) -> None:
    key, scheduler = run(
        DaskTaskRunner(address=local_cluster.scheduler_address), lambda: dt.key_of_nested.submit().result()
    )
    assert key.startswith("where-")
    assert scheduler == local_cluster.scheduler_address


# -- dependencies and failures --------------------------------------------------------------------


def test_upstream_of_another_runner_is_waited_for_without_blocking_submit(
    local_cluster: Any, tmp_path: Any
) -> None:
    signals = str(tmp_path)

    # The parent's future reaches the child's task unresolved through this holder (as an
    # argument of the child flow it would be waited for before the child starts).
    holder: dict[str, Future[Any]] = {}

    @flow(task_runner=DaskTaskRunner(address=local_cluster.scheduler_address))
    def child() -> Any:
        downstream = t.add.submit(holder["outer"], 1)  # must not block: the outer run waits for a signal
        assert not downstream.done()
        t.signal(signals, "go")
        return downstream.result()

    @flow(task_runner="threads")
    def parent() -> Any:
        holder["outer"] = t.wait_and_return.submit(signals, "go", value=41)
        return child()

    assert run_with_deadline(parent, DEADLINE) == 42


def test_an_interrupt_crashes_the_open_runs_without_waiting_for_them(
    one_worker_cluster: Any, tmp_path: Any
) -> None:
    """The runs on the cluster (one executing, one queued behind it) end CRASHED at
    once: the runner cancels their Dask tasks instead of waiting for them (the
    executing one would only end once the test releases it, after the flow)."""
    signals = str(tmp_path)
    futures: list[Future[Any]] = []

    @flow(task_runner=DaskTaskRunner(address=one_worker_cluster.scheduler_address))
    def interrupted() -> None:
        futures.append(dt.held.submit(signals, "release"))
        futures.append(dt.where.submit())
        t.wait_signal(signals, "release-started")
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            interrupted()
        states = [f.state for f in futures]
    finally:
        t.signal(signals, "release")  # let the worker's thread go
    assert all(s.is_crashed() and "interrupted" in str(s.exception) for s in states), states


def test_downstream_of_a_lost_run_fails_naming_it(fresh_local_cluster: Any) -> None:
    def body() -> Any:
        lost = t.exit_process.submit()
        downstream = t.add.submit(lost, 1)
        downstream.wait()
        return lost.state, downstream.state, lost.task_run.name

    lost, downstream, name = run(DaskTaskRunner(address=fresh_local_cluster.scheduler_address), body)
    assert lost.is_crashed() and isinstance(lost.exception, TaskRunCrashed)
    assert "worker" in str(lost.exception)
    assert downstream.type is StateType.FAILED and isinstance(downstream.exception, UpstreamFailedError)
    assert name in str(downstream.exception)


def test_unpicklable_argument_fails_that_run_only_naming_it(local_cluster: Any) -> None:
    import threading

    def body() -> Any:
        bad = t.identity.submit(threading.Lock())
        good = t.identity.submit(1)
        bad.wait()
        return bad.state, good.result()

    state, good = run(DaskTaskRunner(address=local_cluster.scheduler_address), body)
    assert state.is_failed() and state.name == "NotSerializable"
    assert isinstance(state.exception, NotSerializableError) and state.exception.parameter == "x"
    assert good == 1


def test_unpicklable_return_value_fails_its_run_and_its_dask_task_holds_the_failure(
    local_cluster: Any,
) -> None:
    import threading

    from taskrunners_dask._remote import INLINE_LIMIT

    @task
    def small_lock() -> Any:
        return threading.Lock()  # small: pickled for the report anyway

    @task
    def big_with_a_lock() -> Any:
        return [b"x" * INLINE_LIMIT, threading.Lock()]  # too big to travel with the report

    def body() -> Any:
        small = small_lock.submit()
        big = big_with_a_lock.submit()
        downstream = t.identity.submit(big)
        for future in (small, big, downstream):
            future.wait()
        return small.state, big.state, downstream.state

    small, big, downstream = run(DaskTaskRunner(address=local_cluster.scheduler_address), body)
    for state in (small, big):
        assert state.is_failed() and state.name == "NotSerializable", state
        assert state.exception.parameter == "return value"
    assert downstream.is_failed() and isinstance(downstream.exception, UpstreamFailedError)


def test_tasks_of_a_module_workers_cannot_import_run_by_value(local_cluster: Any) -> None:
    """Like a notebook or an example run with exec: the module exists only here."""
    module = types.ModuleType("taskrunners_dask_exec_only")
    module.__file__ = "<exec>"
    sys.modules[module.__name__] = module
    try:
        exec(
            "from taskrunners import task\n"
            "OFFSET = 100\n"
            "@task\n"
            "def shifted(x):\n"
            "    import os\n"
            "    return x + OFFSET, os.getpid()\n",
            module.__dict__,
        )
        shifted = module.__dict__["shifted"]

        def body() -> Any:
            return shifted.map([1, 2]).result(), shifted.submit(3).result()

        mapped, single = run(DaskTaskRunner(address=local_cluster.scheduler_address), body)
    finally:
        del sys.modules[module.__name__]
    import os

    assert [v for v, _ in mapped] == [101, 102] and single[0] == 103
    assert os.getpid() not in {pid for _, pid in [*mapped, single]}


def test_a_task_defined_in_a_function_runs(local_cluster: Any) -> None:
    factor = 3

    @task
    def scale(x: int) -> int:
        return x * factor

    def body() -> Any:
        return scale.map([1, 2, 3]).result()

    assert run(DaskTaskRunner(address=local_cluster.scheduler_address), body) == [3, 6, 9]
