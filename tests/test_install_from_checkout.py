"""The README's command that installs the umbrella with extras from a checkout works:
run exactly as written, into a fresh virtual environment, and a Dask flow runs there.

It installs from the package index what the packages depend on (Dask and its
dependencies), so it takes a minute or more; it runs in .ci/run like every test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FLOW = textwrap.dedent(
    """
    from taskrunners import flow, task
    from taskrunners_dask import DaskTaskRunner

    @task
    def square(x: int) -> int:
        return x * x

    @flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 1, "processes": False}))
    def total() -> int:
        return sum(square.map(range(4)).result())

    if __name__ == "__main__":
        print("TOTAL", total())
    """
)


def _readme_command() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- install-from-checkout -->\s*```sh\n(.+?)\n```", readme, re.S)
    assert match is not None, "README.md lost its install-from-checkout command"
    return match.group(1).strip()


@pytest.mark.timeout(900)
def test_readme_install_command_gives_a_working_dask_flow(tmp_path: Path) -> None:
    command = _readme_command()
    assert command.startswith("python3 -m venv .venv-dask && ")
    # Exactly the README's command, from a copy of nothing but the checkout's root: the
    # venv it makes lands in tmp_path (the command's relative paths are the checkout's).
    venv = tmp_path / "venv"
    command = command.replace(".venv-dask", str(venv))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run(
        ["bash", "-c", command.replace("python3 -m venv", f"{sys.executable} -m venv", 1)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    script = tmp_path / "dask_flow.py"
    script.write_text(FLOW, encoding="utf-8")
    ran = subprocess.run(
        [str(venv / "bin" / "python"), str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "TOTAL 14" in ran.stdout
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.lower()
    for name in ("taskrunners==", "taskrunners-core==", "taskrunners-threads==", "taskrunners-dask=="):
        assert name in listed, f"{name} not installed by the README's command"
