"""Django, adapted: an HttpResponse whose ``HttpResponse.__init__`` runs on its first use.

Building a Django response costs ~4 us (its header map, cookie jar and content setter), about 1.5%
of a track request, twice per request: ninja builds one before every view (signal_gateway.adapters.ninja)
and the gateway answers with one. ``DeferredResponse`` stores a status, a body and a content type,
and becomes a whole HttpResponse the first time anything reads or writes what HttpResponse keeps: so
it is a real, private response for any code that uses it as one, and costs an empty object otherwise.
The ingestion handler sends a response that was never used from ``deferred_parts()`` directly.

What this relies on, checked by tests/test_adapters.py against the pinned Django: everything
HttpResponse keeps per instance is set in ``__init__`` (so ``__getattr__`` sees any first use), and
``__init__`` keeps a ``status_code`` set before it when given no status.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse


class DeferredResponse(HttpResponse):
    def __init__(self, content: bytes = b"", *, status: int = 200, content_type: str) -> None:
        state = self.__dict__
        state["_deferred"] = (content, content_type)
        state["status_code"] = status

    def deferred_parts(self) -> tuple[bytes, str] | None:
        """(body, content type) while nothing has used this as a Django response; None after."""
        return self.__dict__.get("_deferred")

    def __getattr__(self, name: str) -> Any:
        # Called only for attributes not set yet: before first use, all of HttpResponse's own.
        deferred = self.__dict__.pop("_deferred", None)
        if deferred is None:
            raise AttributeError(name)
        content, content_type = deferred
        HttpResponse.__init__(self, content, content_type=content_type)  # status=None keeps status_code
        return getattr(self, name)
