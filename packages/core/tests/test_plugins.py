"""Runner plugins: discovery through entry points, loading one at a time, errors, the CLI.

Fake plugins are "installed" without pip: a `<name>-<version>.dist-info` directory
(METADATA and entry_points.txt) and a plugin module, written into a temporary directory
that is put at the front of `sys.path` (or of `PYTHONPATH` for a subprocess).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import taskrunners.plugins as plugins
from taskrunners import PluginLoadError, RunnerLookupError, TaskRunner, flow, task
from taskrunners.plugins import RunnerEntry, available_runners, load_runner
from taskrunners_threads import ThreadPoolTaskRunner

GOOD_PLUGIN = """
from taskrunners.plugins import hookimpl
from taskrunners_threads import ThreadPoolTaskRunner


class FakeRunner(ThreadPoolTaskRunner):
    pass


@hookimpl
def taskrunners_runner_class():
    return FakeRunner
"""

BROKEN_PLUGINS = {
    "import-raises": (
        'raise RuntimeError("kaboom at import")\n',
        "failed to load: RuntimeError: kaboom at import",
    ),
    "no-hook": ("VALUE = 1\n", "does not implement the hook taskrunners_runner_class"),
    "misspelt-hook": (
        "from taskrunners.plugins import hookimpl\n\n"
        "@hookimpl\ndef taskrunners_runner_clas():\n    return object\n",
        "taskrunners_runner_clas",
    ),
    "not-a-runner": (
        "from taskrunners.plugins import hookimpl\n\n"
        "@hookimpl\ndef taskrunners_runner_class():\n    return dict\n",
        "not a TaskRunner subclass",
    ),
    "hook-raises": (
        "from taskrunners.plugins import hookimpl\n\n"
        "@hookimpl\ndef taskrunners_runner_class():\n    raise ValueError('hook broke')\n",
        "ValueError: hook broke",
    ),
    "import-exits": ("import sys\nsys.exit(3)\n", "failed to load: SystemExit: 3"),
    "import-raises-base-exception": (
        'raise BaseException("not even an Exception")\n',
        "failed to load: BaseException: not even an Exception",
    ),
    "hook-exits": (
        "import sys\nfrom taskrunners.plugins import hookimpl\n\n"
        "@hookimpl\ndef taskrunners_runner_class():\n    sys.exit('hook quit')\n",
        "SystemExit: hook quit",
    ),
}


class FakeInstall:
    """Writes fake distributions with runner entry points into one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add(self, dist: str, version: str, runner: str, source: str) -> str:
        """Install distribution `dist` declaring runner `runner`; return its module's name."""
        module = f"fake_runner_plugin_{uuid.uuid4().hex[:12]}"
        self.modules.append(module)
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[taskrunners.runners]\n{runner} = {module}\n")
        return module


