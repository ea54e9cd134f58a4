"""The Dask dashboard at a glance: the link shows at flow start, through the flow
run's logger, and a browser on this machine can open it, for every cluster shape."""

from __future__ import annotations

import logging
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from taskrunners import flow
from taskrunners_dask import DaskTaskRunner

LINK = re.compile(r"dashboard: (?P<link>http://(?P<host>[^:/]+):(?P<port>\d+)/status)$")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def links(self) -> list[re.Match[str]]:
        return [m for r in self.records if (m := LINK.search(r.getMessage()))]


@pytest.fixture
def lines() -> Iterator[Lines]:
    logger = logging.getLogger("taskrunners")
    handler = Lines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def opens(link: str) -> bool:
    with urllib.request.urlopen(link, timeout=30) as response:
        return bool(response.status == 200)


def test_in_process_cluster_link_is_loopback_on_a_free_port_and_opens(lines: Lines) -> None:
    opened: list[bool] = []

    @flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 1, "processes": False}))
    def job() -> None:
        opened.append(opens(lines.links()[0]["link"]))  # while the cluster is up

    job()
    (match,) = lines.links()
    record = next(r for r in lines.records if LINK.search(r.getMessage()))
    assert record.name == "taskrunners.flow_runs" and record.flow_run_name.startswith("job-")  # type: ignore[attr-defined]
    assert match["host"] == "127.0.0.1"  # Dask's own link names the machine's network address
    assert match["port"] != "8787"
    assert opened == [True]


def test_two_temporary_clusters_at_once_get_two_free_ports(
    lines: Lines, caplog: pytest.LogCaptureFixture
) -> None:
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1, "processes": False})

    @flow(task_runner=runner)
    def inner() -> None:
        pass

    @flow(task_runner=runner)
    def outer() -> None:
        inner()  # a second cluster while the first is up

    with caplog.at_level(logging.WARNING):
        outer()
    ports = [m["port"] for m in lines.links()]
    assert len(ports) == 2 and len(set(ports)) == 2
    assert not [r for r in caplog.records if "already in use" in r.getMessage()]


def test_connected_by_address_the_link_is_the_schedulers(lines: Lines, local_cluster: Any) -> None:
    opened: list[bool] = []

    @flow(task_runner=DaskTaskRunner(address=local_cluster.scheduler_address))
    def job() -> None:
        opened.append(opens(lines.links()[0]["link"]))

    job()
    (match,) = lines.links()
    assert match["host"] == "127.0.0.1" and opened == [True]
    assert "Connected to the Dask scheduler at tcp://127.0.0.1:" in match.string
