"""ASGI entry point: ingestion paths (/v1/*, RudderStack's /sourceConfig/ and /beacon/*, the health
checks) go to the lean handler, everything else (the admin) to Django's; WebSockets (the admin's
live event view, ingestion/consumers.py) to channels, with the admin's session.

Served by daphne: ``daphne -b 127.0.0.1 -p 8080 signal_gateway.asgi:application``.
"""

from __future__ import annotations

import gc
import os
from typing import Any

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_gateway.settings")
django_app = get_asgi_application()  # sets Django up before anything imports models

from pipelines.checks import refuse_to_start_with_bad_settings  # noqa: E402

refuse_to_start_with_bad_settings()  # a bad ENCRYPTION_KEY would otherwise turn every request into a 500

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from ingestion import lifecycle  # noqa: E402
from ingestion.consumers import websocket_urlpatterns  # noqa: E402
from ingestion.handler import IngestionHandler, WireLimits  # noqa: E402
from signal_gateway.adapters.daphne import tune_requests  # noqa: E402

GC_GEN0_THRESHOLD = 20_000
# The SDKs' own paths too: RudderStack's settings (/sourceConfig/) and beacon (/beacon/v1/batch).
INGESTION_PREFIXES = ("/v1/", "/sourceConfig", "/beacon/")
INGESTION_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

ingestion_app = IngestionHandler()


async def http_router(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    if path.startswith(INGESTION_PREFIXES) or path in INGESTION_PATHS:
        await ingestion_app(scope, receive, send)
    else:
        await django_app(scope, receive, send)


lifecycle.start()
tune_requests(wire=WireLimits(), headers_timeout=settings.HTTP_HEADERS_TIMEOUT, body_timeout=settings.HTTP_BODY_TIMEOUT)

# Everything loaded so far (Django, models, URL patterns) lives as long as the process: move it out
# of the collector's view so a full collection does not rescan it on the request path, and collect
# the young generation less often. bench/: p99 at 10 connections, see README.
gc.collect()
gc.freeze()
gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)

application = ProtocolTypeRouter(
    {"http": http_router, "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns))}
)
