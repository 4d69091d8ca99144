"""The admin's "Live events" page for one pipeline: a table the browser fills from the pipeline's
live WebSocket (ingestion/consumers.py). The page itself holds no events; the script
(static/pipelines/live.js) connects, and pauses, filters and shows envelopes on its own."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

EVENT_TYPES = ("track", "page", "screen", "identify", "group", "alias")


def live_events_view(model_admin: admin.ModelAdmin[Any], request: HttpRequest, object_id: str) -> HttpResponse:
    pipeline = model_admin.get_object(request, unquote(object_id))
    if pipeline is None:
        raise Http404("no such pipeline")
    if not model_admin.has_view_or_change_permission(request, pipeline):
        raise PermissionDenied
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Live events: {pipeline.name}",
        "subtitle": None,
        "object": pipeline,
        "opts": model_admin.opts,
        "module_name": str(model_admin.opts.verbose_name_plural).capitalize(),
        "socket_path": f"/ws/pipelines/{pipeline.pk}/live",
        "event_types": EVENT_TYPES,
        "is_nav_sidebar_enabled": False,  # the table and the envelope pane need the width
    }
    return TemplateResponse(request, "admin/pipelines/pipeline/live.html", context)
