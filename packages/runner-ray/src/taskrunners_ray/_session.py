"""Which Ray a runner uses: one it starts, one it connects to, or one already there.

A process holds one Ray connection at a time: the first runner that needs Ray starts
or connects to one, runners that start while it is up join its `Session`, and the last
to leave calls `ray.shutdown()`. A Ray that was there before any runner (the user's own
`ray.init()`, or a Ray worker process) is never shut down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["DEFAULT_OBJECT_STORE_MEMORY", "Session", "join", "leave"]

#: The object store of a local Ray that the runner starts (Ray's default is 30 % of RAM).
DEFAULT_OBJECT_STORE_MEMORY = 512 * 1024 * 1024

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

_lock = threading.RLock()
_current: Session | None = None


@dataclasses.dataclass(eq=False)
class Session:
    """A Ray connection that runners of this process made, and how many of them use it."""

    job_id: str
    users: int = 1
    #: The Ray dashboard's address, if the Ray has one and told it.
    dashboard: str | None = None
    #: The SIGTERM handler before `ray.init` installed Ray's (main thread only), put
    #: back when the session ends: Ray's handler must not outlive the runner's Ray.
    sigterm: Any = None


def join(address: str | None, init_kwargs: dict[str, Any]) -> Session | None:
    """Connect this process to the Ray the runner asks for, and return the `Session` to
    `leave` when the runner stops (`None` for a Ray that is not the runners' to stop).

    Raises:
        RuntimeError: This process is connected to another Ray than `address`, or
            connecting failed for want of an authentication token.
    """
    global _current
    import ray

    with _lock:
        if ray.is_initialized():
            _check_same_cluster(address)
            session = _current
            if session is None or session.job_id != _job_id():
                return None
            session.users += 1
            return session
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        main = threading.current_thread() is threading.main_thread()
        before = signal.getsignal(signal.SIGTERM) if main else None
        if address is None:
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "object_store_memory": DEFAULT_OBJECT_STORE_MEMORY,
                "_node_ip_address": "127.0.0.1",
            }
            with _loopback():  # "local" starts a new Ray even if RAY_ADDRESS names one
                context = ray.init(address="local", **{**kwargs, **init_kwargs})
        else:
            try:
                with _loopback() if address == "auto" or _is_loopback(address) else contextlib.nullcontext():
                    context = ray.init(address=address, **init_kwargs)
            except Exception as exc:
                if "auth" in type(exc).__name__.lower() or "token" in str(exc).lower():
                    raise RuntimeError(
                        f"could not connect to the Ray cluster at {address!r}: {exc}. The cluster "
                        "asks for token authentication: set RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN "
                        "(or RAY_AUTH_TOKEN_PATH) to the cluster's token, in this process's "
                        "environment before the flow starts."
                    ) from exc
                raise
        _current = Session(_job_id(), dashboard=_dashboard(context), sigterm=before)
        return _current


def _dashboard(context: Any) -> str | None:
    url = getattr(context, "dashboard_url", None)
    if not url:
        return None
    url = str(url)
    return url if "://" in url else f"http://{url}"


def leave(session: Session) -> None:
    """One runner stops using `session`; the last one shuts Ray down (or disconnects)."""
    global _current
    import ray

    with _lock:
        session.users -= 1
        if session.users > 0:
            return
        if _current is session:
            _current = None
        if ray.is_initialized() and _job_id() == session.job_id:
            ray.shutdown()
        if session.sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, session.sigterm)  # not Ray's any more


def _job_id() -> str:
    import ray

    try:
        return str(ray.get_runtime_context().get_job_id())
    except Exception:  # noqa: BLE001 - a client connection may not tell; identity is then the object
        return "?"


def _is_loopback(address: str) -> bool:
    if "://" in address:
        return False
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


@contextlib.contextmanager
def _loopback() -> Iterator[None]:
    """Keep Ray from replacing 127.0.0.1 by this machine's outward address (it does not
    where its `ENABLE_RAY_CLUSTER` switch is off), so that a local Ray listens on
    127.0.0.1 only and a driver can reach a cluster on this machine that does."""
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _check_same_cluster(address: str | None) -> None:
    """Refuse to run on the Ray this process is connected to if `address` names another."""
    if address is None or address == "auto" or "://" in address:
        return
    import ray

    try:
        connected = str(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - a connection that cannot tell its address is not checked
        return
    if connected.rsplit(":", 1)[-1] != address.rsplit(":", 1)[-1]:
        raise RuntimeError(
            f"RayTaskRunner(address={address!r}): this process is already connected to the "
            f"Ray at {connected}, and a process holds one Ray connection at a time. Use that "
            "address, or end the other connection (ray.shutdown()) first."
        )
