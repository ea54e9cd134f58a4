"""What runs in a worker process: receive batches of runs, execute them, send states back.

The protocol over the worker's pipe, each message one `pickle` of a list:

- parent to worker: `[(token, item), ...]`, each `item` being the pickle (`dumps`) of
  `(TaskCall, upstream_states)`; an empty list asks the worker to exit.
- worker to parent: `[(token, state_bytes, traceback_text), ...]` for the runs done
  since the last reply; a reply is sent when the batch is done, or sooner once
  `FLUSH_SECONDS` have passed, so that a slow batch reports as it goes.
- before its first batch the worker sends `[("ready", None, None)]`, or
  `[("init-failed", None, traceback_text)]` if the initializer raised.

`progress` (shared memory) holds the token of the run being executed, so that the
parent knows which run a dead worker was executing.
"""

from __future__ import annotations

import pickle
import signal
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from taskrunners import State, StateType

#: A worker reports finished runs at least this often while a batch is in progress.
FLUSH_SECONDS = 0.02


class RemoteError(Exception):
    """An exception from a worker that could not be sent back as itself.

    Attributes:
        type_name: The qualified name of the original exception's type.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


def dumps(value: Any) -> bytes:
    """Pickle `value`: with the fast standard pickler where it can, else cloudpickle.

    cloudpickle is used as soon as a module is registered to travel by value, since
    the standard pickler would send its objects by reference.
    """
    if not _by_value_registry():
        try:
            return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except Exception:
            pass
    return cloudpickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _by_value_registry() -> Any:
    registry = getattr(cloudpickle.cloudpickle, "_PICKLE_BY_VALUE_MODULES", None)
    return cloudpickle.list_registry_pickle_by_value() if registry is None else registry


def worker_main(conn: Connection, progress: Any, setup: bytes) -> None:
    """The worker process's main loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the flow's to handle
    try:
        # Inside the `try`: an initializer that cannot be unpickled here is reported
        # like one that raises, not as a worker that silently failed to start.
        initializer, initargs = cloudpickle.loads(setup)
        if initializer is not None:
            initializer(*initargs)
    except BaseException:
        conn.send_bytes(pickle.dumps([("init-failed", None, traceback.format_exc())]))
        return
    from taskrunners_threads import ThreadPoolTaskRunner

    # Runs that a task submits from inside this worker run here, in threads.
    nested = ThreadPoolTaskRunner()
    nested.__enter__()
    conn.send_bytes(pickle.dumps([("ready", None, None)]))
    try:
        while True:
            try:
                batch = pickle.loads(conn.recv_bytes())
            except EOFError:
                break
            if not batch:
                break
            _run_batch(conn, progress, batch, nested)
    finally:
        nested.__exit__(None, None, None)
        conn.close()


def _run_batch(conn: Connection, progress: Any, batch: list[tuple[int, bytes]], nested: Any) -> None:
    replies = []
    flushed = time.monotonic()
    for token, item in batch:
        progress.value = token
        replies.append(_run_one(token, item, nested))
        now = time.monotonic()
        if now - flushed > FLUSH_SECONDS:
            conn.send_bytes(pickle.dumps(replies))
            replies = []
            flushed = now
    progress.value = -1
    if replies:
        conn.send_bytes(pickle.dumps(replies))


def _run_one(token: int, item: bytes, nested: Any) -> tuple[int, bytes, str | None]:
    try:
        call, states = pickle.loads(item)
    except BaseException as exc:
        error = RuntimeError(
            f"the worker process could not unpickle the run: {type(exc).__name__}: {exc}. A task and "
            "its arguments must be importable or picklable by value in the worker."
        )
        return token, dumps(State(StateType.FAILED, exception=error)), None
    state = call.execute(states, runner=nested)
    nested.wait_idle()  # runs the task submitted, and did not wait for, end with it
    text = None
    if state.exception is not None:
        text = "".join(traceback.format_exception(state.exception))
    return token, _dump_state(call, state), text


def _dump_state(call: Any, state: State[Any]) -> bytes:
    try:
        return dumps(state)
    except Exception as exc:
        if state.exception is None:
            error: BaseException = TypeError(
                f"task {call.info.task_name!r} returned a value that cannot be pickled to send it "
                f"back from the worker process: {type(exc).__name__}: {exc}. Return something "
                "picklable (plain data), or keep the object inside the task."
            )
        else:
            original = state.exception
            error = RemoteError(f"{type(original).__module__}.{type(original).__qualname__}", str(original))
        return dumps(State(StateType.FAILED, exception=error, attempt=state.attempt, started=state.started))

