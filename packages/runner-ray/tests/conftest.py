"""Ray for the Ray runner's tests: set up once per session, on 127.0.0.1 only.

- `ray_environment` (session, automatic): the environment every Ray of the session
  sees, set before any starts: token authentication with a token of the session's own
  (never what an earlier run left in `~/.ray`), usage statistics off, and this folder
  on `PYTHONPATH` so that workers import the tests' task module by name.
- `ray_cluster` (session): a cluster started as a separate process group with
  `ray start --head --node-ip-address 127.0.0.1 --port <free> --num-cpus 2 --block`,
  a small object store, loopback only (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, see
  docs/runners/ray.md); stopped by signalling the process group it started, never
  with `ray stop` (which stops every Ray on the machine).

A process holds one Ray connection at a time, so a test that starts or connects to a
Ray leaves this process disconnected when it ends (`disconnected`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # so that `ray_runner_tasks` and `ray_runner_support` import by name

from ray_runner_support import RayCluster, disconnect


@pytest.fixture(scope="session", autouse=True)
def ray_environment() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="trray-"))  # short: Ray's socket paths must fit 107 bytes
    token = directory / "auth_token"
    token.write_text(secrets.token_hex(32))
    settings = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    _forget_cached_token()
    try:
        yield directory
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _forget_cached_token()
        shutil.rmtree(directory, ignore_errors=True)


def _forget_cached_token() -> None:
    """Ray caches the token it read first in this process; make it read ours."""
    try:
        from ray._raylet import AuthenticationTokenLoader

        AuthenticationTokenLoader.instance().reset_cache()
    except Exception:  # an older Ray without token authentication: nothing cached
        pass


@pytest.fixture(scope="session")
def ray_cluster(ray_environment: Path) -> Iterator[RayCluster]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the session cluster is stopped through its process group (POSIX; checked on Linux)")
    cluster = RayCluster(ray_environment)
    cluster.start()
    try:
        yield cluster
    finally:
        disconnect()
        cluster.stop()


@pytest.fixture
def disconnected() -> Iterator[None]:
    """The test starts and ends with this process holding no Ray connection."""
    disconnect()
    yield
    disconnect()
