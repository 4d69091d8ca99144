"""The batch path in-process: CPU per event without daphne, wrk or the network in the way.

    .venv/bin/python bench/inprocess.py [--concurrency 50] [--requests 2000]

It starts Tansu, migrates a throwaway SQLite database, creates a pipeline, then sends POST /v1/batch
(100 events, as bench/post_batch.lua builds them) straight into ``signal_gateway.asgi.application``,
``--concurrency`` requests at a time, every one acknowledged by Kafka. It prints the CPU per event
of the event-loop thread (the one that limits a gateway process) and of the whole process
(librdkafka's threads included), beside a baseline measured in the same run: ``orjson.loads`` of
the body plus ``orjson.dumps`` of each event, the least any gateway must do per event. bench/run.py
is the end-to-end figure; this one isolates the Python work, so a change to it shows in a few
seconds, and under ``valgrind --tool=callgrind`` it gives repeatable instruction counts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import free_port, gateway_env  # noqa: E402
from signal_gateway.devbroker import start_broker  # noqa: E402

EVENTS_PER_REQUEST = 100


def batch_body(request_number: int) -> bytes:
    """100 analytics-python calls (track, page, identify), ~600 bytes each, each its own messageId."""
    import orjson

    now = time.time()
    sent_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".900000+00:00"
    events: list[dict[str, Any]] = []
    for i in range(EVENTS_PER_REQUEST):
        common: dict[str, Any] = {
            "context": {"library": {"name": "analytics-python", "version": "2.3.2"}},
            "integrations": {},
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 1))
            + f".{(i * 9137) % 1000000:06d}+00:00",
            "userId": f"user-{(request_number * 7 + i * 13) % 5000:012d}",
            "messageId": f"py-inprocess-{request_number}-{i}",
        }
        slot = i % 20
        if slot < 12:
            events.append(
                {
                    "type": "track",
                    "event": "Order Completed",
                    "properties": {
                        "order_id": "ord-7f3a9c21",
                        "checkout_id": "chk-55e1b0",
                        "total": 142.48,
                        "revenue": 129.99,
                        "shipping": 7.5,
                        "tax": 4.99,
                        "currency": "USD",
                        "coupon": "AUTUMN10",
                        "products": [
                            {
                                "product_id": "sku-48213",
                                "sku": "TS-48213-42",
                                "name": "Trail Shoe",
                                "category": "Footwear",
                                "price": 129.99,
                                "quantity": 1,
                            }
                        ],
                        "app_version": "4.18.2",
                        "environment": "production",
                    },
                    **common,
                }
            )
        elif slot < 17:
            events.append(
                {
                    "type": "page",
                    "name": "Pricing",
                    "category": "Marketing",
                    "properties": {
                        "path": "/pricing",
                        "url": "https://www.northpeak.example/pricing?plan=team&utm_source=newsletter",
                        "title": "Pricing | Northpeak",
                        "referrer": "https://mail.google.com/",
                        "search": "?plan=team&utm_source=newsletter",
                        "load_ms": 412,
                        "app_version": "4.18.2",
                        "environment": "production",
                    },
                    **common,
                }
            )
        else:
            events.append(
                {
                    "type": "identify",
                    "traits": {
                        "email": "customer@example.com",
                        "name": "Ada Lovelace",
                        "plan": "team-annual",
                        "company": {"id": "acct-20931", "name": "Analytical Engines Ltd", "employees": 42},
                        "created_at": "2023-03-14T09:26:53.000Z",
                        "locale": "en-GB",
                        "timezone": "Europe/London",
                        "app_version": "4.18.2",
                        "environment": "production",
                    },
                    **common,
                }
            )
    return orjson.dumps({"batch": events, "sentAt": sent_at})


def baseline_us_per_event(bodies: list[bytes]) -> float:
    """orjson.loads of each body and orjson.dumps of each of its events, best of five, per event."""
    import orjson

    best = float("inf")
    for _ in range(5):
        start = time.thread_time()
        for body in bodies:
            for event in orjson.loads(body)["batch"]:
                orjson.dumps(event)
        best = min(best, time.thread_time() - start)
    return 1e6 * best / (len(bodies) * EVENTS_PER_REQUEST)


async def drive(application: Any, key: str, bodies: list[bytes], concurrency: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    authorization = b"Basic " + base64.b64encode(f"{key}:".encode())

    async def one(body: bytes) -> None:
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/batch",
            "raw_path": b"/v1/batch",
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"authorization", authorization),
                (b"content-length", str(len(body)).encode()),
            ],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1
            elif b'"rejected":0' not in message.get("body", b'"rejected":0'):
                raise SystemExit(f"a batch was not accepted whole: {message['body'][:300]!r}")

        await application(scope, receive, send)

    for start in range(0, len(bodies), concurrency):
        await asyncio.gather(*(one(body) for body in bodies[start : start + concurrency]))
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=50, help="batches in flight at once (default 50)")
    parser.add_argument("--requests", type=int, default=2000, help="batches measured (default 2000)")
    args = parser.parse_args()

    port = free_port()
    broker = start_broker(port)
    work = Path(tempfile.mkdtemp(prefix="sg-inprocess-"))
    try:
        # The same settings bench/run.py gives its gateway (SQLite, in-process cache); a long ack
        # timeout, so that a run under callgrind is not answered 503.
        os.environ.clear()
        os.environ.update(gateway_env(temp_dir=work, bootstrap=f"127.0.0.1:{port}", redis_url=None))
        os.environ.setdefault("KAFKA_ACK_TIMEOUT", "30")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from pipelines.services import pipeline_create

        key = pipeline_create(name="In-process bench").pipeline_key
        from signal_gateway.asgi import application

        warm = [batch_body(-n) for n in range(1, 2 * args.concurrency + 1)]
        bodies = [batch_body(n) for n in range(args.requests)]

        async def measured() -> tuple[dict[int, int], float, float, float]:
            await drive(application, key, warm, args.concurrency)  # one loop for both, as in daphne
            process, thread, wall = time.process_time(), time.thread_time(), time.perf_counter()
            statuses = await drive(application, key, bodies, args.concurrency)
            return statuses, time.process_time() - process, time.thread_time() - thread, time.perf_counter() - wall

        statuses, process_s, thread_s, wall_s = asyncio.run(measured())
        from ingestion.publisher import get_publisher

        get_publisher().close()
        logging.getLogger("librdkafka").setLevel(logging.CRITICAL)  # the broker stops next; that is expected
        events = args.requests * EVENTS_PER_REQUEST
        floor = baseline_us_per_event(bodies[:200])
        loop_us, process_us = 1e6 * thread_s / events, 1e6 * process_s / events
        print(f"{events} events in {args.requests} batches, {args.concurrency} in flight; statuses {statuses}")
        print(f"baseline (orjson loads + dumps): {floor:6.2f} us/event")
        print(f"event-loop thread:               {loop_us:6.2f} us/event  ({loop_us / floor:.1f}x the baseline)")
        print(f"whole process:                   {process_us:6.2f} us/event  ({process_us / floor:.1f}x the baseline)")
        print(f"wall:                            {events / wall_s:,.0f} events/s")
        return 0 if set(statuses) == {200} else 1
    finally:
        broker.terminate()
        broker.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
