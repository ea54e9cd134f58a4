"""Make the run report's pictures for docs/run-report.md from a real run.

Run from the repository root (needs taskrunners-processes, playwright and a Chromium at
/usr/bin/chromium, as the tests do)::

    python benchmarks/run_report_picture.py

Runs a flow on `ProcessPoolTaskRunner(max_workers=3)`: a `.map()` of 12 downloads of
uneven length, one of which fails twice and then succeeds, one that fails for good, and
a run that never starts because its upstream run failed. It saves the run's report as
`docs/img/run-report.json`, its timeline as `docs/img/run-report.html`, and a
screenshot of the timeline, with the details of the failed run shown on hover, as
`docs/img/run-report-timeline.png`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from taskrunners import allow_failure, flow, task
from taskrunners_processes import ProcessPoolTaskRunner

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@task(retries=2)
def download(page: int, marker: str) -> int:
    time.sleep(0.05 + 0.03 * (page % 5))  # stands for network I/O of uneven length
    if page == 7:  # fails twice, then succeeds (its retries)
        attempts = Path(marker)
        count = int(attempts.read_text()) + 1 if attempts.exists() else 1
        attempts.write_text(str(count))
        if count < 3:
            raise ConnectionError(f"page {page}: connection reset")
    if page == 11:
        raise ValueError(f"page {page}: not found (404)")
    return page * 1000


@task
def index(sizes: list[int]) -> int:
    time.sleep(0.05)
    return sum(sizes)


@task
def report_sizes(sizes: list[object]) -> int:
    time.sleep(0.02)
    return len(sizes)


@flow(task_runner=ProcessPoolTaskRunner(max_workers=3))
def crawl(marker: str) -> int:
    pages = download.map(range(12), marker)
    indexed = index.submit(pages)  # never starts: page 11 failed
    counted = report_sizes.submit(allow_failure(pages)).result()
    indexed.wait()
    assert indexed.state.is_failed()
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=IMG, help="where to write (default docs/img)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    marker = args.out / ".run-report-attempts"
    marker.unlink(missing_ok=True)
    try:
        state = crawl(str(marker), return_state=True)
    finally:
        marker.unlink(missing_ok=True)
    report = state.run
    report.save(args.out / "run-report.json")
    report.save_html(args.out / "run-report.html")
    print(report)

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 540}, device_scale_factor=1)
        page.goto((args.out / "run-report.html").resolve().as_uri())
        failed = next(run for run in report.task_runs if run.state == "FAILED" and run.start is not None)
        box = page.locator(f'.run[data-name="{failed.name}"]').bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.screenshot(path=str(args.out / "run-report-timeline.png"))
        browser.close()
    print(f"wrote {os.path.relpath(args.out / 'run-report-timeline.png', ROOT)}")


if __name__ == "__main__":
    main()
