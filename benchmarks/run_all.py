"""Run every benchmark in this folder (each `bench_*.py`), one after the other.

    python benchmarks/run_all.py                  # full runs
    python benchmarks/run_all.py --quick          # smoke runs (options go to every benchmark)
    python benchmarks/run_all.py --json-dir benchmarks/results
    python benchmarks/run_all.py --list           # the benchmarks found, without running them

Each benchmark runs in its own interpreter, so one's imports and threads do not
colour the next one's figures. With `--json-dir DIR`, benchmark `bench_X.py` writes
`DIR/bench_X.json`. Exits with the first non-zero status of a benchmark, else 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> list[Path]:
    return sorted(HERE.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for path in benchmarks():
            print(path.name)
        return 0
    json_dir = None
    if "--json-dir" in argv:
        at = argv.index("--json-dir")
        json_dir = Path(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
        json_dir.mkdir(parents=True, exist_ok=True)
    status = 0
    for path in benchmarks():
        command = [sys.executable, str(path), *argv]
        if json_dir is not None:
            command += ["--json", str(json_dir / f"{path.stem}.json")]
        print(f"== {path.name}: {' '.join(command[1:])}", flush=True)
        code = subprocess.call(command, cwd=HERE.parent, env=os.environ.copy())
        print(flush=True)
        if code and not status:
            status = code
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
