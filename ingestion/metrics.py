"""Process-local counters, exposed at /metrics in Prometheus' text format.

Counting is a dict increment on the event loop (no lock needed: one loop per process). With several
gateway processes, Prometheus scrapes each and sums; the ``pid`` label keeps them apart.
"""

from __future__ import annotations

import os
import time
from collections import Counter

_HELP = {
    "gateway_events_total": "Events by source kind and outcome (accepted, rejected, dropped, duplicate).",
    "gateway_errors_total": "Error responses by code.",
    "gateway_pixel_dropped_total": "Pixel requests answered with the GIF but not published, by reason.",
    "gateway_rejected_published_total": "Refused events acknowledged on the rejected-events topic.",
    "gateway_rejected_dropped_total": "Refused events not published to rejected-events, by reason (backlog, queue_full, undelivered).",
}
_counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()


def inc(name: str, amount: int = 1, **labels: str) -> None:
    _counts[(name, tuple(sorted(labels.items())))] += amount


_STARTED = time.time()


def render() -> str:
    pid = str(os.getpid())
    lines: list[str] = [
        "# HELP gateway_process_start_time_seconds When this gateway process started (unix seconds).",
        "# TYPE gateway_process_start_time_seconds gauge",
        f'gateway_process_start_time_seconds{{pid="{pid}"}} {_STARTED:.3f}',
    ]
    for name, help_text in _HELP.items():
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} counter")
        for (metric, labels), count in sorted(_counts.items()):
            if metric != name:
                continue
            rendered = ",".join(f'{k}="{v}"' for k, v in (*labels, ("pid", pid)))
            lines.append(f"{name}{{{rendered}}} {count}")
    return "\n".join(lines) + "\n"
