"""System checks for the settings this project depends on, and the gateway's refusal to start on them.

``SECRET_KEY``, ``ENCRYPTION_KEY`` and ``ENCRYPTION_KEY_PREVIOUS`` are read once at start. A bad
one used to start cleanly and then fail every request that touched a secret, so they are checked
here: ``manage.py check`` (and every command) reports an Error naming the variable in one line,
and ``refuse_to_start_with_bad_settings()``, called by ``signal_gateway.asgi``, exits the gateway.
"""

from __future__ import annotations

import binascii
import re
import sys
from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

# Django itself only insists on a non-empty SECRET_KEY; one this short or this repetitive signs
# admin sessions and CSRF tokens that can be guessed.
MIN_SECRET_KEY_LENGTH = 32
MIN_SECRET_KEY_UNIQUE_CHARACTERS = 5
# What Fernet.generate_key() prints. Fernet() alone would also take keys with stray characters,
# which base64 decoding silently skips.
_FERNET_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{43}=$")
FERNET_KEY_HINT = (
    "a Fernet key is 32 random bytes in url-safe base64 (44 characters ending in '='): "
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def _fernet_key_problem(value: str) -> str | None:
    try:
        if not _FERNET_KEY_RE.match(value):
            raise ValueError(value)
        Fernet(value.encode())
    except (ValueError, binascii.Error, TypeError):
        return f"is not a Fernet key ({len(value)} characters); {FERNET_KEY_HINT}"
    return None


def secret_settings_errors() -> list[Error]:
    """What is wrong with the secret-bearing settings; empty when they are usable."""
    errors = []
    secret_key = settings.SECRET_KEY
    if len(secret_key) < MIN_SECRET_KEY_LENGTH or len(set(secret_key)) < MIN_SECRET_KEY_UNIQUE_CHARACTERS:
        errors.append(
            Error(
                f"SECRET_KEY is too weak ({len(secret_key)} characters, {len(set(secret_key))} distinct); "
                f"use at least {MIN_SECRET_KEY_LENGTH} random characters",
                id="pipelines.E001",
            )
        )
    # The demo derives ENCRYPTION_KEY from SECRET_KEY, and that derived key is always well-formed.
    if not settings.ENCRYPTION_KEY_IS_DEFAULT:
        problem = _fernet_key_problem(settings.ENCRYPTION_KEY)
        if problem:
            errors.append(Error(f"ENCRYPTION_KEY {problem}", id="pipelines.E002"))
    if settings.ENCRYPTION_KEY_PREVIOUS:
        problem = _fernet_key_problem(settings.ENCRYPTION_KEY_PREVIOUS)
        if problem:
            errors.append(Error(f"ENCRYPTION_KEY_PREVIOUS {problem}", id="pipelines.E003"))
    return errors


@register(Tags.security)
def secret_settings_are_usable(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    return list(secret_settings_errors())


def refuse_to_start_with_bad_settings() -> None:
    """Exit with one line per problem instead of serving a gateway that answers 500 to everything."""
    errors = secret_settings_errors()
    if errors:
        for error in errors:
            sys.stderr.write(f"signal gateway refuses to start: {error.msg} ({error.id})\n")
        sys.stderr.flush()
        raise SystemExit(2)


@register(Tags.security, deploy=True)
def encryption_key_is_set(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.ENCRYPTION_KEY_IS_DEFAULT:
        return [
            Warning(
                "ENCRYPTION_KEY is not set: secrets are encrypted with a key derived from SECRET_KEY.",
                hint="Set ENCRYPTION_KEY to a Fernet key (python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())').",
                id="pipelines.W001",
            )
        ]
    return []
