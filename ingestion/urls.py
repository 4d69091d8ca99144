from __future__ import annotations

from ingestion.api import api

urlpatterns = [*api.urls[0]]
