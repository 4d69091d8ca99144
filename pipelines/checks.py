"""Deployment checks for what `manage.py check --deploy` cannot know about this project."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def encryption_key_is_set(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if settings.ENCRYPTION_KEY_IS_DEFAULT:
        return [
            Warning(
                "ENCRYPTION_KEY is not set: secrets are encrypted with a key derived from SECRET_KEY.",
                hint="Set ENCRYPTION_KEY to a Fernet key (python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())').",
                id="pipelines.W001",
            )
        ]
    return []
