"""Write docs/benchmarks.md and its chart from the benchmarks' JSON reports.

    python benchmarks/report.py benchmarks/results                 # -> docs/benchmarks.md, docs/img/benchmarks.png
    python benchmarks/report.py benchmarks/results --page out.md --chart out.png

Reads every `bench_*.json` in the folder that `run_all.py --json-dir` filled: the `"figures"`
of `bench_threads`, `bench_processes`, `bench_dask`, `bench_ray`, `bench_footprint` and
`bench_prefect` (see `_common.figure`), and `bench_scaling`'s cases. Nothing is
measured here, and nothing is left out: a figure that missed its target is marked so,
and a figure that was not measured says why. The chart needs matplotlib (the `bench`
hatch environment has it); without it, the page is written and the chart is not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from _common import OURS, PREFECT, RAW

ROOT = Path(__file__).resolve().parents[1]
RUNNERS = ("threads", "processes", "dask", "ray")
TITLES = {"threads": "Threads", "processes": "Processes", "dask": "Dask", "ray": "Ray"}
RAW_NAMES = {
    "threads": "`ThreadPoolExecutor`",
    "processes": "`ProcessPoolExecutor`",
    "dask": "`distributed.Client`",
    "ray": "`ray.remote`",
}
PREFECT_NAMES = {
    "threads": "`prefect.task_runners.ThreadPoolTaskRunner`",
    "processes": "`prefect.task_runners.ProcessPoolTaskRunner`",
    "dask": "`prefect_dask.DaskTaskRunner`",
    "ray": "`prefect_ray.RayTaskRunner`",
}
# The most ours may cost per task, as a multiple of the raw engine's cost (the issues' targets).
TARGETS: dict[tuple[str, str], float] = {
    ("threads", "submit"): 2.0,
    ("threads", "map"): 2.0,
    ("processes", "submit"): 1.5,
    ("processes", "map"): 2.0,
    ("dask", "submit"): 1.2,
    ("dask", "map"): 1.2,
    ("dask", "chain"): 1.2,
    ("ray", "submit"): 1.2,
    ("ray", "map"): 1.2,
    ("ray", "chain"): 1.2,
}
PER_TASK = (("submit", "submit loop"), ("map", "`.map`"), ("chain", "chain, per link"))
FOOTPRINT = (
    ("import", "`import` (ms)"),
    ("empty_flow_process", "a whole process running an empty flow (s)"),
    ("memory_per_task", "driver memory per completed task (KiB)"),
    ("peak_threads", "peak extra threads in the driver"),
)

Key = tuple[str, str, str, "int | None"]


# -- reading ----------------------------------------------------------------------------------


def load(folder: Path) -> dict[str, dict[str, Any]]:
    """Every report in `folder`, by its `"benchmark"` name (or its file's stem)."""
    reports = {}
    for path in sorted(folder.glob("bench_*.json")):
        report = json.loads(path.read_text())
        name = report.get("benchmark") or path.stem.removeprefix("bench_")
        reports[name] = report
    return reports


def index(reports: dict[str, dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    found: dict[Key, dict[str, Any]] = {}
    for report in reports.values():
        for fig in report.get("figures", []):
            found[(fig["runner"], fig["metric"], fig["who"], fig["n"])] = fig
    return found


def lookup(
    figs: dict[Key, dict[str, Any]], runner: str, metric: str, who: str, n: int | None = None
) -> dict[str, Any] | None:
    """The figure for (runner, metric, who) at N, or at any N when `n` is None."""
    if n is not None:
        return figs.get((runner, metric, who, n))
    for (r, m, w, _), fig in figs.items():
        if (r, m, w) == (runner, metric, who):
            return fig
    return None


# -- formatting -------------------------------------------------------------------------------


def number(value: float, unit: str) -> str:
    if unit == "threads":
        return f"{value:.0f}"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "KiB":
        return f"{value:.2f} KiB"
    if value >= 100:
        return f"{value:,.0f} µs"
    return f"{value:.1f} µs"


class Notes:
    """Footnotes: a cell that needs explaining gets a number, the text goes below the table."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"<sup>{self.texts.index(text) + 1}</sup>"

    def render(self) -> list[str]:
        lines = [f"{i}. {text}" for i, text in enumerate(self.texts, 1)]
        self.texts = []
        return ["", *lines] if lines else []


def cell(
    fig: dict[str, Any] | None, notes: Notes, row_n: int | None = None, *, note_ours: bool = False
) -> str:
    if fig is None:
        return "not measured"
    if fig["value"] is None:
        return "not run" + notes.mark(fig["skipped"] or "no figure")
    text = number(fig["value"], fig["unit"])
    if row_n is not None and fig["n"] not in (None, row_n):
        text += f" (N={fig['n']:,})"
    if fig.get("note") and (note_ours or fig["who"] != OURS):
        text += notes.mark(fig["note"])
    return text


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if a is None or b is None or not a["value"] or not b["value"]:
        return None
    return a["value"] / b["value"]


# -- the page --------------------------------------------------------------------------------------


def per_task_table(runner: str, figs: dict[Key, dict[str, Any]], notes: Notes) -> list[str]:
    lines = [
        f"| case | N | taskrunners | raw: {RAW_NAMES[runner]} | Prefect 3.9.1 | ours / raw | target | Prefect / ours |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    ns = sorted({n for (r, m, w, n) in figs if r == runner and w == OURS and m in ("submit", "map") and n})
    rows = [(metric, label, n) for metric, label in PER_TASK[:2] for n in ns]
    rows += [
        ("chain", PER_TASK[2][1], n)
        for (r, m, w, n) in sorted(figs, key=str)
        if (r, m, w) == (runner, "chain", OURS)
    ]
    for metric, label, n in rows:
        ours = lookup(figs, runner, metric, OURS, n)
        raw = lookup(figs, runner, metric, RAW, n)
        prefect = lookup(figs, runner, metric, PREFECT, n)
        ours_raw = ratio(ours, raw)
        target = TARGETS.get((runner, metric))
        if target is None:
            verdict = "none"
        elif ours_raw is None:
            verdict = f"<= {target:g}x"
        else:
            verdict = f"<= {target:g}x: " + ("met" if ours_raw <= target else "**missed**")
        prefect_ours = ratio(prefect, ours)
        lines.append(
            f"| {label} | {n:,} | {cell(ours, notes)} | {cell(raw, notes)} | {cell(prefect, notes, n)} | "
            f"{'' if ours_raw is None else f'{ours_raw:.2f}x'} | {verdict} | "
            f"{'' if prefect_ours is None else f'{prefect_ours:,.0f}x'} |"
        )
    return lines + notes.render()


def footprint_table(runner: str, figs: dict[Key, dict[str, Any]], notes: Notes) -> list[str]:
    lines = [
        f"| measure | taskrunners | raw: {RAW_NAMES[runner]} | Prefect 3.9.1 |",
        "|---|---:|---:|---:|",
    ]
    for metric, label in FOOTPRINT:
        ours = lookup(figs, runner, metric, OURS)
        raw = lookup(figs, runner, metric, RAW)
        prefect = lookup(figs, runner, metric, PREFECT)
        row_n = ours["n"] if ours else None
        if row_n:
            label += f", N={row_n:,}"
        ours_text = cell(ours, notes, note_ours=metric == "import")
        lines.append(f"| {label} | {ours_text} | {cell(raw, notes, row_n)} | {cell(prefect, notes, row_n)} |")
    return lines + notes.render()


def scaling_section(scaling: dict[str, Any] | None) -> list[str]:
    lines = ["## Scaling: CPU-bound runs on more cores", ""]
    if scaling is None:
        return [*lines, "Not measured in this run (`bench_scaling.py` wrote no report).", ""]
    meta = scaling["meta"]
    cpus = meta.get("cpus") or 0
    lines += [
        (
            f"{meta['runs']} pure-Python runs of about {meta['seconds_per_run']} s each, mapped over W workers. "
            "*work* is the mapped runs alone, timed inside the flow after every worker has started; "
            "*whole* is the whole flow call, start-up of the pool or cluster included; *serial* is the "
            "same runs one after another in the benchmark's process, timed right before each case. "
            "The speed-up is serial / work."
        ),
        "",
    ]
    if cpus < 16:
        lines += [
            f'!!! note "This machine has {cpus} CPUs"',
            (
                f"    No 16-core machine was at hand for this run, so the table stops at {max(meta['workers'])} "
                "workers. On a machine with 16 cores, `python benchmarks/bench_scaling.py` measures 1, 2, 4, 8 "
                "and 16 workers; what an earlier such run gave is quoted below the table."
            ),
            "",
        ]
    lines += ["| runner | workers | serial | whole | work | speed-up |", "|---|---:|---:|---:|---:|---:|"]
    for case in scaling["cases"]:
        lines.append(
            f"| {TITLES.get(case['runner'], case['runner'])} | {case['workers']} | {case['serial_s']:.2f} s | "
            f"{case['whole_s']:.2f} s | {case['work_s']:.2f} s | {case['speedup']:.2f}x |"
        )
    lines.append("")
    return lines


EARLIER_16_CORES = """\
An earlier run on a lent machine with 16 cores (2026-11-26, Python 3.12,
`python benchmarks/bench_scaling.py --workers 1,2,4,8,16 --runs 32 --seconds 0.25`)
gave, for the work alone: processes 6.1x at 8 workers and 9.2x at 16; Dask 7.6x and
8.2x; Ray 4.6x and 8.4x. Start-up came on top: about 1.5 s for the process pool, 3-4 s
for a Dask LocalCluster and about 9 s for a local Ray. That run is not this page's: it
is quoted, not regenerated.
"""


def chart(figs: dict[Key, dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: the chart was not drawn (hatch run bench:all has it)")
        return False
    panels = (("submit", "submit loop"), ("map", ".map"), ("chain", "chain, per link"))
    if not any(w == OURS and m == "submit" for (_, m, w, _) in figs):
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 4.2), sharey=True)
    sides = (
        (OURS, "taskrunners", "#2b6cb0"),
        (RAW, "raw engine", "#a0aec0"),
        (PREFECT, "Prefect 3.9.1", "#dd6b20"),
    )
    width = 0.26
    for ax, (metric, title) in zip(axes, panels):
        # Per runner, the smallest N measured (1,000 in a full run), the same for every side.
        ns = {
            r: min((n for (r2, m, w, n) in figs if (r2, m, w) == (r, metric, OURS) and n), default=None)
            for r in RUNNERS
        }
        for offset, (who, label, colour) in enumerate(sides):
            values = []
            for runner in RUNNERS:
                found = lookup(figs, runner, metric, who, ns[runner]) if ns[runner] else None
                values.append(found["value"] if found and found["value"] else 0)
            positions = [i + (offset - 1) * width for i in range(len(RUNNERS))]
            bars = ax.bar(positions, values, width, label=label, color=colour)
            for bar, value in zip(bars, values):
                if value == 0:
                    x = bar.get_x() + width / 2
                    ax.text(
                        x,
                        0.03,
                        "not run",
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        transform=ax.get_xaxis_transform(),
                    )
        ax.set_yscale("log")
        ticks = [f"{TITLES[r]}\nN={ns[r]:,}" if ns[r] else TITLES[r] for r in RUNNERS]
        ax.set_xticks(range(len(RUNNERS)), ticks, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", which="major", alpha=0.3)
    axes[0].set_ylabel("time per task (µs, log scale)")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Per-task overhead of no-op runs: lower is better", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return True


def versions(reports: dict[str, dict[str, Any]]) -> str:
    parts = []
    for bench, key, label in (
        ("threads", "taskrunners", "taskrunners"),
        ("dask", "distributed", "distributed"),
        ("ray", "ray", "ray"),
        ("prefect", "prefect", "prefect"),
        ("prefect", "prefect_dask", "prefect-dask"),
        ("prefect", "prefect_ray", "prefect-ray"),
    ):
        value = reports.get(bench, {}).get("meta", {}).get(key)
        if value:
            parts.append(f"{label} {value}")
    return ", ".join(parts)


def page(reports: dict[str, dict[str, Any]], chart_name: str | None) -> str:
    figs = index(reports)
    meta = next((r["meta"] for r in reports.values() if "meta" in r), {})
    quick = any(r.get("meta", {}).get("quick") for r in reports.values())
    notes = Notes()
    out = [
        "# Benchmarks",
        "",
        "What taskrunners costs, next to the raw engine each runner is built on and to Prefect 3.9.1",
        "with its matching task runner. Every figure on this page comes from one run of",
        "`hatch run bench:all`, which writes this page; edit `benchmarks/report.py`, not the page.",
        "",
    ]
    if quick:
        out += [
            '!!! warning "A smoke run"',
            "    These figures come from `--quick` runs (a few hundred tasks, one round): they show that",
            "    the benchmarks work, not what anything costs.",
            "",
        ]
    out += [
        "## The machine",
        "",
        "| | |",
        "|---|---|",
        f"| when | {meta.get('when', '?')} |",
        f"| CPUs | {meta.get('cpus', '?')} ({meta.get('processor', '?')}) |",
        f"| memory | {meta.get('memory_gib', '?')} GiB |",
        f"| system | {meta.get('platform', '?')} |",
        f"| Python | {meta.get('python', '?')} |",
        f"| versions | {versions(reports)} |",
        "",
        "The machine is a shared virtual machine with 2 cores, where other work runs at the same",
        "time: read a figure against its neighbours in the same row, measured in the same run",
        "(taskrunners and the raw engine interleaved, round after round, in one process), and not",
        "against a figure from another run or machine. Prefect runs in its own interpreter (the",
        "`prefect` hatch environment), after ours, on the same machine; its cells say what set-up",
        "and what N each figure used.",
        "",
    ]
    if chart_name:
        out += [f"![Per-task overhead of taskrunners, the raw engines and Prefect 3.9.1]({chart_name})", ""]
    out += [
        "## Per-task overhead",
        "",
        "N no-op runs, every result read; the figure is the whole job divided by N (for the",
        "chain: by its links). *ours / raw* is what taskrunners adds to the engine it runs on;",
        "*target* is the most it may add; *Prefect / ours* is how many times more Prefect",
        "spends on the same job.",
        "",
    ]
    for runner in RUNNERS:
        out += [f"### {TITLES[runner]}", "", f"Prefect: {PREFECT_NAMES[runner]}.", ""]
        out += per_task_table(runner, figs, notes)
        out.append("")
    out += [
        "## Import, start-up, memory and threads",
        "",
        "- *import*: the module a user imports, in a fresh interpreter, minus an empty one.",
        "- *a whole process running an empty flow*: `python -c` from start to exit, the runner starting",
        "  its own pool or cluster (Dask: a LocalCluster of 2 workers; Ray: a local Ray of 2 CPUs). The",
        "  raw engine's process starts the engine and stops it. Prefect's includes its temporary",
        "  local API server, its default set-up.",
        "- *driver memory per completed task*: growth of the driver's resident memory over N no-op",
        "  runs, every future still held, divided by N. With Dask, the LocalCluster's scheduler lives",
        "  in the driver, so its memory for N tasks counts on both sides.",
        "- *peak extra threads*: the most OS threads the driver had during those runs, above before.",
        "",
    ]
    for runner in RUNNERS:
        out += [f"### {TITLES[runner]}", ""]
        out += footprint_table(runner, figs, notes)
        out.append("")
    out += scaling_section(reports.get("scaling"))
    scaling_meta = reports.get("scaling", {}).get("meta", {})
    if (scaling_meta.get("cpus") or 0) < 16:
        out += [EARLIER_16_CORES]
    out += [
        "## Reproducing these figures",
        "",
        "```bash",
        "pip install hatch",
        "hatch run bench:all          # every benchmark, Prefect's too; writes this page and its chart",
        "hatch run bench:all --quick  # a smoke run of each (minutes, not an hour)",
        "hatch run bench:threads      # one benchmark, printed only",
        "```",
        "",
        "`bench:all` creates the `prefect` environment (Prefect 3.9.1, prefect-dask 0.3.7,",
        "prefect-ray 0.6.0, and the same Dask and Ray as ours) on first use; Prefect is never",
        "installed beside taskrunners. Prefect's slowest jobs are not run when they would take",
        "longer than `bench_prefect.py`'s budget: their cells say so, with the estimate.",
        "What each benchmark measures, and how, is in the docstring at the top of its script",
        "under `benchmarks/`, and in `benchmarks/README.md`.",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the folder of JSON reports (run_all.py --json-dir)")
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "img" / "benchmarks.png")
    args = parser.parse_args(argv)
    reports = load(args.results)
    if not reports:
        parser.error(f"no JSON reports in {args.results}")
    drawn = chart(index(reports), args.chart)
    chart_name = None
    if drawn:
        try:
            chart_name = args.chart.resolve().relative_to(args.page.resolve().parent).as_posix()
        except ValueError:
            chart_name = args.chart.resolve().as_posix()
    args.page.write_text(page(reports, chart_name))
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
