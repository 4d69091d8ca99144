"""The batch and track paths in-process: CPU per event without daphne, wrk or the network in the way.

    .venv/bin/python bench/inprocess.py [--scenario batch|track] [--concurrency 50] [--requests 2000]

It starts Tansu, migrates a throwaway SQLite database, creates a pipeline, then sends POST /v1/batch
(100 events, as bench/post_batch.lua builds them) or, with ``--scenario track``, POST /v1/t (one
first-visit track call, as bench/post_event.lua builds it) straight into ``signal_gateway.asgi.application``,
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

from bench.gateway_bench.core import free_port  # noqa: E402
from bench.gateway_bench.servers import gateway_env  # noqa: E402
from signal_gateway.devbroker import start_broker  # noqa: E402

EVENTS_PER_REQUEST = 100
# In every messageId: a run's events are never duplicates of an earlier run's (dedup would skip them).
RUN = os.urandom(4).hex()


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
            "messageId": f"py-inprocess-{RUN}-{request_number}-{i}",
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


def track_body(request_number: int) -> bytes:
    """One analytics.js track call (~630 bytes), as bench/post_event.lua sends it."""
    import orjson

    now = time.time()
    return orjson.dumps(
        {
            "type": "track",
            "event": "Product Added",
            "properties": {"product_id": "sku-48213", "name": "Trail Shoe", "price": 129.99, "currency": "USD"},
            "anonymousId": f"3f6b1d2e-8c4a-4e7b-9b1f-{request_number % 1000:012d}",
            "messageId": f"ajs-inprocess-{RUN}-{request_number}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.120Z", time.gmtime(now)),
            "sentAt": time.strftime("%Y-%m-%dT%H:%M:%S.250Z", time.gmtime(now)),
            "context": {
                "library": {"name": "analytics.js", "version": "5.2.0"},
                "page": {
                    "path": "/p/trail-shoe",
                    "referrer": "https://www.google.com/",
                    "title": "Trail Shoe | Northpeak",
                    "url": "https://shop.example.com/p/trail-shoe?utm_source=google",
                },
                "userAgent": USER_AGENT,
            },
        }
    )


USER_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
SCENARIOS: dict[str, dict[str, Any]] = {
    "batch": {"path": b"/v1/batch", "content_type": b"application/json", "events": EVENTS_PER_REQUEST},
    "track": {"path": b"/v1/t", "content_type": b"text/plain", "events": 1},
}


def baseline_us_per_event(bodies: list[bytes], events_per_body: int) -> float:
    """orjson.loads of each body and orjson.dumps of each of its events, best of five, per event."""
    import orjson

    best = float("inf")
    for _ in range(5):
        start = time.thread_time()
        for body in bodies:
            parsed = orjson.loads(body)
            for event in parsed["batch"] if "batch" in parsed else [parsed]:
                orjson.dumps(event)
        best = min(best, time.thread_time() - start)
    return 1e6 * best / (len(bodies) * events_per_body)


async def drive(application: Any, key: str, bodies: list[bytes], concurrency: int, scenario: str) -> dict[int, int]:
    statuses: dict[int, int] = {}
    authorization = b"Basic " + base64.b64encode(f"{key}:".encode())

    async def one(body: bytes) -> None:
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": SCENARIOS[scenario]["path"].decode(),
            "raw_path": SCENARIOS[scenario]["path"],
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", SCENARIOS[scenario]["content_type"]),
                (b"authorization", authorization),
                *([(b"origin", b"https://shop.example.com")] if scenario == "track" else []),
                (b"user-agent", USER_AGENT.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1
            elif scenario == "batch" and b'"rejected":0' not in message.get("body", b'"rejected":0'):
                raise SystemExit(f"a batch was not accepted whole: {message['body'][:300]!r}")

        await application(scope, receive, send)

    for start in range(0, len(bodies), concurrency):
        await asyncio.gather(*(one(body) for body in bodies[start : start + concurrency]))
    return statuses


def redis_cpu_seconds(url: str | None) -> float:
    """The Redis server's CPU so far (INFO cpu), or 0 without Redis."""
    if not url:
        return 0.0
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="batch")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight at once (default 50)")
    parser.add_argument("--requests", type=int, default=2000, help="requests measured (default 2000)")
    parser.add_argument(
        "--redis", default=None, help="a Redis URL: dedup marks and rate limits in Redis, as in production"
    )
    args = parser.parse_args()
    make_body = batch_body if args.scenario == "batch" else track_body
    per_request = SCENARIOS[args.scenario]["events"]

    port = free_port()
    broker = start_broker(port)
    work = Path(tempfile.mkdtemp(prefix="sg-inprocess-"))
    try:
        # The same settings bench/run.py gives its gateway (SQLite, in-process cache); a long ack
        # timeout, so that a run under callgrind is not answered 503.
        os.environ.clear()
        os.environ.update(gateway_env(temp_dir=work, bootstrap=f"127.0.0.1:{port}", redis_url=args.redis))
        os.environ.setdefault("KAFKA_ACK_TIMEOUT", "30")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from pipelines.services import pipeline_create

        key = pipeline_create(name="In-process bench", rate_limit_rps=10_000_000).pipeline_key
        from signal_gateway.asgi import application

        warm = [make_body(-n) for n in range(1, 2 * args.concurrency + 1)]
        bodies = [make_body(n) for n in range(args.requests)]

        async def measured() -> tuple[dict[int, int], float, float, float, float]:
            await drive(application, key, warm, args.concurrency, args.scenario)  # one loop for both, as in daphne
            redis_before = redis_cpu_seconds(args.redis)
            process, thread, wall = time.process_time(), time.thread_time(), time.perf_counter()
            statuses = await drive(application, key, bodies, args.concurrency, args.scenario)
            process, thread, wall = (
                time.process_time() - process,
                time.thread_time() - thread,
                time.perf_counter() - wall,
            )
            return statuses, process, thread, wall, redis_cpu_seconds(args.redis) - redis_before

        statuses, process_s, thread_s, wall_s, redis_s = asyncio.run(measured())
        from ingestion.publisher import get_publisher

        get_publisher().close()
        logging.getLogger("librdkafka").setLevel(logging.CRITICAL)  # the broker stops next; that is expected
        events = args.requests * per_request
        floor = baseline_us_per_event(bodies[:200], per_request)
        loop_us, process_us = 1e6 * thread_s / events, 1e6 * process_s / events
        print(
            f"{events} events in {args.requests} requests to {args.scenario}, {args.concurrency} in flight; statuses {statuses}"
        )
        print(f"baseline (orjson loads + dumps): {floor:6.2f} us/event")
        print(f"event-loop thread:               {loop_us:6.2f} us/event  ({loop_us / floor:.1f}x the baseline)")
        print(f"whole process:                   {process_us:6.2f} us/event  ({process_us / floor:.1f}x the baseline)")
        if args.redis:
            redis_us = 1e6 * redis_s / events
            print(f"Redis server:                    {redis_us:6.2f} us/event  (its own process, not in the above)")
        print(f"wall:                            {events / wall_s:,.0f} events/s")
        return 0 if set(statuses) == {200} else 1
    finally:
        broker.terminate()
        broker.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
