"""Run every benchmark in this folder, then write docs/benchmarks.md from their figures.

    python benchmarks/run_all.py                  # full runs; writes docs/benchmarks.md
    python benchmarks/run_all.py --quick          # smoke runs (options go to every benchmark)
    python benchmarks/run_all.py --no-prefect     # ours and the raw engines only
    python benchmarks/run_all.py --no-report      # print only (with --json-dir: keep the JSON)
    python benchmarks/run_all.py --list           # the benchmarks found, without running them

Each `bench_*.py` runs in its own interpreter, so that one's imports and threads do not
colour the next one's figures, and writes `DIR/bench_X.json` (`--json-dir DIR`, default
`benchmarks/results`). `bench_prefect.py` runs last, in the interpreter of the `prefect`
hatch environment: `--prefect-python PATH` names it, else `hatch env find prefect` finds
it (creating the environment first). Then `report.py` turns the folder into
`docs/benchmarks.md` and its chart. Exits with the first non-zero status of a benchmark.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PREFECT = "bench_prefect.py"


def benchmarks() -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    return [p for p in found if p.name != PREFECT] + [p for p in found if p.name == PREFECT]


def prefect_python(given: str | None) -> str | None:
    """The interpreter of the `prefect` hatch environment, or None (with the reason printed)."""
    if given:
        return given
    hatch = shutil.which("hatch")
    if hatch is None:
        print("hatch is not on PATH: Prefect is not measured (give --prefect-python PATH)", flush=True)
        return None
    subprocess.run([hatch, "env", "create", "prefect"], cwd=HERE.parent, check=True)
    found = subprocess.run(
        [hatch, "env", "find", "prefect"], cwd=HERE.parent, capture_output=True, text=True, check=True
    ).stdout.strip()
    for candidate in (Path(found) / "bin" / "python", Path(found) / "Scripts" / "python.exe"):
        if candidate.exists():
            return str(candidate)
    print(f"no interpreter under {found}: Prefect is not measured", flush=True)
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the benchmarks and stop")
    parser.add_argument("--json-dir", type=Path, default=HERE / "results", help="where the JSON reports go")
    parser.add_argument("--prefect-python", help="the interpreter of the `prefect` hatch environment")
    parser.add_argument("--no-prefect", action="store_true", help="do not run bench_prefect.py")
    parser.add_argument("--no-report", action="store_true", help="do not write docs/benchmarks.md")
    args, passed_on = parser.parse_known_args(argv)
    if args.list:
        for path in benchmarks():
            print(path.name)
        return 0
    args.json_dir.mkdir(parents=True, exist_ok=True)
    for stale in args.json_dir.glob("bench_*.json"):
        stale.unlink()  # a report must not mix this run's figures with an older run's
    status = 0
    for path in benchmarks():
        python = sys.executable
        if path.name == PREFECT:
            if args.no_prefect:
                continue
            python = prefect_python(args.prefect_python)
            if python is None:
                continue
        command = [python, str(path), *passed_on, "--json", str(args.json_dir / f"{path.stem}.json")]
        print(f"== {path.name}: {' '.join(command[1:])}", flush=True)
        code = subprocess.call(command, cwd=HERE.parent, env=os.environ.copy())
        print(flush=True)
        if code and not status:
            status = code
    if not args.no_report:
        code = subprocess.call([sys.executable, str(HERE / "report.py"), str(args.json_dir)], cwd=HERE.parent)
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
