"""An open-loop HTTP client at a fixed rate, for the soak: analytics.js track events to ``POST /v1/t``.

    python -m bench.gateway_bench.fixed_rate --url http://127.0.0.1:PORT/v1/t --key KEY --rate 2000
                                             --duration 600 [--interval 5] [--tag soak]

Why its own client: wrk drives a closed loop (a slow answer delays the next request, hiding the
slowness), wrk2, vegeta and oha are not packaged for Debian here, and hey caps each worker's rate but
reports only at the end. This one sends request n at ``start + n / rate`` whatever the answers do,
on an idle keep-alive connection of a fixed pool (``--connections``, opened at the start and
reopened when the server closes one), else as soon as one frees. Latency is measured from the
scheduled time, so waiting for a connection counts. The pool is fixed so that the gateway's open
file descriptors do not follow the client's: a growing count is the gateway's own.

Every ``--interval`` seconds it prints one JSON line: requests scheduled and sent, 2xx, non-2xx by
status, errors by kind (connection refused/reset/closed, timeout), latency p50/p99/max of that
interval, open connections, requests in flight and waiting. At the end, one line with
``"done": true`` and the totals. The request is post_event.lua's: a ~630-byte track event, as
text/plain, no cookies (a first visit: the gateway sets its identity cookies), one of 1,000
anonymous ids, a unique messageId ``ajs-<tag>-<n>``, and a timestamp of when it was built.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

VISITORS = 1000
USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
TICK_S = 0.002  # how often due requests are sent: the rate is exact over a tick, not within it


@dataclass
class Interval:
    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    reconnects: int = 0  # connections the server closed, replaced

    def add(self, other: Interval) -> None:
        self.reconnects += other.reconnects
        self.scheduled += other.scheduled
        self.sent += other.sent
        self.ok += other.ok
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)


def percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


class Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time (HTTP/1.1 without pipelining, as browsers)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: float | None = None  # the scheduled time of the request awaiting its answer
        self.closed = False
        self.counted_closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, scheduled: float, request: bytes) -> None:
        assert self.transport is not None
        self.pending = scheduled
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.pending is not None:
            parsed = parse_response(self.buffer)
            if parsed is None:
                return
            status, length, keep_alive = parsed
            del self.buffer[:length]
            scheduled, self.pending = self.pending, None
            self.client.answered(self, scheduled, status, keep_alive)
            if not keep_alive:
                self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.pending is not None:
            scheduled, self.pending = self.pending, None
            kind = "reset" if isinstance(exc, ConnectionResetError) else "closed"
            self.client.failed(self, scheduled, kind)
        self.client.forget(self)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def parse_response(buffer: bytearray) -> tuple[int, int, bool] | None:
    """(status, bytes taken, keep-alive) of the first complete response in ``buffer``, or None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    body_start = end + 4
    keep_alive = headers.get("connection") != "close"
    if headers.get("transfer-encoding") == "chunked":
        position = body_start
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            position = line_end + 2 + size + 2
            if position > len(buffer):
                return None
            if size == 0:
                return status, position, keep_alive
    length = body_start + int(headers.get("content-length", "0"))
    return (status, length, keep_alive) if len(buffer) >= length else None


