from __future__ import annotations

from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "pipelines"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from pipelines import audit, checks, signals  # noqa: F401

        signals.connect()
        audit.connect()
