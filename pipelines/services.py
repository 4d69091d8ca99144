"""Every write to the configuration: used alike by the admin, management commands and tests.

Each function validates first and changes nothing when it refuses (raises ConfigError).
Gateways learn of the change through pipelines.invalidation, wired to the models' signals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from ingestion.signatures import SCHEMES
from pipelines import crypto, tokens
from pipelines.models import (
    AllowedOrigin,
    Pipeline,
    PipelineKey,
    SigningSecret,
    Source,
    Status,
    WebhookSecret,
    normalize_origin,
    validate_mapping,
    validate_webhook_secret,
)

MAX_ACTIVE_SIGNING_SECRETS = 2


class ConfigError(Exception):
    """A configuration change was refused; the message says why in one line.

    ``field`` names the setting at fault when there is one, for a form to show the error beside it.
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PipelineCreated:
    pipeline: Pipeline
    pipeline_key: str
    signing_secret: str


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(exc.messages)


def _unique_slug(name: str) -> str:
    base = slugify(name)[:180] or "pipeline"
    slug, n = base, 1
    while Pipeline.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def pipeline_validate(
    *,
    name: str,
    pipeline_type: str = Pipeline.Type.WEB,
    rate_limit_rps: int = 1000,
    ip_mode: str = Pipeline.IpMode.FULL,
) -> None:
    """The rules a pipeline's settings must meet, wherever they are entered (raises ConfigError)."""
    if not name.strip():
        raise ConfigError("a pipeline needs a name", field="name")
    if rate_limit_rps < 1:
        raise ConfigError("rate limit must be at least 1 event/s", field="rate_limit_rps")
    if pipeline_type not in Pipeline.Type.values:
        raise ConfigError(f"type must be one of {', '.join(Pipeline.Type.values)}", field="type")
    if ip_mode not in Pipeline.IpMode.values:
        raise ConfigError(f"IP mode must be one of {', '.join(Pipeline.IpMode.values)}", field="ip_mode")


@transaction.atomic
def pipeline_create(
    *,
    name: str,
    origins: Iterable[str] = (),
    pipeline_type: str = Pipeline.Type.WEB,
    rate_limit_rps: int = 1000,
    dedup_enabled: bool = True,
    cookie_domain: str = "",
    consent_required: bool = False,
    ip_mode: str = Pipeline.IpMode.FULL,
    enabled: bool = True,
) -> PipelineCreated:
    """A pipeline with its origins, first key and first signing secret (the admin's add form and
    ``create_pipeline`` both come here)."""
    pipeline_validate(name=name, pipeline_type=pipeline_type, rate_limit_rps=rate_limit_rps, ip_mode=ip_mode)
    name = name.strip()
    try:
        clean_origins = sorted({normalize_origin(o) for o in origins if o.strip()})
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc), field="origins") from exc
    pipeline = Pipeline.objects.create(
        name=name,
        slug=_unique_slug(name),
        type=pipeline_type,
        enabled=enabled,
        rate_limit_rps=rate_limit_rps,
        dedup_enabled=dedup_enabled,
        cookie_domain=cookie_domain.strip(),
        consent_required=consent_required,
        ip_mode=ip_mode,
    )
    # One create() each, not bulk_create(): the audit trail is written by model signals.
    for origin in clean_origins:
        AllowedOrigin.objects.create(pipeline=pipeline, origin=origin)
    key, secret = pipeline_provision(pipeline=pipeline)
    return PipelineCreated(pipeline=pipeline, pipeline_key=key.key, signing_secret=secret)


def pipeline_get(*, ref: str) -> Pipeline:
    """A pipeline by its id (``pip_…``) or by any of its keys (``dk_…``, active or revoked)."""
    ref = ref.strip()
    if ref.startswith("dk_"):
        return _key_by_value(ref).pipeline
    try:
        return Pipeline.objects.get(pk=ref)
    except Pipeline.DoesNotExist:
        raise ConfigError(f"no pipeline {ref}") from None


@transaction.atomic
def pipeline_provision(*, pipeline: Pipeline) -> tuple[PipelineKey, str]:
    """A new pipeline's first key and signing secret (the admin's add form calls this too)."""
    key = key_create(pipeline=pipeline)
    _, secret = secret_rotate(pipeline=pipeline)
    return key, secret


def key_create(*, pipeline: Pipeline) -> PipelineKey:
    return PipelineKey.objects.create(pipeline=pipeline)


def _key_by_value(key: str) -> PipelineKey:
    try:
        return PipelineKey.objects.select_related("pipeline").get(key=key)
    except PipelineKey.DoesNotExist:
        raise ConfigError(f"no pipeline key {tokens.redact(key)}") from None


@transaction.atomic
def key_rotate(*, key: str) -> PipelineKey:
    """A new key beside the old one, which stays active until it is revoked."""
    old = _key_by_value(key)
    if old.status != Status.ACTIVE:
        raise ConfigError(f"{tokens.redact(key)} is revoked; rotate from an active key")
    return key_create(pipeline=old.pipeline)


@transaction.atomic
def key_revoke(*, key: str) -> PipelineKey:
    found = _key_by_value(key)
    if found.status == Status.REVOKED:
        raise ConfigError(f"{tokens.redact(key)} is already revoked")
    found.status = Status.REVOKED
    found.revoked_at = timezone.now()
    found.save(update_fields=["status", "revoked_at"])
    return found


def pipeline_for_key(*, key: str) -> Pipeline:
    return _key_by_value(key).pipeline


