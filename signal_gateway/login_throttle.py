"""The admin's login throttle: what django-axes needs from this project.

django-axes counts failed logins per client address and refuses that address for a cool-off past
the limit (settings: ``AXES_*``, from ``ADMIN_LOGIN_FAILURE_LIMIT`` and
``ADMIN_LOGIN_COOLOFF_MINUTES``). Two adaptations live here, each tested in
tests/test_admin_login_throttle.py so an upgrade that changes the calls fails loudly:

- ``client_ip``: the address as the gateway sees it everywhere else (``X-Forwarded-For`` believed
  only from ``TRUSTED_PROXIES``); axes would otherwise take the proxy's own address, and lock out
  every operator behind it at once.
- ``throttled_response``: the refusal as a 429 with ``Retry-After`` in the admin's look.
"""

from __future__ import annotations

from typing import Any

from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from ingestion.client import client_ip as _gateway_client_ip


def client_ip(request: HttpRequest) -> str | None:
    return _gateway_client_ip(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR", ""))


def throttled_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else 0
    response = TemplateResponse(
        request,
        "admin/login_throttled.html",
        {
            "title": "Too many failed logins",
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "cool_off_minutes": max(1, round(seconds / 60)),
        },
        status=429,
    )
    if seconds:
        response["Retry-After"] = str(seconds)
    return response.render()
