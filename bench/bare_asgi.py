"""The baseline for the benchmark: the least an ASGI app under daphne can do for ``POST /v1/t``.

It reads the whole body and answers 200 ``{"success":true}``, so the gap between it and the gateway
is the gateway's own work (auth, parse, enrich, publish and wait for Kafka's acknowledgement).
Served by bench/run.py as ``daphne bench.bare_asgi:application``.
"""

from __future__ import annotations

from typing import Any

from signal_gateway.adapters.daphne import tune_requests

# The same daphne as the gateway's, so the ratio compares applications, not two tunings of daphne.
tune_requests()

BODY = b'{"success":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # daphne sends no lifespan events; nothing else is served
        return
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
