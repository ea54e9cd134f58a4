"""Prefect programs ported by `taskrunners migrate` run on taskrunners.

Each program is written the way Prefect 3's docs write them, in one import style or
another (names from `prefect` and its submodules, `import prefect` with attribute use,
aliases, prefect-dask), with comments and uneven layout. The test ports the file with
the command, checks that no Prefect import is left and that every comment survived,
and runs the result in a fresh interpreter: the program's own asserts and its printed
result are the test. One runs on the thread runner, one on a small Dask LocalCluster.
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import pytest

pytest.importorskip("libcst", reason="taskrunners migrate needs libcst (the [migrate] extra)")

from taskrunners._cli import main

CRAWL = '''\
"""Crawl a few pages on a thread pool (Prefect 3 style)."""
from prefect import flow, task  # the decorators
from prefect.futures import wait, as_completed, PrefectFuture
from prefect.task_runners import (
    ThreadPoolTaskRunner,   # threads for I/O
)
from prefect.utilities.annotations import unmapped, allow_failure


@task(retries=2, retry_delay_seconds=0)
def fetch(url: str) -> str:
    if url.endswith("/missing"):
        raise FileNotFoundError(url)
    return f"<p>{url}</p>"


@task
def size(page, unit: str) -> str:
    if isinstance(page, Exception):   # allow_failure passes the exception
        return "failed"
    return f"{len(page)} {unit}"


@flow(name="crawl", task_runner=ThreadPoolTaskRunner(max_workers=3))
def crawl(urls: list[str]) -> list[str]:
    pages = fetch.map(urls)
    sizes = size.map(allow_failure(pages), unmapped("chars"))
    done, not_done = wait(sizes)
    assert len(done) == len(urls) and not not_done
    finished: list[PrefectFuture] = list(as_completed(sizes))
    assert len(finished) == len(urls)
    assert pages[-1].state.is_failed()
    return [s.result() for s in sizes]


if __name__ == "__main__":
    print(crawl(["https://a.example", "https://b.example/missing"]))
'''

ATTRIBUTES = """\
import prefect
import prefect.futures as pf_futures   # an aliased submodule
from prefect import task as prefect_task


@prefect_task
def square(x: int) -> int:
    return x * x


@prefect.task(retries=1)
def add(a: int, b: int) -> int:
    return a + b


@prefect.flow(task_runner=prefect.task_runners.ThreadPoolTaskRunner(max_workers=2))
def compute(n: int) -> int:
    squares = square.map(range(n))
    total = add.submit(squares[1], squares[2])  # futures as arguments
    pf_futures.wait([total])
    assert total.task_run_id is not None
    return total.result()


if __name__ == "__main__":
    print(compute(3))
"""

DASK = """\
import distributed
from prefect import flow, task
from prefect.futures import PrefectFutureList
from prefect_dask.task_runners import DaskTaskRunner  # pip install prefect-dask


@task
def double(x: int) -> int:
    return 2 * x


@flow(task_runner=DaskTaskRunner(
    cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": False},
))
def doubled(xs: list[int]) -> list[int]:
    futures: PrefectFutureList = double.map(xs)
    results = futures.result()
    assert all(isinstance(f.wrapped_future, distributed.Future) for f in futures)
    return results


if __name__ == "__main__":
    print(doubled([1, 2, 3]))
"""

PROGRAMS = [
    pytest.param(CRAWL, "['24 chars', 'failed']", id="threads-from-imports"),
    pytest.param(ATTRIBUTES, "5", id="threads-import-prefect"),
    pytest.param(DASK, "[2, 4, 6]", id="dask-local-cluster"),
]


def prefect_imports(source: str) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules.append(node.module or "")
    return [m for m in modules if m.split(".")[0] in {"prefect", "prefect_dask", "prefect_ray"}]


def comments(source: str) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [token.string for token in tokens if token.type == tokenize.COMMENT]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("program", "printed"), PROGRAMS)
def test_a_ported_program_runs(
    program: str, printed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "program.py"
    path.write_text(program)

    assert main(["migrate", str(path)]) == 0
    assert "0 note(s)" in capsys.readouterr().err
    ported = path.read_text()
    assert not prefect_imports(ported), ported
    assert comments(ported) == comments(program)
    assert main(["migrate", "--check", str(path)]) == 0  # a second run would change nothing

    done = subprocess.run(
        [sys.executable, str(path)], check=False, capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert done.returncode == 0, textwrap.indent(ported + done.stderr, "  ")
    assert done.stdout.splitlines()[-1] == printed
