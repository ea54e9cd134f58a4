"""Run `pyright --verifytypes taskrunners` on a wheel install of the core; fail under a threshold.

Usage: python .ci/verifytypes.py [--threshold 95]

Builds a wheel of packages/core, installs it (not editable: pyright judges what users
get) into a fresh virtual environment in a temporary folder, and runs the pyright of the
Python running this script against it. Prints the score and exits 1 below the threshold.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=95.0, help="lowest passing score, in percent")
    args = parser.parse_args()
    if importlib.util.find_spec("pyright") is None:
        print("verifytypes: pyright is not installed here; pip install -e '.[lint]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="taskrunners-verifytypes-") as tmp:
        venv = Path(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        wheels = Path(tmp, "wheels")
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "-w",
                str(wheels),
                str(ROOT / "packages" / "core"),
            ],
            check=True,
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *map(str, wheels.glob("*.whl"))],
            check=True,
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pyright",
                "--pythonpath",
                str(python),
                "--verifytypes",
                "taskrunners",
                "--ignoreexternal",
                "--outputjson",
            ],
            capture_output=True,
            text=True,
            cwd=tmp,
            env={
                **os.environ,
                "VIRTUAL_ENV": str(venv),
                "PATH": os.pathsep.join([str(venv / "bin"), os.environ.get("PATH", "")]),
            },
            check=False,
        )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(done.stdout + done.stderr, file=sys.stderr)
        return 2
    completeness = report["typeCompleteness"]
    score = 100.0 * float(completeness["completenessScore"])
    for diagnostic in report.get("generalDiagnostics", []):
        if diagnostic.get("severity") == "error":
            print(f"  {diagnostic.get('file', '')}: {diagnostic.get('message', '')}")
    print(f"pyright --verifytypes taskrunners: {score:.1f}% (threshold {args.threshold:.0f}%)")
    return 0 if score >= args.threshold else 1


if __name__ == "__main__":
    sys.exit(main())
