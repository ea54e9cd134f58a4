"""What the Ray runner does beyond the conformance suite.

Most tests run on the session's `ray start` cluster through one connection held for
their class (`TestOnCluster`); the lifecycle tests start, connect and stop Ray
themselves, and begin and end with this process disconnected.
"""

from __future__ import annotations

import os
import signal as signals
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray_runner_tasks as rt
from ray_runner_support import OBJECT_STORE, PROBE_RESOURCE, RayCluster, disconnect
from taskrunners import (
    StateType,
    TaskRunCrashed,
    UpstreamFailedError,
    allow_failure,
    flow,
)
from taskrunners.plugins import available_runners, load_runner
from taskrunners.testing import run_with_deadline
from taskrunners.testing import tasks as t
from taskrunners_ray import (
    DEFAULT_OBJECT_STORE_MEMORY,
    InfeasibleRequestError,
    RayTaskRunner,
    remote_options,
)
from taskrunners_ray._session import _loopback

DEADLINE = 120.0


def run(runner: RayTaskRunner, body: Any, *args: Any) -> Any:
    return run_with_deadline(flow(task_runner=runner)(body), DEADLINE, *args)


# -- configuration and plugin -----------------------------------------------------------


def test_registered_as_ray() -> None:
    assert load_runner("ray") is RayTaskRunner
    entry = next(e for e in available_runners() if e.name == "ray")
    assert entry.distribution == "taskrunners-ray"


def test_configuration_equality_and_checks() -> None:
    runner = RayTaskRunner(address="127.0.0.1:6379", init_kwargs={"namespace": "a"})
    copy = runner.duplicate()
    assert copy == runner and copy is not runner and copy.init_kwargs is not runner.init_kwargs
    assert RayTaskRunner() == RayTaskRunner(None, None)
    assert RayTaskRunner() != RayTaskRunner(address="auto")
    assert RayTaskRunner(init_kwargs={"namespace": "a"}) != RayTaskRunner(init_kwargs={"namespace": "b"})
    assert "127.0.0.1:6379" in repr(runner)
    with pytest.raises(TypeError):
        RayTaskRunner(address=6379)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="address="):
        RayTaskRunner(init_kwargs={"address": "auto"})


def test_remote_options_refuses_what_the_runner_manages() -> None:
    with pytest.raises(ValueError, match="num_returns"), remote_options(num_returns=3):
        pass
    with pytest.raises(ValueError, match="retry_exceptions"), remote_options(retry_exceptions=True):
        pass
    with pytest.raises(ValueError, match="Ray refuses"), remote_options(no_such_option=1):
        pass


def test_remote_options_accept_max_calls() -> None:
    with remote_options(max_calls=1) as options:
        assert options == {"max_calls": 1}


def test_remote_options_nest_and_merge() -> None:
    with remote_options(num_cpus=1, resources={"a": 1}) as outer:
        assert outer == {"num_cpus": 1, "resources": {"a": 1}}
        with remote_options(num_gpus=0.5, resources={"b": 2}, max_retries=4) as inner:
            assert inner == {"num_cpus": 1, "num_gpus": 0.5, "resources": {"a": 1, "b": 2}, "max_retries": 4}
        with remote_options(num_cpus=2) as replaced:
            assert replaced["num_cpus"] == 2