class Client:
    def __init__(self, *, url: str, key: str, rate: float, connections: int, timeout: float, tag: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.path = parsed.path or "/"
        self.key = key
        self.rate = rate
        self.connections = connections
        self.stopping = False
        self.timeout = timeout
        self.tag = tag
        self.idle: list[Connection] = []
        self.busy: set[Connection] = set()
        self.opening = 0
        self.waiting: collections.deque[float] = collections.deque()
        self.interval = Interval()
        self.total = Interval()
        self.counter = 0
        self.sent_at: dict[Connection, float] = {}

    # -- the request ------------------------------------------------------------------------------

    def request(self) -> bytes:
        self.counter += 1
        n = self.counter
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        body = (
            '{"type":"track","event":"Product Added",'
            '"properties":{"product_id":"sku-48213","name":"Trail Shoe","price":129.99,"currency":"USD"},'
            f'"anonymousId":"3f6b1d2e-8c4a-4e7b-9b1f-{n % VISITORS:012d}","messageId":"ajs-{self.tag}-{n}",'
            f'"timestamp":"{stamp}","sentAt":"{stamp}",'
            '"context":{"library":{"name":"analytics.js","version":"5.2.0"},'
            '"page":{"path":"/p/trail-shoe","referrer":"https://www.google.com/","title":"Trail Shoe | Northpeak",'
            '"url":"https://shop.example.com/p/trail-shoe?utm_source=google"},'
            f'"userAgent":"{USER_AGENT}"}}}}'
        ).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {self.key}\r\n"
            f"Content-Type: text/plain\r\nOrigin: https://shop.example.com\r\nUser-Agent: {USER_AGENT}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head + body

    # -- dispatching ------------------------------------------------------------------------------

    def dispatch(self, scheduled: float) -> None:
        self.interval.scheduled += 1
        while self.idle and self.idle[-1].closed:  # the server closed it while idle
            self.idle.pop()
        if self.idle:
            self._send(self.idle.pop(), scheduled)
        else:
            self.waiting.append(scheduled)

    async def open_pool(self) -> None:
        await asyncio.gather(*(self._open() for _ in range(self.connections)))

    async def _open(self) -> None:
        self.opening += 1
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: Connection(self), self.host, self.port)
        except OSError as exc:
            self.opening -= 1
            kind = "refused" if isinstance(exc, ConnectionRefusedError) else "connect"
            if self.waiting:
                self.failed(None, self.waiting.popleft(), kind)
            if not self.stopping:  # try again, not in a tight loop
                loop.call_later(0.1, lambda: loop.create_task(self._open()))
            return
        self.opening -= 1
        self._free(conn)

    def _send(self, conn: Connection, scheduled: float) -> None:
        self.busy.add(conn)
        self.sent_at[conn] = time.monotonic()
        self.interval.sent += 1
        conn.send(scheduled, self.request())

    def _free(self, conn: Connection) -> None:
        self.busy.discard(conn)
        self.sent_at.pop(conn, None)
        if conn.closed:
            return
        if self.waiting:
            self._send(conn, self.waiting.popleft())
        else:
            self.idle.append(conn)

    # -- answers ----------------------------------------------------------------------------------

    def answered(self, conn: Connection, scheduled: float, status: int, keep_alive: bool) -> None:
        self.interval.latencies.append(time.monotonic() - scheduled)
        if 200 <= status < 300:
            self.interval.ok += 1
        else:
            self.interval.statuses[str(status)] += 1
        if keep_alive:
            self._free(conn)
        else:
            self.busy.discard(conn)
            self.sent_at.pop(conn, None)

    def failed(self, conn: Connection | None, scheduled: float, kind: str) -> None:
        self.interval.errors[kind] += 1
        self.interval.latencies.append(time.monotonic() - scheduled)

    def forget(self, conn: Connection) -> None:
        """A connection closed: another takes its place, so the pool stays the same size."""
        self.busy.discard(conn)
        self.sent_at.pop(conn, None)
        if conn in self.idle:
            self.idle.remove(conn)
        if not self.stopping and not conn.counted_closed:
            conn.counted_closed = True
            self.interval.reconnects += 1
            asyncio.get_running_loop().create_task(self._open())

    def expire(self) -> None:
        """A request unanswered after ``timeout`` is an error, and its connection is dropped."""
        now = time.monotonic()
        for conn, sent in list(self.sent_at.items()):
            if now - sent > self.timeout and conn.pending is not None:
                scheduled, conn.pending = conn.pending, None
                self.failed(conn, scheduled, "timeout")
                conn.abort()
                self.forget(conn)

    def report(self, elapsed: float, *, done: bool = False) -> dict[str, Any]:
        current, self.interval = self.interval, Interval()
        self.total.add(current)
        latencies = sorted(current.latencies)
        line: dict[str, Any] = {
            "t": round(elapsed, 3),
            "scheduled": current.scheduled,
            "sent": current.sent,
            "ok": current.ok,
            "statuses": dict(current.statuses),
            "errors": dict(current.errors),
            "p50_ms": round(1000 * percentile(latencies, 0.50), 3),
            "p99_ms": round(1000 * percentile(latencies, 0.99), 3),
            "max_ms": round(1000 * (latencies[-1] if latencies else 0.0), 3),
            "connections": len(self.busy) + len(self.idle),
            "reconnects": current.reconnects,
            "in_flight": len(self.busy),
            "waiting": len(self.waiting),
        }
        if done:
            line.update(
                done=True,
                total_scheduled=self.total.scheduled,
                total_sent=self.total.sent,
                total_ok=self.total.ok,
                total_statuses=dict(self.total.statuses),
                total_errors=dict(self.total.errors),
                total_reconnects=self.total.reconnects,
            )
        return line


async def drive(client: Client, *, duration: float, interval: float) -> None:
    await client.open_pool()
    start = time.monotonic()
    end = start + duration
    next_report = start + interval
    total = int(client.rate * duration)
    n = 0
    while True:
        now = time.monotonic()
        while n < total and start + n / client.rate <= now:
            client.dispatch(start + n / client.rate)
            n += 1
        if now >= next_report:
            client.expire()
            print(json.dumps(client.report(now - start)), flush=True)
            next_report += interval
        if now >= end:
            break
        await asyncio.sleep(TICK_S)
    # The last requests' answers: a grace of the timeout, then what is still unanswered is an error.
    grace_end = time.monotonic() + client.timeout
    while (client.busy or client.waiting or client.opening) and time.monotonic() < grace_end:
        await asyncio.sleep(0.05)
    client.stopping = True
    client.expire()
    for scheduled in client.waiting:
        client.failed(None, scheduled, "unsent")
    client.waiting.clear()
    print(json.dumps(client.report(time.monotonic() - start, done=True)), flush=True)
    for conn in [*client.idle, *client.busy]:
        conn.abort()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between report lines")
    parser.add_argument("--connections", type=int, default=64, help="the fixed pool of keep-alive connections")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before an unanswered request is an error")
    parser.add_argument("--tag", default="soak", help="part of every messageId")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    client = Client(
        url=args.url,
        key=args.key,
        rate=args.rate,
        connections=args.connections,
        timeout=args.timeout,
        tag=args.tag,
    )
    asyncio.run(drive(client, duration=args.duration, interval=args.interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