@transaction.atomic
def secret_rotate(*, pipeline: Pipeline) -> tuple[SigningSecret, str]:
    """A new signing secret; beyond two active ones, the oldest is revoked.

    Returns the plaintext: the only time it is ever seen.
    """
    plaintext = tokens.new_signing_secret()
    created = SigningSecret.objects.create(
        pipeline=pipeline, secret_encrypted=crypto.encrypt(plaintext), hint=plaintext[-4:]
    )
    active = list(pipeline.signing_secrets.filter(status=Status.ACTIVE).order_by("-created_at", "-id"))
    for stale in active[MAX_ACTIVE_SIGNING_SECRETS:]:
        secret_revoke(secret=stale)
    return created, plaintext


@transaction.atomic
def secret_revoke_one(*, pipeline: Pipeline, hint: str = "", secret_id: int | None = None) -> SigningSecret:
    """Revoke one of the pipeline's active signing secrets, named by its hint (last four
    characters) or its id; the others stay active."""
    if bool(hint) == (secret_id is not None):
        raise ConfigError("name the secret by its hint or by its id, not both")
    candidates = pipeline.signing_secrets.select_for_update().filter(status=Status.ACTIVE)
    if secret_id is not None:
        candidates = candidates.filter(pk=secret_id)
    else:
        candidates = candidates.filter(hint=hint.removeprefix("sk_…"))
    found = list(candidates)
    label = f"hint {hint}" if hint else f"id {secret_id}"
    if not found:
        raise ConfigError(f"pipeline {pipeline.id} has no active signing secret with {label}")
    if len(found) > 1:
        raise ConfigError(f"{len(found)} active signing secrets have {label}; name one by its id")
    return secret_revoke(secret=found[0])


def secret_revoke(*, secret: SigningSecret) -> SigningSecret:
    secret.status = Status.REVOKED
    secret.revoked_at = timezone.now()
    secret.save(update_fields=["status", "revoked_at"])
    return secret


def origin_add(*, pipeline: Pipeline, origin: str) -> AllowedOrigin:
    try:
        clean = normalize_origin(origin)
        with transaction.atomic():
            return AllowedOrigin.objects.create(pipeline=pipeline, origin=clean)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc)) from exc
    except IntegrityError:
        raise ConfigError(f"{origin} is already allowed") from None


def origin_remove(*, pipeline: Pipeline, origin: str) -> None:
    try:
        clean = normalize_origin(origin)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc)) from exc
    deleted, _ = AllowedOrigin.objects.filter(pipeline=pipeline, origin=clean).delete()
    if not deleted:
        raise ConfigError(f"{origin} is not in the allowlist")


def pipeline_set_enabled(*, pipeline: Pipeline, enabled: bool) -> Pipeline:
    """A disabled pipeline's keys are refused; setting the state it already has changes nothing."""
    if pipeline.enabled != enabled:
        pipeline.enabled = enabled
        pipeline.save(update_fields=["enabled", "updated_at"])
    return pipeline


def pipeline_set_privacy(
    *, pipeline: Pipeline, consent_required: bool | None = None, ip_mode: str | None = None
) -> Pipeline:
    """Consent-required and IP mode; None leaves a setting as it is."""
    if consent_required is None and ip_mode is None:
        raise ConfigError("nothing to change: give consent-required or an IP mode")
    if ip_mode is not None and ip_mode not in Pipeline.IpMode.values:
        raise ConfigError(f"IP mode must be one of {', '.join(Pipeline.IpMode.values)}", field="ip_mode")
    if consent_required is not None:
        pipeline.consent_required = consent_required
    if ip_mode is not None:
        pipeline.ip_mode = ip_mode
    pipeline.save(update_fields=["consent_required", "ip_mode", "updated_at"])
    return pipeline


def webhook_secret_set(*, webhook: WebhookSecret, secret: str) -> WebhookSecret:
    """Store (or replace) a webhook source's secret, encrypted."""
    try:
        validate_webhook_secret(scheme=webhook.scheme, secret=secret)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc)) from exc
    webhook.secret_encrypted = crypto.encrypt(secret) if secret else ""
    webhook.hint = secret[-4:] if secret else ""
    return webhook


@transaction.atomic
def webhook_source_create(
    *,
    pipeline: Pipeline,
    scheme: str,
    secret: str = "",
    mapping: dict | None = None,
    tolerance_seconds: int = 300,
    options: dict | None = None,
    name: str = "",
) -> Source:
    if scheme not in SCHEMES:
        raise ConfigError(f"scheme must be one of {', '.join(SCHEMES)}")
    mapping = mapping or {}
    try:
        validate_mapping(mapping)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc)) from exc
    if tolerance_seconds < 1:
        raise ConfigError("tolerance must be at least 1 second")
    webhook = WebhookSecret(scheme=scheme, tolerance_seconds=tolerance_seconds, mapping=mapping, options=options or {})
    webhook_secret_set(webhook=webhook, secret=secret)
    source = Source.objects.create(pipeline=pipeline, kind=Source.Kind.WEBHOOK, name=name)
    webhook.source = source
    webhook.save()
    return source


def secrets_reencrypt() -> int:
    """Re-encrypt every stored secret under ENCRYPTION_KEY; returns how many were rewritten."""
    count = 0
    with transaction.atomic():
        for secret in SigningSecret.objects.select_for_update():
            secret.secret_encrypted = crypto.reencrypt(secret.secret_encrypted)
            secret.save(update_fields=["secret_encrypted"])
            count += 1
        for webhook in WebhookSecret.objects.select_for_update().exclude(secret_encrypted=""):
            webhook.secret_encrypted = crypto.reencrypt(webhook.secret_encrypted)
            webhook.save(update_fields=["secret_encrypted"])
            count += 1
    return count
