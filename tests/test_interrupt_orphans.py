"""The suite's interrupt case on each first-party runner that starts processes of its
own (a process pool, a LocalCluster, a local Ray), checking by PID that none of them
outlives the flow's process: after one Ctrl-C, and after two.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from taskrunners import TaskRunner
from taskrunners.testing import check_interrupted, run_interrupted

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")


def processes() -> TaskRunner:
    from taskrunners_processes import ProcessPoolTaskRunner

    return ProcessPoolTaskRunner(max_workers=2)


def dask() -> TaskRunner:
    pytest.importorskip("distributed", reason="the Dask case needs taskrunners-dask")
    from taskrunners_dask import DaskTaskRunner

    kwargs = {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None}
    return DaskTaskRunner(cluster_kwargs=kwargs)


@pytest.fixture
def ray_folder() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="trray-")  # short: Ray's socket paths must fit 107 bytes
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


RUNNERS: dict[str, Callable[[], TaskRunner]] = {"processes": processes, "dask": dask}


@pytest.mark.parametrize("second", [False, True], ids=["one Ctrl-C", "two Ctrl-C"])
@pytest.mark.parametrize("name", ["processes", "dask", "ray"])
def test_no_process_outlives_an_interrupted_flow(
    name: str, second: bool, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if name == "ray":
        pytest.importorskip("ray", reason="the Ray case needs taskrunners-ray")
        from taskrunners_ray import RayTaskRunner

        monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        folder = request.getfixturevalue("ray_folder")
        runner: TaskRunner = RayTaskRunner(init_kwargs={"num_cpus": 2, "_temp_dir": folder})
    else:
        runner = RUNNERS[name]()
    signals = (signal.SIGINT, signal.SIGINT) if second else (signal.SIGINT,)
    outcome = run_interrupted(runner, tmp_path, signals=signals, release=not second, deadline=180)
    assert outcome.returncode in (-signal.SIGINT, 130), outcome.stderr[-4000:]
    assert outcome.processes, f"the {name} runner started no process of its own: nothing was checked"
    check_interrupted(outcome, "SIGINT (Ctrl-C)")  # among others: no process left, by PID
