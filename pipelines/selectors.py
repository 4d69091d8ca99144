"""Reads of the configuration, shaped for the key store (plain JSON-able records)."""

from __future__ import annotations

from typing import Any

from pipelines.models import AuditEntry, Pipeline, PipelineKey, Source, Status


def pipeline_record(token: str) -> dict[str, Any] | None:
    """What a request authenticated by ``token`` (a ``dk_`` key or a ``wh_`` source) needs to know.

    None means the token is unknown or revoked. Secrets stay encrypted: records travel through Redis.
    """
    if token.startswith("dk_"):
        key = PipelineKey.objects.filter(key=token, status=Status.ACTIVE).select_related("pipeline").first()
        pipeline = key.pipeline if key else None
    else:
        source = (
            Source.objects.filter(id=token, kind=Source.Kind.WEBHOOK, enabled=True).select_related("pipeline").first()
        )
        pipeline = source.pipeline if source else None
    if pipeline is None:
        return None
    return _record(pipeline)


def _record(pipeline: Pipeline) -> dict[str, Any]:
    webhooks = {}
    for source in pipeline.sources.filter(kind=Source.Kind.WEBHOOK, enabled=True).select_related("webhook"):
        hook = getattr(source, "webhook", None)
        if hook is None:
            continue
        webhooks[source.id] = {
            "scheme": hook.scheme,
            "secret": hook.secret_encrypted,
            "tolerance_seconds": hook.tolerance_seconds,
            "mapping": hook.mapping,
            "options": hook.options,
        }
    return {
        "pipeline_id": pipeline.id,
        "enabled": pipeline.enabled,
        "origins": sorted(pipeline.origins.values_list("origin", flat=True)),
        "rate_limit_rps": pipeline.rate_limit_rps,
        "dedup_enabled": pipeline.dedup_enabled,
        "cookie_domain": pipeline.cookie_domain,
        "consent_required": pipeline.consent_required,
        "ip_mode": pipeline.ip_mode,
        "signing_secrets": list(
            pipeline.signing_secrets.filter(status=Status.ACTIVE)
            .order_by("-created_at")
            .values_list("secret_encrypted", flat=True)
        ),
        "webhook_sources": webhooks,
    }


def valid_tokens() -> set[str]:
    """Every token ``pipeline_record`` answers for: active keys and enabled webhook sources.

    One query. The key store holds this set to refuse an unknown token without asking anyone."""
    # No ORDER BY (the models' default ordering): SQLite refuses one inside a compound statement.
    keys = PipelineKey.objects.filter(status=Status.ACTIVE).order_by().values_list("key", flat=True)
    sources = Source.objects.filter(kind=Source.Kind.WEBHOOK, enabled=True).order_by().values_list("id", flat=True)
    return set(keys.union(sources, all=True))


def pipeline_tokens(pipeline_id: str) -> list[str]:
    """Every token that resolves (or once resolved) to the pipeline: all its keys and webhook sources."""
    keys = PipelineKey.objects.filter(pipeline_id=pipeline_id).values_list("key", flat=True)
    sources = Source.objects.filter(pipeline_id=pipeline_id, kind=Source.Kind.WEBHOOK).values_list("id", flat=True)
    return [*keys, *sources]


def pipelines_overview() -> list[dict[str, Any]]:
    rows = []
    for p in Pipeline.objects.prefetch_related("keys", "origins", "signing_secrets", "sources"):
        rows.append(
            {
                "pipeline_id": p.id,
                "name": p.name,
                "slug": p.slug,
                "type": p.type,
                "enabled": p.enabled,
                "rate_limit_rps": p.rate_limit_rps,
                "dedup_enabled": p.dedup_enabled,
                "consent_required": p.consent_required,
                "ip_mode": p.ip_mode,
                "origins": [o.origin for o in p.origins.all()],
                "active_keys": [k.key for k in p.keys.all() if k.status == Status.ACTIVE],
                "active_signing_secrets": sum(1 for s in p.signing_secrets.all() if s.status == Status.ACTIVE),
                "active_signing_secret_hints": [s.hint for s in p.signing_secrets.all() if s.status == Status.ACTIVE],
                "webhook_sources": [s.id for s in p.sources.all() if s.kind == Source.Kind.WEBHOOK],
            }
        )
    return rows


def audit_entries(*, limit: int = 100, pipeline_id: str = "") -> list[dict[str, Any]]:
    """The newest audit entries first, as plain records (``at`` in ISO 8601, UTC)."""
    entries = AuditEntry.objects.all()
    if pipeline_id:
        entries = entries.filter(pipeline_id=pipeline_id)
    return [
        {
            "at": entry.at.isoformat(),
            "actor": entry.actor,
            "action": entry.action,
            "object_type": entry.object_type,
            "object_id": entry.object_id,
            "object": entry.object_repr,
            "pipeline_id": entry.pipeline_id,
            "changes": entry.changes,
        }
        for entry in entries[:limit]
    ]
