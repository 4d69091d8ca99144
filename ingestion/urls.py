"""The ingestion API's URLs, under ninja's namespace (its OpenAPI document reverses them by name)."""

from __future__ import annotations

from django.urls import path

from ingestion.api import api

urlpatterns = [path("", api.urls)]
