"""The admin's live event view over a WebSocket: ``/ws/pipelines/<pipeline_id>/live`` (issue 10).

signal_gateway.asgi routes WebSockets here behind channels' ``AuthMiddlewareStack``, so the socket
carries the admin's session. Only an active staff user who may view pipelines is let in; anyone
else is refused before the handshake completes (HTTP 403; close code 4403 where the server can say
one), and so is a page on another origin (a browser sends the session cookie with a WebSocket
handshake whichever page opened it). An unknown pipeline is refused with 4404.

Once in, the socket receives one JSON message per event of that pipeline from ``ingestion.livefeed``,
as they are published; what the browser sends is ignored.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.urls import path, re_path

from ingestion.livefeed import Watcher, get_feed
from pipelines.models import Pipeline

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class LiveEventsConsumer(AsyncWebsocketConsumer):
    watcher: Watcher | None = None
    forwarder: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        pipeline_id: str = self.scope["url_route"]["kwargs"]["pipeline_id"]
        if not same_origin(self.scope) or not await may_watch(self.scope.get("user")):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if not await pipeline_exists(pipeline_id):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.watcher = await get_feed().watch(pipeline_id)
        await self.accept()
        self.forwarder = asyncio.create_task(self._forward(self.watcher))

    async def disconnect(self, code: int) -> None:
        if self.forwarder is not None:
            self.forwarder.cancel()
        if self.watcher is not None:
            get_feed().unwatch(self.watcher)
            self.watcher = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        pass  # the page only listens; pausing and filtering happen in the browser

    async def _forward(self, watcher: Watcher) -> None:
        while True:
            await self.send(text_data=await watcher.next_message())


class UnknownPath(AsyncWebsocketConsumer):
    """Any other WebSocket path: refused, instead of channels' "No route found" exception."""

    async def connect(self) -> None:
        await self.close(code=CLOSE_NOT_FOUND)


def same_origin(scope: dict[str, Any]) -> bool:
    """A browser names the page that opened the socket in ``Origin``: it must be this host (or a
    CSRF-trusted origin). Clients that send none are not browsers and carry no ambient cookie."""
    headers = dict(scope.get("headers") or ())
    origin = headers.get(b"origin", b"").decode("latin-1")
    if not origin:
        return True
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    host = headers.get(b"host", b"").decode("latin-1").lower()
    return bool(host) and urlsplit(origin).netloc.lower() == host


@database_sync_to_async
def may_watch(user: Any) -> bool:
    """What the admin asks of a pipeline page's viewer: active staff who may view (or change) pipelines."""
    if user is None or not (user.is_active and user.is_staff):
        return False
    return bool(user.has_perm("pipelines.view_pipeline") or user.has_perm("pipelines.change_pipeline"))


@database_sync_to_async
def pipeline_exists(pipeline_id: str) -> bool:
    return Pipeline.objects.filter(id=pipeline_id).exists()


websocket_urlpatterns = [
    path("ws/pipelines/<str:pipeline_id>/live", LiveEventsConsumer.as_asgi()),
    re_path(r"", UnknownPath.as_asgi()),
]
