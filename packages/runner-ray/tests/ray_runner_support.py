"""Helpers of the Ray runner's tests: the session cluster and connection handling.

A module of its own (not conftest.py) so that test modules can import it by a name no
other test folder uses.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
OBJECT_STORE = 100 * 1024 * 1024
#: A custom resource that the session cluster has two of.
PROBE_RESOURCE = "taskrunners_probe"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RayCluster:
    """A `ray start --head ... --block` process group on 127.0.0.1."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "ray-start.log"

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # keep 127.0.0.1 (see docs/runners/ray.md)
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # SIGTERM stops at once, not after 30 s
        )
        ray = Path(sys.executable).with_name("ray")
        command = [str(ray)] if ray.exists() else [sys.executable, "-m", "ray.scripts.scripts"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    *command, "start", "--head",
                    "--node-ip-address", "127.0.0.1",
                    "--port", str(self.port),
                    "--num-cpus", "2",
                    "--object-store-memory", str(OBJECT_STORE),
                    "--resources", f'{{"{PROBE_RESOURCE}": 2}}',
                    "--include-dashboard", "false",
                    "--disable-usage-stats",
                    "--temp-dir", str(self.directory / "ray"),
                    "--block",
                ],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while b"Ray runtime started" not in self.log.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"ray start exited with {self.process.returncode}:\n{self.log.read_text()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ray start did not come up in {START_TIMEOUT} s:\n{self.log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM to the process group started, then SIGKILL to what is left of it."""
        process = self.process
        if process is None:
            return
        group = process.pid  # start_new_session: the group's id is the leader's pid
        _signal_group(group, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_alive(group):
            _signal_group(group, signal.SIGKILL)
        if process.poll() is None:
            process.wait(STOP_TIMEOUT)
        self.process = None


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


def _group_alive(group: int) -> bool:
    """Whether a live (not zombie) process of the group remains."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def disconnect() -> None:
    """Leave this process without a Ray connection (a test's Ray must not leak into the next)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    handler = signal.getsignal(signal.SIGTERM)  # a test's own ray.init leaves Ray's behind
    if callable(handler) and getattr(handler, "__module__", "").startswith("ray"):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
