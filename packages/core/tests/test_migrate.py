"""`taskrunners migrate`: the codemod that ports Prefect code, and its command line.

Sources go through `migrate_source` (the codemod) or through the CLI's `main` (files,
directories, modes, exit status). Each rewrite is compared with the exact text it
must give, so a change of layout or a lost comment fails a test. The ported programs
that run are in tests/test_migrate_ported_programs.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("libcst", reason="taskrunners migrate needs libcst (the [migrate] extra)")

from taskrunners._cli import main
from taskrunners._migrate import Migration, _table, migrate_source


def port(source: str) -> str:
    return migrate_source(textwrap.dedent(source)).code.decode()


def notes(source: str) -> list[tuple[int, str, str]]:
    return [(n.line, n.api, n.section) for n in migrate_source(textwrap.dedent(source)).notes]


# -- imports, one form at a time -------------------------------------------------------


@pytest.mark.parametrize(
    ("prefect", "ours"),
    [
        ("from prefect import flow, task", "from taskrunners import flow, task"),
        ("from prefect import Flow, Task, State", "from taskrunners import Flow, Task, State"),
        ("from prefect import unmapped, allow_failure", "from taskrunners import unmapped, allow_failure"),
        ("from prefect import tags, get_run_logger", "from taskrunners import tags, get_run_logger"),
        ("from prefect.flows import flow", "from taskrunners import flow"),
        ("from prefect.tasks import task, exponential_backoff", "from taskrunners import task, exponential_backoff"),
        ("from prefect.futures import wait, as_completed", "from taskrunners import wait, as_completed"),
        ("from prefect.futures import PrefectFutureList", "from taskrunners import FutureList"),
        ("from prefect.states import Completed, Failed", "from taskrunners.states import Completed, Failed"),
        ("from prefect.states import State, StateType", "from taskrunners.states import State, StateType"),
        ("from prefect.context import tags", "from taskrunners import tags"),
        ("from prefect.logging import get_run_logger", "from taskrunners import get_run_logger"),
        ("from prefect.utilities.annotations import quote, opaque", "from taskrunners import quote, opaque"),
        ("from prefect.exceptions import MappingLengthMismatch", "from taskrunners import MappingLengthMismatch"),
        ("from prefect.task_runners import ThreadPoolTaskRunner", "from taskrunners_threads import ThreadPoolTaskRunner"),
        ("from prefect.task_runners import ProcessPoolTaskRunner", "from taskrunners_processes import ProcessPoolTaskRunner"),
        ("from prefect_dask import DaskTaskRunner, get_dask_client", "from taskrunners_dask import DaskTaskRunner, get_dask_client"),
        ("from prefect_dask.task_runners import DaskTaskRunner", "from taskrunners_dask import DaskTaskRunner"),
        ("from prefect_ray import RayTaskRunner", "from taskrunners_ray import RayTaskRunner"),
        ("from prefect_ray.task_runners import RayTaskRunner", "from taskrunners_ray import RayTaskRunner"),
        ("from prefect_ray.context import remote_options", "from taskrunners_ray import remote_options"),
        ("from prefect import *", "from taskrunners import *"),
    ],
)  # fmt: skip
def test_a_from_import_becomes_ours(prefect: str, ours: str) -> None:
    assert port(prefect + "  # why\n") == ours + "  # why\n"


def test_an_alias_stays() -> None:
    assert (
        port("from prefect import task as t, flow as f\n") == "from taskrunners import task as t, flow as f\n"
    )
    assert (
        port("from prefect.futures import PrefectFuture as PF\n") == "from taskrunners import Future as PF\n"
    )
    assert port("from prefect import task as task\n") == "from taskrunners import task as task\n"


def test_a_renamed_name_is_renamed_where_it_is_used() -> None:
    source = """\
        from prefect.futures import PrefectFuture, PrefectFutureList

        def first(futures: PrefectFutureList) -> PrefectFuture:
            assert isinstance(futures[0], PrefectFuture)
            return futures[0]
        """
    assert port(source) == textwrap.dedent("""\
        from taskrunners import Future, FutureList

        def first(futures: FutureList) -> Future:
            assert isinstance(futures[0], Future)
            return futures[0]
        """)


def test_a_renamed_name_that_would_clash_is_imported_under_its_prefect_name() -> None:
    source = """\
        from concurrent.futures import Future
        from prefect.futures import PrefectFuture

        def pick(a: Future, b: PrefectFuture) -> None: ...
        """
    assert port(source) == textwrap.dedent("""\
        from concurrent.futures import Future
        from taskrunners import Future as PrefectFuture

        def pick(a: Future, b: PrefectFuture) -> None: ...
        """)


def test_a_local_name_is_not_a_prefect_name() -> None:
    source = """\
        from prefect.futures import PrefectFuture

        def keep(PrefectFuture):  # a parameter, not the import
            return PrefectFuture

        x: PrefectFuture
        """
    assert port(source) == textwrap.dedent("""\
        from taskrunners import Future

        def keep(PrefectFuture):  # a parameter, not the import
            return PrefectFuture

        x: Future
        """)


def test_names_from_one_module_for_several_of_ours_split_the_statement() -> None:
    source = """\
        from prefect.task_runners import ThreadPoolTaskRunner, ProcessPoolTaskRunner  # runners
        from prefect import flow, State, get_client
        """
    assert port(source) == textwrap.dedent("""\
        from taskrunners_threads import ThreadPoolTaskRunner  # runners
        from taskrunners_processes import ProcessPoolTaskRunner
        from taskrunners import flow, State
        from prefect import get_client
        """)


def test_a_parenthesized_import_keeps_one_name_a_line_and_its_comments() -> None:
    source = """\
        # the runners
        from prefect.task_runners import (
            ThreadPoolTaskRunner,  # for I/O
            ProcessPoolTaskRunner  # for the CPU
        )
        from prefect import (flow,
                             task)
        """
    assert port(source) == textwrap.dedent("""\
        # the runners
        from taskrunners_threads import (
            ThreadPoolTaskRunner,  # for I/O
        )
        from taskrunners_processes import (
            ProcessPoolTaskRunner,  # for the CPU
        )
        from taskrunners import (flow,
                             task)
        """)


# -- `import prefect` and attribute use -----------------------------------------------


def test_import_prefect_with_attribute_use() -> None:
    source = """\
        import os
        import prefect


        @prefect.task(retries=1)
        def one() -> int:
            return 1


        @prefect.flow(task_runner=prefect.task_runners.ThreadPoolTaskRunner(max_workers=2))
        def main() -> None:
            futures = one.map(range(3))
            prefect.futures.wait(futures)  # all of them
            prefect.flow.with_options(name="x")
        """
    assert port(source) == textwrap.dedent("""\
        import os
        import taskrunners
        import taskrunners_threads


        @taskrunners.task(retries=1)
        def one() -> int:
            return 1


        @taskrunners.flow(task_runner=taskrunners_threads.ThreadPoolTaskRunner(max_workers=2))
        def main() -> None:
            futures = one.map(range(3))
            taskrunners.wait(futures)  # all of them
            taskrunners.flow.with_options(name="x")
        """)


def test_an_aliased_module_keeps_its_alias() -> None:
    source = """\
        import prefect_dask as pd
        import prefect_ray as pr, prefect as pf

        runner = pd.DaskTaskRunner(cluster_kwargs={"n_workers": 2})
        ray_runner = pr.RayTaskRunner()
        threads = pf.task_runners.ThreadPoolTaskRunner()
        states = pf.states.Completed()
        """
    assert port(source) == textwrap.dedent("""\
        import taskrunners_dask as pd
        import taskrunners_ray as pr
        import taskrunners_threads
        import taskrunners.states

        runner = pd.DaskTaskRunner(cluster_kwargs={"n_workers": 2})
        ray_runner = pr.RayTaskRunner()
        threads = taskrunners_threads.ThreadPoolTaskRunner()
        states = taskrunners.states.Completed()
        """)


def test_a_dotted_import_and_a_from_imported_module() -> None:
    source = """\
        import prefect.futures
        import prefect.states
        from prefect import task_runners
        from prefect_ray import context as ray_context

        prefect.futures.wait([])
        prefect.states.Failed(message="no")
        task_runners.ThreadPoolTaskRunner()
        with ray_context.remote_options(num_cpus=1):
            pass
        """
    assert port(source) == textwrap.dedent("""\
        import taskrunners
        import taskrunners.states
        import taskrunners_threads
        import taskrunners_ray

        taskrunners.wait([])
        taskrunners.states.Failed(message="no")
        taskrunners_threads.ThreadPoolTaskRunner()
        with taskrunners_ray.remote_options(num_cpus=1):
            pass
        """)


def test_an_unused_module_import_becomes_ours() -> None:
    assert (
        port("import prefect\nimport prefect_dask as pd\n")
        == "import taskrunners\nimport taskrunners_dask as pd\n"
    )


def test_imports_inside_a_function_are_ported_there() -> None:
    source = """\
        def build():
            from prefect_dask import DaskTaskRunner  # lazily
            return DaskTaskRunner()
        """
    assert port(source) == textwrap.dedent("""\
        def build():
            from taskrunners_dask import DaskTaskRunner  # lazily
            return DaskTaskRunner()
        """)


def test_each_function_gets_the_imports_its_own_uses_need() -> None:
    source = """\
        def threads():
            import prefect
            return prefect.task_runners.ThreadPoolTaskRunner()

        def both():
            import prefect  # again, in another scope
            return prefect.futures.wait, prefect.task_runners.ThreadPoolTaskRunner
        """
    assert port(source) == textwrap.dedent("""\
        def threads():
            import taskrunners_threads
            return taskrunners_threads.ThreadPoolTaskRunner()

        def both():
            import taskrunners  # again, in another scope
            import taskrunners_threads
            return taskrunners.wait, taskrunners_threads.ThreadPoolTaskRunner
        """)


# -- attributes of futures --------------------------------------------------------------


def test_future_attributes_get_our_names() -> None:
    source = """\
        from prefect import flow

        def handles(future):
            return future.wrapped_future, future.task_run_id, future.wrapped_future.key
        """
    assert port(source) == textwrap.dedent("""\
        from taskrunners import flow

        def handles(future):
            return future.native, future.task_run.id, future.native.key
        """)


def test_a_module_without_prefect_is_left_byte_for_byte() -> None:
    source = b"import os\r\n\r\ndef f(x):\r\n    return x.wrapped_future  # not a Prefect module\r\n"
    assert migrate_source(source) == Migration(source, source, ())


def test_line_endings_and_odd_layout_are_kept() -> None:
    source = (
        b"from prefect import flow,task   # crlf\r\n\r\n@task( retries = 2 )\r\ndef f( ) :\r\n    pass\r\n"
    )
    assert migrate_source(source).code == source.replace(b"from prefect ", b"from taskrunners ")


# -- idempotence -----------------------------------------------------------------------

SAMPLES = {
    "from": "from prefect import flow, task\nfrom prefect.futures import PrefectFuture\nx: PrefectFuture\n",
    "attribute": "import prefect\nprefect.task_runners.ThreadPoolTaskRunner()\nprefect.serve()\n",
    "alias": "import prefect_dask as pd\nfrom prefect_ray.context import remote_options as ro\npd.get_dask_client\n",
    "split": "from prefect.task_runners import (\n    ThreadPoolTaskRunner,\n    ProcessPoolTaskRunner,\n)\n",
    "future": "from prefect import task\ndef f(fut):\n    return fut.wrapped_future, fut.task_run_id\n",
}


@pytest.mark.parametrize("source", SAMPLES.values(), ids=SAMPLES.keys())
def test_a_second_run_changes_nothing(source: str) -> None:
    once = migrate_source(source)
    assert once.changed
    twice = migrate_source(once.code)
    assert not twice.changed and twice.code == once.code


# -- what has no counterpart -----------------------------------------------------------


def test_what_has_no_counterpart_is_noted_with_its_line_and_section() -> None:
    source = """\
        import prefect
        from prefect import flow, serve, task
        from prefect.blocks.system import Secret
        from prefect.cache_policies import INPUTS
        from prefect_dask import get_async_dask_client
        from prefect import something_new


        @task(cache_key_fn=lambda *_: "k", persist_result=True, retries=1)
        def one(): ...


        @flow(validate_parameters=False)
        def main():
            one.submit(return_state=True)
            one.map([1], deferred=True)
            one.delay()
            prefect.deployments.run_deployment("x")
            one.with_options(refresh_cache=True)


        main.serve(name="nightly")
        main.deploy(name="x", work_pool_name="pool")
        flow.from_source("https://example.com/repo", "main.py:main")
        """
    assert notes(source) == [
        (2, "prefect.serve", _table.DEPLOYMENTS),
        (3, "prefect.blocks.system.Secret", _table.BLOCKS),
        (4, "prefect.cache_policies.INPUTS", _table.RESULTS),
        (5, "prefect_dask.get_async_dask_client", _table.OTHER),
        (6, "prefect.something_new", _table.OTHER),
        (9, "task(cache_key_fn=...)", _table.RESULTS),
        (9, "task(persist_result=...)", _table.RESULTS),
        (13, "flow(validate_parameters=...)", _table.OPTIONS),
        (15, "one.submit(return_state=...)", _table.OPTIONS),
        (16, "one.map(deferred=...)", _table.BACKGROUND),
        (17, "one.delay()", _table.BACKGROUND),
        (18, "prefect.deployments.run_deployment", _table.DEPLOYMENTS),
        (19, "one.with_options(refresh_cache=...)", _table.RESULTS),
        (22, "main.serve()", _table.DEPLOYMENTS),
        (23, "main.deploy()", _table.DEPLOYMENTS),
        (24, "prefect.flow.from_source", _table.DEPLOYMENTS),
    ]


def test_what_has_no_counterpart_keeps_its_prefect_import() -> None:
    source = """\
        import prefect
        from prefect import flow, serve

        prefect.flow
        prefect.variables.get("x")
        """
    assert port(source) == textwrap.dedent("""\
        import prefect
        import taskrunners
        from taskrunners import flow
        from prefect import serve

        taskrunners.flow
        prefect.variables.get("x")
        """)


def test_an_option_we_take_is_not_noted() -> None:
    source = """\
        from prefect import flow, task
        from prefect.task_runners import ThreadPoolTaskRunner

        @task(name="t", retries=2, retry_delay_seconds=[1, 2], timeout_seconds=5, tags=["a"])
        def t(): ...

        @flow(name="f", task_runner=ThreadPoolTaskRunner(max_workers=2))
        def f(): ...
        """
    assert notes(source) == []


def test_a_runner_option_we_lack_is_noted() -> None:
    source = "from prefect_dask import DaskTaskRunner\nDaskTaskRunner(performance_report_path='r.html')\n"
    assert notes(source) == [(2, "DaskTaskRunner(performance_report_path=...)", _table.OPTIONS)]


def test_notes_stay_after_the_port() -> None:
    source = "from prefect import task\n@task(cache_key_fn=None)\ndef f(): ...\nf.delay()\n"
    ported = migrate_source(source)
    again = migrate_source(ported.code)
    assert [(n.line, n.section) for n in again.notes] == [(n.line, n.section) for n in ported.notes]
    assert again.notes[0].link == "docs/migrate-command.md#results-and-caching"


def test_a_local_task_variable_is_not_a_prefect_task() -> None:
    source = """\
        from prefect import flow

        def run(task):
            task.delay()
            task.submit(return_state=True)
        """
    assert notes(source) == []


# -- the command line ------------------------------------------------------------------

PROGRAM = "from prefect import flow  # the decorator\n\n@flow\ndef main(): ...\n"
PORTED = "from taskrunners import flow  # the decorator\n\n@flow\ndef main(): ...\n"


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.py"))}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "flows.py").write_text(PROGRAM)
    (tmp_path / "pkg" / "sub" / "more.py").write_text("import prefect\nprefect.serve()\n")
    (tmp_path / "pkg" / "plain.py").write_text("import os\n")
    (tmp_path / "pkg" / ".venv").mkdir()
    (tmp_path / "pkg" / ".venv" / "lib.py").write_text(PROGRAM)  # never searched
    (tmp_path / "pkg" / "notes.txt").write_text(PROGRAM)  # not Python
    return tmp_path


def test_default_rewrites_in_place_recursively(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "pkg"]) == 0
    assert tree(project / "pkg") == {
        ".venv/lib.py": PROGRAM,
        "flows.py": PORTED,
        "plain.py": "import os\n",
        "sub/more.py": "import prefect\nprefect.serve()\n",
    }
    err = capsys.readouterr().err
    assert f"{Path('pkg/sub/more.py')}:2: prefect.serve has no counterpart in taskrunners; see " in err
    assert "docs/migrate-command.md#deployments-and-serving" in err
    assert err.endswith("rewrote 1 file(s), 2 unchanged; 1 note(s)\n")


def test_diff_prints_a_unified_diff_and_writes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(project)
    assert main(["migrate", "--diff", "pkg/flows.py"]) == 0
    assert capsys.readouterr().out == (
        "--- a/pkg/flows.py\n+++ b/pkg/flows.py\n@@ -1,4 +1,4 @@\n"
        "-from prefect import flow  # the decorator\n+from taskrunners import flow  # the decorator\n"
        " \n @flow\n def main(): ...\n"
    )
    assert tree(project) == before


def test_diff_marks_a_last_line_without_newline(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("last.py").write_text("import os\nfrom prefect import flow")
    assert main(["migrate", "--diff", "last.py"]) == 0
    assert capsys.readouterr().out.endswith(
        "-from prefect import flow\n\\ No newline at end of file\n"
        "+from taskrunners import flow\n\\ No newline at end of file\n"
    )


def test_check_exits_1_when_a_file_would_change_and_writes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(project)
    assert main(["migrate", "--check", "pkg"]) == 1
    assert tree(project) == before
    assert f"would rewrite {Path('pkg/flows.py')}" in capsys.readouterr().err
    assert main(["migrate", "pkg"]) == 0
    assert main(["migrate", "--check", "pkg"]) == 0  # notes alone do not fail the check


def test_diff_and_check_exclude_each_other(project: Path) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["migrate", "--diff", "--check", "pkg"])
    assert exit.value.code == 2


def test_a_missing_path_or_invalid_python_exits_2_and_the_rest_is_done(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("broken.py").write_text("def (:\n")
    assert main(["migrate", "nowhere", "broken.py", "pkg/flows.py"]) == 2
    err = capsys.readouterr().err
    assert "nowhere: no such file or directory" in err
    assert "broken.py:1: cannot parse" in err
    assert Path("pkg/flows.py").read_text() == PORTED


def test_python_dash_m_runs_the_command(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskrunners", "migrate", "--check", "pkg/flows.py"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "would rewrite" in done.stderr


# -- without libcst --------------------------------------------------------------------

HIDE_LIBCST = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "libcst" or name.startswith("libcst."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
"""


def test_the_core_imports_without_libcst_and_the_command_says_how_to_install_it(tmp_path: Path) -> None:
    script = HIDE_LIBCST + textwrap.dedent("""
        import taskrunners, taskrunners._cli
        assert "libcst" not in sys.modules
        status = taskrunners._cli.main(["migrate", "anything.py"])
        assert "libcst" not in sys.modules
        sys.exit(status)
        """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert 'taskrunners migrate needs libcst: pip install "taskrunners[migrate]"' in done.stderr
