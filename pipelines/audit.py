"""The audit trail: every change to the configuration is recorded, whoever makes it and however.

Model signals on the configuration models write an ``AuditEntry`` in the same transaction as the
change, so the admin's forms and actions, the management commands and a Python shell are all
covered without each caller remembering to. ``QuerySet.update()`` and ``bulk_create()`` send no
signals: the services use neither for configuration rows.

Who made the change comes from a context variable: ``AuditActorMiddleware`` sets the staff user
for admin requests, ``acting_as(command_actor(name))`` wraps the management commands, and anything
else is ``shell:<OS user>`` (or ``command:<name> (<OS user>)`` when run as ``manage.py <name>``).
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save
from django.http import HttpRequest, HttpResponse

from pipelines.models import AllowedOrigin, AuditEntry, Pipeline, PipelineKey, SigningSecret, Source, WebhookSecret

AUDITED_MODELS: tuple[type[models.Model], ...] = (
    Pipeline,
    PipelineKey,
    SigningSecret,
    AllowedOrigin,
    Source,
    WebhookSecret,
)
REDACTED = "[redacted]"
# Encrypted secrets: that one changed is recorded, never its value (ciphertext is still a secret's
# stand-in, and a later key compromise would open it). Keys and hints are identifiers, shown as-is.
SECRET_FIELDS = frozenset({"secret_encrypted"})
# Touched by every save; recording it would make every entry look like a change.
IGNORED_FIELDS = frozenset({"updated_at"})
_BEFORE_ATTR = "_sg_audit_before"

Actor = str | Callable[[], str]
_actor: ContextVar[Actor | None] = ContextVar("sg_audit_actor", default=None)


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's arbitrary uid has no name
        return f"uid {os.getuid()}"


def command_actor(name: str) -> str:
    return f"command:{name} ({os_user()})"


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    """Attribute the changes made inside the block to ``actor`` (a string, or a callable evaluated
    when an entry is written, so the admin looks its user up only when something changes)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def _default_actor() -> str:
    argv = sys.argv
    if len(argv) > 1 and os.path.basename(argv[0]) in {"manage.py", "django-admin"} and argv[1] != "shell":
        return command_actor(argv[1])
    return f"shell:{os_user()}"


def current_actor() -> str:
    actor = _actor.get()
    if actor is None:
        return _default_actor()
    return actor() if callable(actor) else actor


class AuditActorMiddleware:
    """Admin requests: changes are the logged-in staff user's (``admin:<username>``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with acting_as(lambda: _staff_actor(request)):
            return self.get_response(request)


def _staff_actor(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"admin:{user.get_username()}"
    return "admin:anonymous"


# -- recording ------------------------------------------------------------------------------------


def _values(instance: models.Model) -> dict[str, Any]:
    raw = {
        field.name: getattr(instance, field.attname)
        for field in instance._meta.concrete_fields
        if field.name not in IGNORED_FIELDS
    }
    # Datetimes and the like as the JSON column will store them, so before/after compare alike.
    return json.loads(json.dumps(raw, cls=DjangoJSONEncoder))


def _redact(field: str, value: Any) -> Any:
    if field in SECRET_FIELDS and value:
        return REDACTED
    return value


def _changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, list[Any]]:
    fields = list((after or before or {}).keys())
    changes = {}
    for field in fields:
        old = before.get(field) if before is not None else None
        new = after.get(field) if after is not None else None
        if before is not None and after is not None and old == new:
            continue
        changes[field] = [_redact(field, old), _redact(field, new)]
    return changes


def _pipeline_id(instance: models.Model) -> str:
    if isinstance(instance, Pipeline):
        return str(instance.pk)
    if isinstance(instance, WebhookSecret):
        pipeline_id = Source.objects.filter(pk=instance.source_id).values_list("pipeline_id", flat=True).first()
        return pipeline_id or ""
    return str(getattr(instance, "pipeline_id", "") or "")


def _record(instance: models.Model, action: str, changes: dict[str, list[Any]]) -> None:
    AuditEntry.objects.create(
        actor=current_actor()[:200],
        action=action,
        object_type=str(instance._meta.verbose_name),
        object_id=str(instance.pk),
        object_repr=str(instance)[:300],
        pipeline_id=_pipeline_id(instance),
        changes=changes,
    )


def _before_save(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    before = None
    if not instance._state.adding and instance.pk is not None:
        old = sender._base_manager.filter(pk=instance.pk).first()
        before = _values(old) if old is not None else None
    setattr(instance, _BEFORE_ATTR, before)


def _after_save(sender: type[models.Model], instance: models.Model, created: bool, **kwargs: Any) -> None:
    if kwargs.get("raw"):  # loaddata of fixtures: not a change anyone made
        return
    before = None if created else getattr(instance, _BEFORE_ATTR, None)
    changes = _changes(before, _values(instance))
    if before is not None and not changes:
        return  # saved without a change (the admin's "Save" on an untouched form)
    _record(instance, AuditEntry.Action.CREATE if before is None else AuditEntry.Action.UPDATE, changes)


def _after_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    _record(instance, AuditEntry.Action.DELETE, _changes(_values(instance), None))


def connect() -> None:
    for model in AUDITED_MODELS:
        pre_save.connect(_before_save, sender=model, dispatch_uid=f"sg-audit-pre-{model.__name__}")
        post_save.connect(_after_save, sender=model, dispatch_uid=f"sg-audit-save-{model.__name__}")
        post_delete.connect(_after_delete, sender=model, dispatch_uid=f"sg-audit-delete-{model.__name__}")