@pytest.fixture(autouse=True)
def fresh_plugin_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget loaded runners and the plugin manager for the test, and restore them after."""
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.setattr(plugins, "_manager", None)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeInstall]:
    install = FakeInstall(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield install
    for module in install.modules:
        sys.modules.pop(module, None)


# -- listing -------------------------------------------------------------------------------


def test_available_runners_lists_the_thread_runner() -> None:
    threads = [entry for entry in available_runners() if entry.name == "threads"]
    assert threads == [
        RunnerEntry(
            name="threads",
            value="taskrunners_threads._plugin",
            distribution="taskrunners-threads",
            version=threads[0].version,
        )
    ]


def test_available_runners_lists_a_plugin_without_importing_it(fake: FakeInstall) -> None:
    module = fake.add("fake-listed", "1.2.3", "listed", GOOD_PLUGIN)
    entries = {entry.name: entry for entry in available_runners()}
    assert entries["listed"] == RunnerEntry("listed", module, "fake-listed", "1.2.3")
    assert "threads" in entries
    assert module not in sys.modules


def test_available_runners_are_sorted_by_name(fake: FakeInstall) -> None:
    fake.add("fake-zed", "1.0", "zzz-last", GOOD_PLUGIN)
    fake.add("fake-aaa", "1.0", "aaa-first", GOOD_PLUGIN)
    names = [entry.name for entry in available_runners()]
    assert names == sorted(names)
    assert names[0] == "aaa-first" and names[-1] == "zzz-last"


# -- loading -------------------------------------------------------------------------------


def test_load_runner_returns_the_plugins_class(fake: FakeInstall) -> None:
    module = fake.add("fake-good", "0.3", "goodfake", GOOD_PLUGIN)
    cls = load_runner("goodfake")
    assert cls is sys.modules[module].FakeRunner
    assert issubclass(cls, TaskRunner)
    assert load_runner("goodfake") is cls  # loaded once, then remembered


def test_a_flow_runs_on_a_plugin_runner_named_by_its_entry_point(fake: FakeInstall) -> None:
    module = fake.add("fake-flow", "1.0", "flowfake", GOOD_PLUGIN)

    @task
    def one() -> int:
        return 1

    @flow(task_runner="flowfake")
    def body() -> tuple:
        future = one.submit()
        return type(future.owner), future.result()

    owner_type, value = body()
    assert owner_type is sys.modules[module].FakeRunner
    assert value == 1


def test_load_runner_threads() -> None:
    assert load_runner("threads") is ThreadPoolTaskRunner


def test_a_plugin_whose_import_raises_is_reported_and_the_others_still_load(fake: FakeInstall) -> None:
    source, _ = BROKEN_PLUGINS["import-raises"]
    fake.add("fake-broken", "2.0.1", "brokenfake", source)
    good = fake.add("fake-fine", "1.0", "finefake", GOOD_PLUGIN)

    with pytest.raises(PluginLoadError) as caught:
        load_runner("brokenfake")
    error = caught.value
    message = str(error)
    assert "fake-broken 2.0.1" in message
    assert "RuntimeError: kaboom at import" in message
    assert error.name == "brokenfake"
    assert error.distribution == "fake-broken 2.0.1"
    assert isinstance(error.__cause__, RuntimeError)
    assert isinstance(error, ImportError)

    assert load_runner("threads") is ThreadPoolTaskRunner
    assert load_runner("finefake") is sys.modules[good].FakeRunner


@pytest.mark.parametrize("case", sorted(BROKEN_PLUGINS))
def test_a_broken_plugin_gives_plugin_load_error(fake: FakeInstall, case: str) -> None:
    source, expected = BROKEN_PLUGINS[case]
    fake.add("fake-case", "4.5", "casefake", source)
    with pytest.raises(PluginLoadError) as caught:
        load_runner("casefake")
    message = str(caught.value)
    assert "'casefake'" in message
    assert "fake-case 4.5" in message
    assert expected in message
    assert load_runner("threads") is ThreadPoolTaskRunner  # the others are unaffected


@pytest.mark.parametrize(
    "case",
    [
        "import-raises",
        "misspelt-hook",
        "no-hook",
        "not-a-runner",
        "hook-raises",
        "import-exits",
        "hook-exits",
    ],
)
def test_loading_a_broken_plugin_again_reports_the_same_problem(fake: FakeInstall, case: str) -> None:
    source, expected = BROKEN_PLUGINS[case]
    fake.add("fake-again", "1.0", "againfake", source)
    messages = []
    for _ in range(2):
        with pytest.raises(PluginLoadError) as caught:
            load_runner("againfake")
        messages.append(str(caught.value))
    assert expected in messages[1]
    assert messages[0] == messages[1]


def test_a_plugin_that_exits_at_import_gives_plugin_load_error_to_a_flow_naming_it(fake: FakeInstall) -> None:
    fake.add("fake-exits", "0.3", "exitsfake", BROKEN_PLUGINS["import-exits"][0])

    @task
    def one() -> int:
        return 1

    with pytest.raises(PluginLoadError) as caught:
        flow(task_runner="exitsfake")(lambda: one.submit().result())()
    assert caught.value.name == "exitsfake" and caught.value.distribution == "fake-exits 0.3"
    assert isinstance(caught.value.__cause__, SystemExit)
    assert flow(lambda: one.submit().result())() == 1  # flows without it are unaffected


def test_a_keyboard_interrupt_during_a_plugin_import_is_the_users_and_goes_through(fake: FakeInstall) -> None:
    fake.add("fake-ctrl-c", "1.0", "ctrlcfake", "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_runner("ctrlcfake")
    assert load_runner("threads") is ThreadPoolTaskRunner


def _alias(fake: FakeInstall, dist: str, runner: str, module: str) -> None:
    """Install `dist` declaring `runner` as an alias: an entry point naming `module`."""
    info = fake.root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[taskrunners.runners]\n{runner} = {module}\n")


@pytest.mark.parametrize("alias_first", [True, False])
def test_an_alias_of_a_registered_plugin_answers_with_its_class(fake: FakeInstall, alias_first: bool) -> None:
    module = fake.add("fake-original", "1.0", "originalfake", GOOD_PLUGIN)
    _alias(fake, "fake-alias", "aliasfake", module)
    order = ["aliasfake", "originalfake"] if alias_first else ["originalfake", "aliasfake"]
    classes = [load_runner(name) for name in order]
    assert classes[0] is classes[1] is sys.modules[module].FakeRunner


def test_an_alias_of_the_thread_plugin_loaded_first_breaks_no_flow(fake: FakeInstall) -> None:
    _alias(fake, "fake-threads-alias", "threadsalias", "taskrunners_threads._plugin")
    assert load_runner("threadsalias") is ThreadPoolTaskRunner
    assert load_runner("threads") is ThreadPoolTaskRunner

    @task
    def one() -> int:
        return 1

    assert flow(lambda: one.submit().result())() == 1  # the default runner, "threads"


def test_two_distributions_claiming_one_name_give_an_error_naming_both(fake: FakeInstall) -> None:
    fake.add("fake-first", "1.0", "contested", GOOD_PLUGIN)
    fake.add("fake-second", "2.0", "contested", GOOD_PLUGIN)
    with pytest.raises(PluginLoadError) as caught:
        load_runner("contested")
    message = str(caught.value)
    assert "fake-first 1.0" in message
    assert "fake-second 2.0" in message
    assert "'contested'" in message
    assert caught.value.name == "contested"


def test_an_unknown_known_runner_name_gives_the_pip_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # A runner this project maintains but that is not installed here (all real ones may be).
    monkeypatch.setitem(plugins._KNOWN, "quantum", "taskrunners[quantum]")
    with pytest.raises(RunnerLookupError) as caught:
        load_runner("quantum")
    message = str(caught.value)
    assert 'pip install "taskrunners[quantum]"' in message
    assert "installed: " in message and "threads" in message


def test_an_unknown_runner_name_gives_a_generic_hint(fake: FakeInstall) -> None:
    fake.add("fake-other", "1.0", "otherfake", GOOD_PLUGIN)
    with pytest.raises(RunnerLookupError) as caught:
        load_runner("no-such-pool")
    message = str(caught.value)
    assert "'no-such-pool'" in message
    assert "pip install" not in message
    assert "taskrunners.runners" in message
    assert "spelling" in message
    assert "otherfake" in message and "threads" in message  # what is installed


# -- the command line ---------------------------------------------------------------------------


def _run(args: list[str], pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "TASKRUNNERS_RUNNER")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)


def _console_script() -> str:
    script = Path(sys.executable).parent / ("taskrunners.exe" if os.name == "nt" else "taskrunners")
    if not script.exists():
        pytest.skip(f"the taskrunners console script is not installed next to {sys.executable}")
    return str(script)


COMMANDS: dict[str, Callable[[], list[str]]] = {
    "console-script": lambda: [_console_script()],
    "python-m": lambda: [sys.executable, "-m", "taskrunners"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_runners_command_lists_threads(command: str) -> None:
    done = _run([*COMMANDS[command](), "runners"])
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["NAME", "DISTRIBUTION", "OBJECT"]
    threads = [row.split() for row in rows if row.split()[0] == "threads"]
    assert threads and threads[0][1] == "taskrunners-threads"
    assert threads[0][-1] == "taskrunners_threads._plugin"


def test_the_runners_command_lists_a_fake_plugin_without_loading_it(tmp_path: Path) -> None:
    install = FakeInstall(tmp_path)
    install.add("fake-cli", "3.1", "clifake", BROKEN_PLUGINS["import-raises"][0])
    done = _run([sys.executable, "-m", "taskrunners", "runners"], pythonpath=tmp_path)
    assert done.returncode == 0, done.stderr
    assert any(row.split()[:3] == ["clifake", "fake-cli", "3.1"] for row in done.stdout.splitlines())


def test_runners_load_reports_ok_for_working_plugins() -> None:
    done = _run([sys.executable, "-m", "taskrunners", "runners", "--load"])
    # The exit status says whether any installed plugin failed, and only that.
    assert (done.returncode == 0) == ("error:" not in done.stdout), done.stdout + done.stderr
    assert "STATUS" in done.stdout.splitlines()[0]
    row = next(line for line in done.stdout.splitlines() if line.startswith("threads"))
    assert "ok: taskrunners_threads._runner.ThreadPoolTaskRunner" in row


def test_runners_load_exits_non_zero_and_reports_a_broken_plugin(tmp_path: Path) -> None:
    install = FakeInstall(tmp_path)
    install.add("fake-cli-broken", "0.9", "clibroken", BROKEN_PLUGINS["import-raises"][0])
    done = _run([sys.executable, "-m", "taskrunners", "runners", "--load"], pythonpath=tmp_path)
    assert done.returncode != 0
    lines = done.stdout.splitlines()
    broken = next(line for line in lines if line.startswith("clibroken"))
    assert "error:" in broken and "kaboom at import" in broken and "fake-cli-broken 0.9" in broken
    threads = next(line for line in lines if line.startswith("threads"))
    assert "ok:" in threads  # one broken plugin does not hide the others
    failed = sum(1 for line in lines[1:] if "error:" in line)
    assert f"{failed} runner plugin(s) failed to load" in done.stderr


def test_runners_load_lists_the_good_rows_beside_a_plugin_that_exits_at_import(tmp_path: Path) -> None:
    install = FakeInstall(tmp_path)
    install.add("fake-cli-exits", "0.2", "cliexits", BROKEN_PLUGINS["import-exits"][0])
    install.add("fake-cli-fine", "1.0", "clifine", GOOD_PLUGIN)
    done = _run([sys.executable, "-m", "taskrunners", "runners", "--load"], pythonpath=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    broken = next(line for line in lines if line.startswith("cliexits"))
    assert "error:" in broken and "SystemExit: 3" in broken and "fake-cli-exits 0.2" in broken
    assert "ok:" in next(line for line in lines if line.startswith("clifine"))
    assert "ok:" in next(line for line in lines if line.startswith("threads"))


def test_the_version_command() -> None:
    import taskrunners

    done = _run([sys.executable, "-m", "taskrunners", "version"])
    assert done.returncode == 0
    assert done.stdout.strip() == taskrunners.__version__


def test_the_command_line_needs_a_command() -> None:
    done = _run([sys.executable, "-m", "taskrunners"])
    assert done.returncode == 2
    assert "usage" in done.stderr


def test_the_install_hint_names_the_checkout_folder_when_installed_from_one() -> None:
    # This test session's core is installed from the checkout (editable).
    hint = plugins._install_hint("taskrunners[dask]")
    assert hint.startswith('pip install "taskrunners[dask]" from a package index')
    folder = plugins._checkout_member("runner-dask")
    assert folder is not None and (folder / "pyproject.toml").is_file()
    assert f'from this checkout: pip install "{folder}"' in hint
    assert plugins._install_hint("taskrunners[quantum]") == 'pip install "taskrunners[quantum]"'
