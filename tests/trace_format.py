"""A check of Chrome/Perfetto trace JSON against the Trace Event Format, for the tests.

Perfetto's Python trace processor (the `perfetto` package) downloads its binary from the
internet on first use, which this machine cannot do; the tests validate the structure
that the format defines instead (JSON object form, complete and metadata events).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["validate_trace_event_format"]


def validate_trace_event_format(trace: dict[str, Any]) -> None:
    """Check a trace against the Trace Event Format (JSON object form), as Perfetto reads it.

    Perfetto's Python trace processor needs a binary it downloads, which this machine
    cannot fetch; this checks the structure the format defines instead.
    """
    assert isinstance(trace["traceEvents"], list) and trace["traceEvents"]
    assert trace.get("displayTimeUnit", "ms") in ("ms", "ns")
    named_processes = set()
    named_threads = set()
    for event in trace["traceEvents"]:
        assert event["ph"] in ("X", "M"), event
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int), event
        assert isinstance(event["name"], str) and event["name"], event
        if event["ph"] == "M":
            assert event["name"] in ("process_name", "thread_name", "process_sort_index"), event
            if event["name"] == "process_name":
                named_processes.add(event["pid"])
                assert isinstance(event["args"]["name"], str)
            elif event["name"] == "thread_name":
                named_threads.add((event["pid"], event["tid"]))
                assert isinstance(event["args"]["name"], str)
        else:
            assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0, event
            assert isinstance(event["dur"], (int, float)) and event["dur"] >= 0, event
            assert isinstance(event.get("args", {}), dict)
    for event in trace["traceEvents"]:
        if event["ph"] == "X":  # every complete event sits on a named process and thread
            assert event["pid"] in named_processes and (event["pid"], event["tid"]) in named_threads
    json.dumps(trace, allow_nan=False)  # strict JSON: no NaN or Infinity
