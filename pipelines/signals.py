"""Any saved or deleted configuration row, from the admin, a command or a shell, reaches the gateways."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from pipelines.invalidation import pipeline_changed
from pipelines.models import AllowedOrigin, Pipeline, PipelineKey, SigningSecret, Source, WebhookSecret


def _on_change(sender: type, instance: Any, **kwargs: Any) -> None:
    if isinstance(instance, Pipeline):
        pipeline_changed(instance.pk)
    elif isinstance(instance, PipelineKey):
        pipeline_changed(instance.pipeline_id, [instance.key])
    elif isinstance(instance, Source):
        pipeline_changed(instance.pipeline_id, [instance.pk])
    elif isinstance(instance, WebhookSecret):
        source = Source.objects.filter(pk=instance.source_id).values_list("pipeline_id", flat=True).first()
        if source:
            pipeline_changed(source, [instance.source_id])
    else:
        pipeline_changed(instance.pipeline_id)


def connect() -> None:
    for model in (Pipeline, PipelineKey, SigningSecret, Source, AllowedOrigin, WebhookSecret):
        post_save.connect(_on_change, sender=model, dispatch_uid=f"sg-invalidate-save-{model.__name__}")
        post_delete.connect(_on_change, sender=model, dispatch_uid=f"sg-invalidate-delete-{model.__name__}")
