"""The run report as a self-contained HTML timeline (inline CSS and script, no network)."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import FlowRun

__all__ = ["render"]

_CSS = """
:root { --bg:#fff; --fg:#1b1f24; --muted:#6a737d; --line:#e1e4e8; --track:#f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 20px; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: var(--bg); }
h1 { font-size: 18px; margin: 0 0 4px; }
.summary { color: var(--muted); margin-bottom: 10px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 4px;
            vertical-align: -1px; }
#timeline { margin-top: 12px; border-top: 1px solid var(--line); }
.row { display: flex; align-items: stretch; border-bottom: 1px solid var(--line); min-height: 24px; }
.label { flex: 0 0 260px; padding: 4px 8px 4px 0; overflow: hidden; text-overflow: ellipsis;
         white-space: nowrap; color: var(--fg); font-family: ui-monospace, Menlo, Consolas, monospace;
         font-size: 12px; }
.track { position: relative; flex: 1 1 auto; background: var(--track); }
.run { position: absolute; height: 16px; border-radius: 2px; cursor: default; min-width: 2px;
       opacity: .9; border: 1px solid rgba(0,0,0,.15); }
.run:hover { opacity: 1; outline: 2px solid #0366d6; z-index: 2; }
.axis { position: relative; height: 20px; margin-left: 260px; color: var(--muted); font-size: 11px; }
.tick { position: absolute; top: 2px; transform: translateX(-50%); white-space: nowrap; }
#tip { position: fixed; display: none; z-index: 10; max-width: 460px; padding: 8px 10px; border-radius: 4px;
       background: #24292e; color: #fff; font-size: 12px; pointer-events: none;
       box-shadow: 0 2px 8px rgba(0,0,0,.3); }
#tip table { border-collapse: collapse; }
#tip td { padding: 1px 6px 1px 0; vertical-align: top; }
#tip td:first-child { color: #a8b1bb; white-space: nowrap; }
#tip .err { color: #ffb4b4; white-space: pre-wrap; word-break: break-word; }
.s-COMPLETED { background: #2da44e; } .s-FAILED { background: #cf222e; } .s-CRASHED { background: #8250df; }
.s-CANCELLED { background: #bf8700; } .s-RUNNING, .s-PENDING { background: #8c959f; }
"""

_SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var runs = [];
  (function collect(flow) {
    flow.task_runs.forEach(function (run) { run.flow = flow.name; runs.push(run); });
    flow.subflows.forEach(collect);
  })(data);
  function worker(run) {
    var w = run.where;
    if (!w) { return "(did not run)"; }
    if (w.details && w.details.worker) { return w.details.worker; }
    return w.host + " pid " + w.pid + " " + w.thread;
  }
  function begin(run) { return run.start !== null ? run.start : (run.end !== null ? run.end : run.queued); }
  var t0 = data.start, t1 = data.end !== null ? data.end : t0;
  runs.forEach(function (run) { var e = run.end !== null ? run.end : begin(run); if (e > t1) { t1 = e; } });
  var span = Math.max(t1 - t0, 1e-6);
  var order = [], rows = {};
  runs.slice().sort(function (a, b) { return begin(a) - begin(b); }).forEach(function (run) {
    var key = worker(run);
    if (!rows[key]) { rows[key] = []; order.push(key); }
    rows[key].push(run);
  });
  function pct(t) { return ((t - t0) / span * 100).toFixed(4) + "%"; }
  function secs(x) { return x === null || x === undefined ? "-" : x.toFixed(3) + " s"; }
  function esc(text) {
    return String(text).replace(/[&<>"]/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c];
    });
  }
  var timeline = document.getElementById("timeline");
  order.forEach(function (key) {
    var row = document.createElement("div");
    row.className = "row";
    row.setAttribute("data-worker", key);
    var lanes = [];  // end times of the runs placed in each lane, so overlapping runs stack
    var label = document.createElement("div");
    label.className = "label";
    label.textContent = key;
    label.title = key;
    var track = document.createElement("div");
    track.className = "track";
    rows[key].forEach(function (run) {
      var s = begin(run), e = run.end !== null ? run.end : s, lane = 0;
      var shown = Math.max(e, s + span * 0.006);  // a short run still takes a few pixels: keep it apart
      while (lane < lanes.length && lanes[lane] > s) { lane += 1; }
      lanes[lane] = shown;
      var bar = document.createElement("div");
      bar.className = "run s-" + run.state;
      bar.style.left = pct(s);
      bar.style.width = ((shown - s) / span * 100).toFixed(4) + "%";
      bar.style.top = (4 + lane * 20) + "px";
      bar.setAttribute("data-name", run.name);
      bar.setAttribute("data-state", run.state);
      bar.addEventListener("mouseenter", function (event) { show(run, key, event); });
      bar.addEventListener("mousemove", place);
      bar.addEventListener("mouseleave", hide);
      track.appendChild(bar);
    });
    row.style.height = (8 + Math.max(lanes.length, 1) * 20) + "px";
    row.appendChild(label);
    row.appendChild(track);
    timeline.appendChild(row);
  });
  var axis = document.getElementById("axis");
  var step = Math.pow(10, Math.floor(Math.log10(span / 5)));
  if (span / step > 10) { step *= 2; }
  if (span / step > 10) { step *= 2.5; }
  for (var t = 0; t <= span + 1e-9; t += step) {
    var tick = document.createElement("div");
    tick.className = "tick";
    tick.style.left = (t / span * 100) + "%";
    tick.textContent = (step < 1 ? t.toFixed(Math.min(3, Math.ceil(-Math.log10(step)))) : t.toFixed(0)) + " s";
    axis.appendChild(tick);
  }
  var tip = document.getElementById("tip");
  function show(run, key, event) {
    var items = [
      ["run", run.name], ["task", run.task], ["flow", run.flow], ["state", run.state_name + " (" + run.state + ")"],
      ["attempts", run.attempts], ["worker", key], ["queued", secs(run.queued - t0)],
      ["started", run.start === null ? "never" : secs(run.start - t0)], ["ended", secs(run.end - t0)],
      ["duration", run.start === null || run.end === null ? "-" : secs(run.end - run.start)],
      ["runner", run.runner]
    ];
    if (run.where) {
      items.push(["host", run.where.host], ["pid", run.where.pid], ["thread", run.where.thread]);
      Object.keys(run.where.details || {}).forEach(function (k) {
        if (k !== "worker") { items.push([k, run.where.details[k]]); }
      });
    }
    var rowsHtml = items.map(function (item) {
      return "<tr><td>" + esc(item[0]) + "</td><td>" + esc(item[1]) + "</td></tr>";
    }).join("");
    if (run.error) { rowsHtml += "<tr><td>error</td><td class=\\"err\\">" + esc(run.error) + "</td></tr>"; }
    tip.innerHTML = "<table>" + rowsHtml + "</table>";
    tip.style.display = "block";
    place(event);
  }
  function place(event) {
    var x = event.clientX + 14, y = event.clientY + 14;
    if (x + tip.offsetWidth > window.innerWidth) { x = Math.max(0, event.clientX - tip.offsetWidth - 14); }
    if (y + tip.offsetHeight > window.innerHeight) {
      y = event.clientY - tip.offsetHeight - 14;  // above the pointer, else as low as it fits
      if (y < 0) { y = Math.max(0, window.innerHeight - tip.offsetHeight); }
    }
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function hide() { tip.style.display = "none"; }
})();
"""

_LEGEND = (
    ("COMPLETED", "completed"),
    ("FAILED", "failed"),
    ("CRASHED", "crashed"),
    ("CANCELLED", "cancelled"),
)


def render(flow_run: FlowRun) -> str:
    """The HTML page of `flow_run`'s timeline."""
    payload = json.dumps(flow_run.to_dict()).replace("</", "<\\/")
    runs = flow_run.all_task_runs()
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.state] = counts.get(run.state, 0) + 1
    summary = ", ".join(f"{count} {kind.lower()}" for kind, count in sorted(counts.items())) or "no task runs"
    duration = flow_run.duration
    legend = "".join(f'<span><i class="s-{kind}"></i>{word}</span>' for kind, word in _LEGEND)
    title = html.escape(f"flow {flow_run.name}")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}: run report</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{title} <small class="s-{html.escape(flow_run.state)}-text">{html.escape(flow_run.state.lower())}</small></h1>
<div class="summary">{len(runs)} task runs ({html.escape(summary)}) in
{"-" if duration is None else f"{duration:.3f}"} s on {html.escape(flow_run.runner)};
one row per worker. Hover over a run for its details.</div>
<div class="legend">{legend}</div>
<div id="timeline"></div>
<div id="axis" class="axis"></div>
<div id="tip"></div>
<script type="application/json" id="report-data">{payload}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""
