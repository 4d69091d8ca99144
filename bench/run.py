"""The ingestion benchmark: the gateway against a bare ASGI app under the same daphne, in one run.

    .venv/bin/python bench/run.py --redis redis://127.0.0.1:6379/10      # issue 9's targets (the default)
    .venv/bin/python bench/run.py --targets issue8                         # issue 8's targets
    .venv/bin/python bench/run.py [--scenarios track,batch,pixel,spool] [--duration 10s]
                                  [--connections 10,50] [--connections batch=10,50] [--redis URL]

It starts a Tansu broker, a throwaway SQLite database with one pipeline (its rate limit set far
above what a run sends), the gateway and the bare app (bench/bare_asgi.py) on free 127.0.0.1 ports,
drives each scenario with wrk at each connection count (a short warm-up before every measurement),
then checks that every event the gateway answered 2xx is a record in Kafka (a batch answer stands
for its 100 events). It prints a table and pass/fail against the targets, writes
bench/results/latest.json, and exits 1 when a target or the Kafka check fails (2 when the run itself
fails, 130 on Ctrl-C). Informational checks are printed but never fail the run. Every process it
starts is stopped on the way out, Ctrl-C included.

A scenario is one endpoint with its wrk Lua script, in ``SCENARIOS``:

    track  POST /v1/t                one analytics.js track event (bench/post_event.lua)
    batch  POST /v1/batch            100 analytics-python events per request (bench/post_batch.lua)
    pixel  GET  /v1/pixel/track?...  an email open (bench/get_pixel.lua)
    spool  POST /v1/batch            the batch, while the gateway's Kafka is cut (see below)

``--connections`` sets every scenario's connection counts (default 10,50; spool 50);
``--connections NAME=10,50`` one scenario's (it may be given several times).

The spool scenario runs on a gateway of its own (the same database and pipeline, its own
GATEWAY_VAR_DIR and so its own spool) whose only way to a Tansu of its own is a TCP proxy
(bench/gateway_bench/proxy.py) that the run cuts: every connection reset, new ones refused. At each
connection count: a warm-up with Kafka up, the cut, wrk for --duration, the restore; then it reads
that topic until it holds every event answered 2xx during the cut and prints the drain rate (those
events over the seconds from the restore until the last of them arrived), and finally checks that
every 2xx of that gateway is a record there. It reports what it sees: a gateway that answers 503
while Kafka is cut shows 0 events/s of intake, its statuses, and the records of those refused
requests that librdkafka still delivered after the restore.

``--targets`` picks the targets the run is judged by, and the scenarios run when ``--scenarios`` is
not given (bench/gateway_bench/targets.py):

    issue9 (default)  track at 50 connections >= 45% of bare, batch >= 60,000 events/s, spool
                      intake with Kafka cut >= 20,000 events/s (the drain rate printed), track p99 at
                      10 connections < 25 ms; needs --redis (dedup and rate limits on, as issue 9
                      measures them)
    issue8            track at 50 connections >= 50% of bare, batch >= 70,000 events/s, track p99 at
                      10 connections < 25 ms; runs track, batch and pixel

The pixel's ratio is informational in both. The code lives in bench/gateway_bench/: servers (and
the cuttable Kafka), proxy, scenarios (wrk), kafka (the record count, the drain watch), report,
targets and cli (the order of a run).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (bench/ is then sys.path[0]): the project's root must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gateway_bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
