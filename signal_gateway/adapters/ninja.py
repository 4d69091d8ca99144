"""django-ninja, adapted: the response ninja makes for every request is built only when used.

Before every view, ninja's ``Operation.run`` calls ``NinjaAPI.create_temporal_response`` for a
response a view may set a status, headers or cookies on (or that ninja fills from what a view
returns). The ingestion views return their own response and never touch it, so it is a
``DeferredResponse`` (signal_gateway.adapters.django): a private response per request, as ninja's
is, that any kind of view can use, and that costs an empty object when unused.

What this relies on, checked by tests/test_adapters.py against the pinned django-ninja: ninja calls
``create_temporal_response`` once per request, and returns a view's own HttpResponse untouched.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI

from signal_gateway.adapters.django import DeferredResponse


class DeferredResponseAPI(NinjaAPI):
    """A NinjaAPI whose per-request response is a DeferredResponse."""

    _content_type = ""

    def create_temporal_response(self, request: HttpRequest) -> HttpResponse:
        if not self._content_type:
            self._content_type = self.get_content_type()
        return DeferredResponse(content_type=self._content_type)