# -- lifecycle --------------------------------------------------------------------------


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _listening(pids: set[int]) -> list[str]:
    """The local addresses of the TCP sockets that `pids` listen on (Linux /proc)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    addresses = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                addresses.append(_address(fields[1].split(":")[0], width))
    return addresses


def _address(hexadecimal: str, width: int) -> str:
    raw = bytes.fromhex(hexadecimal)
    if width == 8:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]  # each 32-bit word is little-endian
    data = b"".join(words)
    if data[:12] == b"\0" * 10 + b"\xff\xff":
        return "::ffff:" + ".".join(str(b) for b in data[12:])
    return ":".join(data[i : i + 2].hex() for i in range(0, 16, 2))


@pytest.mark.skipif(not os.path.isdir("/proc/net"), reason="reads listening sockets from /proc (Linux only)")
def test_local_ray_listens_on_loopback_only_and_stops_at_exit(disconnected: None) -> None:
    seen: dict[str, Any] = {}
    before = _descendants(os.getpid())  # the session cluster's processes, say

    def body() -> int:
        import ray

        seen["initialized"] = ray.is_initialized()
        seen["processes"] = _descendants(os.getpid()) - before
        seen["addresses"] = _listening(seen["processes"] | {os.getpid()})
        seen["resources"] = ray.cluster_resources()
        seen["gcs"] = ray.get_runtime_context().gcs_address
        return t.add.submit(1, 2).result()

    assert run(RayTaskRunner(), body) == 3
    import ray

    assert seen["initialized"] and not ray.is_initialized()
    assert seen["addresses"], "Ray's processes listen on no TCP socket?"
    outside = [a for a in seen["addresses"] if a not in ("127.0.0.1", "::ffff:127.0.0.1")]
    assert not outside, f"Ray listens beyond the loopback address: {outside}"
    assert seen["gcs"].startswith("127.0.0.1:")
    assert seen["resources"]["object_store_memory"] == DEFAULT_OBJECT_STORE_MEMORY
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") for pid in seen["processes"]) and time.monotonic() < deadline:
        time.sleep(0.1)  # Ray's processes take a moment to exit; bounded
    left = [pid for pid in seen["processes"] if _alive(pid)]
    assert not left, f"processes of the runner's Ray still run: {left}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_ray_that_was_running_is_used_and_left_running(disconnected: None, ray_cluster: RayCluster) -> None:
    import ray

    with _loopback():  # the user's own ray.init(), to the session's cluster
        ray.init(address=ray_cluster.address)

    def body() -> Any:
        return ray.get_runtime_context().gcs_address, t.add.submit(1, 1).result()

    try:
        assert run(RayTaskRunner(), body) == (ray_cluster.address, 2)
        assert ray.is_initialized()
        assert run(RayTaskRunner(address=ray_cluster.address), body)[1] == 2
        assert ray.is_initialized()
        other = RayTaskRunner(address="127.0.0.1:1")
        with pytest.raises(RuntimeError, match="already connected"), other:
            pass
        assert not other.started
    finally:
        ray.shutdown()


def test_an_address_is_connected_to_and_left_running(disconnected: None, ray_cluster: RayCluster) -> None:
    import ray

    def body() -> Any:
        return ray.get_runtime_context().gcs_address, t.add.submit(2, 2).result()

    runner = RayTaskRunner(address=ray_cluster.address)
    assert run(runner, body) == (ray_cluster.address, 4)
    assert not ray.is_initialized()  # disconnected at the end of the flow run
    assert ray_cluster.process is not None and ray_cluster.process.poll() is None  # still running
    assert run(runner, body) == (ray_cluster.address, 4)  # and it takes another flow run


def test_auto_finds_the_cluster_named_by_ray_address(
    disconnected: None, ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)

    def body() -> Any:
        return ray.get_runtime_context().gcs_address

    assert run(RayTaskRunner(address="auto"), body) == ray_cluster.address


def test_init_kwargs_pass_through(disconnected: None, ray_cluster: RayCluster) -> None:
    runner = RayTaskRunner(
        address=ray_cluster.address,
        init_kwargs={
            "namespace": "taskrunners-test",
            "runtime_env": {"env_vars": {"TASKRUNNERS_PROBE": "yes"}},
        },
    )

    def body() -> Any:
        return rt.ray_namespace.submit().result(), rt.environment_variable.submit(
            "TASKRUNNERS_PROBE"
        ).result()

    assert run(runner, body) == ("taskrunners-test", "yes")


def test_nested_flows_share_the_ray_and_the_last_one_stops_it(
    disconnected: None, ray_environment: Path
) -> None:
    import ray

    local = RayTaskRunner(
        init_kwargs={
            "num_cpus": 2,
            "object_store_memory": OBJECT_STORE,
            "_temp_dir": str(ray_environment / "local"),
        }
    )

    @flow(task_runner=local)
    def child() -> Any:
        return ray.get_runtime_context().get_job_id(), t.add.submit(1, 1).result()

    def parent() -> Any:
        job = ray.get_runtime_context().get_job_id()
        inner_job, value = child()
        return job == inner_job, ray.is_initialized(), value, t.add.submit(value, 1).result()

    assert run(local, parent) == (True, True, 2, 3)
    assert not ray.is_initialized()


# -- on the session cluster ---------------------------------------------------------------


class TestOnCluster:
    """Behaviour on the session's `ray start` cluster, through one connection."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def connection(cls, ray_cluster: RayCluster) -> Iterator[RayTaskRunner]:
        disconnect()
        with RayTaskRunner(address=ray_cluster.address) as keeper:
            yield keeper
        disconnect()

    @pytest.fixture
    def runner(self, ray_cluster: RayCluster) -> RayTaskRunner:
        return RayTaskRunner(address=ray_cluster.address)

    def test_results_move_between_workers_not_through_the_flow(
        self, runner: RayTaskRunner, tmp_path: Path
    ) -> None:
        record = str(tmp_path / "unpickled")
        size = 1_000_000  # above Ray's 100 KiB limit for objects sent inline through their owner

        def body() -> Any:
            made = rt.make_tracked.submit(size, record)
            received = rt.measure.submit(made)
            nested = rt.measure_nested.submit({"inside": [made, made]}, wait_for=[received])
            sizes = received.result(), nested.result()
            before = rt.unpickled_in(record)
            state = made.state  # final, without its value coming here
            value = made.result()  # now it does
            return sizes, before, state.is_completed(), len(value.payload), rt.unpickled_in(record)

        (received, nested), before, completed, length, after = run(runner, body)
        assert received[0] == size and nested == 2 * size and length == size
        assert completed
        assert os.getpid() not in before, "the flow's process unpickled the value before anyone asked"
        assert received[1] in before, "the worker running `measure` did not receive the value"
        assert after.count(os.getpid()) == 1  # the check can fail: reading it does bring it here

    def test_native_handle_is_the_object_ref_of_the_pickled_state(self, runner: RayTaskRunner) -> None:
        import pickle

        import ray

        def body() -> Any:
            future = t.add.submit(20, 22)
            future.wait()
            return isinstance(future.native, ray.ObjectRef), pickle.loads(ray.get(future.native)).result()

        assert run(runner, body) == (True, 42)

    def test_remote_options_reach_ray_and_nest(self, runner: RayTaskRunner) -> None:
        def body() -> Any:
            with remote_options(num_cpus=1, resources={PROBE_RESOURCE: 1}):
                first = rt.assigned_resources.submit()
                with remote_options(num_cpus=0.5, resources={PROBE_RESOURCE: 2}):
                    second = rt.assigned_resources.submit()
            plain = rt.assigned_resources.submit()
            return first.result(), second.result(), plain.result()

        first, second, plain = run(runner, body)
        assert first == {"CPU": 1.0, PROBE_RESOURCE: 1.0}
        assert second == {"CPU": 0.5, PROBE_RESOURCE: 2.0}
        assert plain == {"CPU": 1.0}

    def test_max_calls_applies_through_ray_remote(self, runner: RayTaskRunner) -> None:
        def body() -> Any:
            with remote_options(max_calls=1):  # Ray takes max_calls only in ray.remote(...)
                first = rt.pid.submit().result()
                second = rt.pid.submit().result()
            return first, second

        first, second = run(runner, body)
        assert first != second  # each worker process ran one call, then made way

    def test_a_request_no_node_can_satisfy_fails_at_once(self, runner: RayTaskRunner) -> None:
        def body() -> Any:
            with remote_options(num_gpus=1):
                gpu = rt.pid.submit()
            with remote_options(resources={"no_such_resource": 1}):
                custom = rt.identity.submit(1)
            fine = rt.identity.submit(2)
            return gpu.state, custom.state, fine.result()

        began = time.monotonic()
        gpu, custom, fine = run(runner, body)
        assert time.monotonic() - began < 30
        assert fine == 2
        assert gpu.is_failed() and gpu.name == "Infeasible"
        assert isinstance(gpu.exception, InfeasibleRequestError)
        assert "'pid'" in str(gpu.exception) and "GPU=1" in str(gpu.exception)
        assert "'identity'" in str(custom.exception) and "no_such_resource=1" in str(custom.exception)

    def test_nested_submission_with_every_cpu_taken(self, runner: RayTaskRunner, tmp_path: Path) -> None:
        directory = str(tmp_path)

        def body() -> Any:
            # Both runs hold one of the cluster's 2 CPUs while they wait for the runs
            # they submit: those must still run.
            a = rt.nest_and_meet.submit(directory, "a", "b", 3)
            b = rt.nest_and_meet.submit(directory, "b", "a", 3)
            return a.result(), b.result()

        assert run(runner, body) == (3, 3)

    def test_an_upstream_of_another_runner_is_waited_for_here(self, runner: RayTaskRunner) -> None:
        # The parent's futures reach the child's tasks unresolved through this holder (as
        # arguments of the child flow they would arrive as values).
        outer: dict[str, Any] = {}

        @flow(task_runner=runner)
        def child() -> Any:
            added = t.add.submit(outer["upstream"], 10)  # a thread-runner future: its value is sent
            refused = rt.identity.submit(outer["unsendable"])
            refused.wait()
            return added.result(), refused.state

        def parent() -> Any:
            outer.update(upstream=t.add.submit(1, 2), unsendable=rt.make_lock.submit())
            return child()

        value, refused = run_with_deadline(flow(task_runner="threads")(parent), DEADLINE)
        assert value == 13
        assert refused.is_failed() and refused.name == "NotSerializable"
        assert "cannot be pickled" in str(refused.exception)

    def test_many_runs_mapped_from_inside_a_task(self, runner: RayTaskRunner) -> None:
        def body() -> Any:
            return rt.map_inside.submit(7).result()

        assert run(runner, body) == list(range(7))

    def test_an_interrupted_flow_crashes_its_open_runs(self, runner: RayTaskRunner, tmp_path: Path) -> None:
        directory = str(tmp_path)
        runner.__enter__()
        future = runner.submit(rt.wait_to_be_killed, {"directory": directory})
        t.wait_signal(directory, "pid", timeout=60)
        began = time.monotonic()
        runner.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None)  # as `with` does on Ctrl-C
        assert time.monotonic() - began < 30
        assert future.state.is_crashed() and "interrupted by SIGINT (Ctrl-C)" in str(future.state.exception)
        assert not runner.started

    def test_a_worker_killed_mid_run_crashes_that_run_only(
        self, runner: RayTaskRunner, tmp_path: Path
    ) -> None:
        directory = str(tmp_path)

        def body() -> Any:
            doomed = rt.wait_to_be_killed.submit(directory)
            t.wait_signal(directory, "pid", timeout=60)
            others = t.add.map(range(4), 1)
            os.kill(int(Path(directory, "pid").read_text()), signals.SIGKILL)
            doomed.wait()
            return doomed.state, others.result()

        state, others = run(runner, body)
        assert state.is_crashed() and isinstance(state.exception, TaskRunCrashed)
        assert "worker" in str(state.exception)
        assert others == [1, 2, 3, 4]

    def test_a_lost_upstream_fails_its_downstream_runs_by_name(self, runner: RayTaskRunner) -> None:
        def body() -> Any:
            lost = rt.exit_worker.submit()
            downstream = rt.identity.submit(lost)
            tolerant = rt.identity.submit(allow_failure(lost))
            ordered = rt.identity.submit(1, wait_for=[lost])
            after = rt.identity.submit(downstream)
            for future in (downstream, tolerant, ordered, after):
                future.wait()
            return lost.task_run.name, [f.state for f in (lost, downstream, tolerant, ordered, after)]

        lost_name, (lost_state, downstream, tolerant, ordered, after) = run(runner, body)
        assert lost_state.is_crashed()
        for state in (downstream, ordered, after):
            assert state.is_failed() and isinstance(state.exception, UpstreamFailedError)
        assert lost_name in str(downstream.exception)
        assert tolerant.is_completed() and isinstance(tolerant.result(), TaskRunCrashed)

    def test_exceptions_that_cannot_be_pickled_and_arguments_that_cannot(self, runner: RayTaskRunner) -> None:
        def body() -> Any:
            raised = rt.raise_unpicklable.submit("kept message")
            sent = rt.identity.submit(threading.Lock())
            raised.wait()
            sent.wait()
            return raised.state, sent.state

        raised, sent = run(runner, body)
        assert raised.is_failed()  # a stand-in: the type's name, its message, caught as the type
        assert isinstance(raised.exception, rt.Unpicklable) and str(raised.exception) == "kept message"
        assert sent.is_failed() and sent.name == "NotSerializable"
        assert isinstance(sent.exception, TypeError)

    def test_ray_reruns_a_lost_worker_as_often_as_the_task_retries(
        self, runner: RayTaskRunner, tmp_path: Path
    ) -> None:
        once = t.exit_process_once.with_options(retries=1)

        def body() -> Any:
            with remote_options(max_retries=0):  # the options win over the task's retries
                overridden = once.submit(str(tmp_path), "first")
                overridden.wait()
            retried = once.submit(str(tmp_path), "second")
            return overridden.state, retried.result()

        overridden, retried = run(runner, body)
        assert overridden.type is StateType.CRASHED
        assert retried == "recovered"

    def test_many_short_runs_go_in_batches_each_with_its_own_object(self, runner: RayTaskRunner) -> None:
        import pickle

        import ray

        def body() -> Any:
            mapped = t.add.map(range(300), 1)
            values = mapped.result()
            natives = [future.native for future in mapped]
            last = pickle.loads(ray.get(natives[-1])).result()
            return values, len({ref.task_id() for ref in natives}), last

        values, ray_tasks, last = run(runner, body)
        assert values == list(range(1, 301)) and last == 300
        assert ray_tasks < 300, "no batch was formed"

    def test_a_worker_killed_in_a_batch_crashes_only_the_run_that_killed_it(
        self, runner: RayTaskRunner
    ) -> None:
        def body() -> Any:
            mapped = rt.exit_on.map(range(300), bad=250)
            for future in mapped:
                future.wait()
            return [future.state for future in mapped], len({f.native.task_id() for f in mapped})

        states, ray_tasks = run(runner, body)
        assert ray_tasks < 300, "no batch was formed"
        assert states[250].is_crashed() and "worker" in str(states[250].exception)
        assert [s.result() for i, s in enumerate(states) if i != 250] == [i for i in range(300) if i != 250]

    def test_in_a_batch_a_run_that_cannot_be_sent_or_returned_fails_alone(
        self, runner: RayTaskRunner
    ) -> None:
        def body() -> Any:
            arguments = [threading.Lock() if i == 150 else i for i in range(200)]
            sent = rt.identity.map(arguments)
            returned = rt.lock_or_value.map(range(200), bad=120)
            for future in [*sent, *returned]:
                future.wait()
            return [f.state for f in sent], [f.state for f in returned]

        sent, returned = run(runner, body)
        assert sent[150].is_failed() and sent[150].name == "NotSerializable"
        assert returned[120].is_failed() and returned[120].name == "NotSerializable"
        assert [s.result() for i, s in enumerate(sent) if i != 150] == [i for i in range(200) if i != 150]
        assert [s.result() for i, s in enumerate(returned) if i != 120] == [i for i in range(200) if i != 120]

    def test_runs_that_take_long_go_to_ray_one_by_one(self, runner: RayTaskRunner) -> None:
        def body() -> Any:
            mapped = rt.busy.map([0.1] * 10)
            mapped.result()
            return len({future.native.task_id() for future in mapped})

        assert run(runner, body) == 10
