"""Configuration the gateway authenticates against: pipelines and everything hanging off them."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from ingestion import webhook_mapping
from ingestion.signatures import SCHEMES, secret_problem
from pipelines import tokens


class Status(models.TextChoices):
    ACTIVE = "active", "active"
    REVOKED = "revoked", "revoked"


class Pipeline(models.Model):
    class Type(models.TextChoices):
        WEB = "web", "web"
        APP = "app", "app"
        SERVER = "server", "server"

    class IpMode(models.TextChoices):
        FULL = "full", "full: keep the address"
        TRUNCATE = "truncate", "truncate: IPv4 /24, IPv6 /48"
        DROP = "drop", "drop: leave context.ip out"

    id = models.CharField(primary_key=True, max_length=40, default=tokens.new_pipeline_id, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.WEB)
    enabled = models.BooleanField(default=True)
    rate_limit_rps = models.PositiveIntegerField(
        default=1000, help_text="Events per second, across all gateway processes."
    )
    dedup_enabled = models.BooleanField(default=True, help_text="Drop a messageId seen in the last 24 hours.")
    cookie_domain = models.CharField(max_length=253, blank=True, help_text="Overrides COOKIE_DOMAIN for this pipeline.")
    consent_required = models.BooleanField(
        default=False,
        help_text="Treat missing consent as denied: only the strictly necessary cookie until the page sends consent.",
    )
    ip_mode = models.CharField(
        max_length=10,
        choices=IpMode.choices,
        default=IpMode.FULL,
        help_text="What happens to the client's IP address before the event is published.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class PipelineKey(models.Model):
    key = models.CharField(max_length=80, unique=True, default=tokens.new_pipeline_key, editable=False)
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="keys")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.key


class SigningSecret(models.Model):
    """An HMAC secret for server-side calls; the plaintext is shown once and stored encrypted."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="signing_secrets")
    secret_encrypted = models.TextField(editable=False)
    hint = models.CharField(max_length=16, editable=False, help_text="Last characters, to tell secrets apart.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"sk_…{self.hint} ({self.status})"


class Source(models.Model):
    class Kind(models.TextChoices):
        BROWSER = "browser", "browser"
        SERVER = "server", "server"
        BATCH = "batch", "batch"
        PIXEL = "pixel", "pixel"
        WEBHOOK = "webhook", "webhook"

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="sources")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["pipeline", "kind", "created_at"]

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if not self.id:
            self.id = tokens.new_source_id(self.kind)
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.kind} {self.name or self.id}"


def normalize_origin(value: str) -> str:
    """``https://Shop.Example.com:443/`` -> ``https://shop.example.com``; raises ValidationError."""
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError(f"{value!r} is not an origin such as https://shop.example.com")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
        raise ValidationError(f"{value!r} has more than scheme, host and port")
    host = parts.hostname.lower()
    default_port = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"{value!r} has an invalid port") from exc
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


class AllowedOrigin(models.Model):
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="origins")
    origin = models.CharField(max_length=300, help_text="Scheme, host and port, e.g. https://shop.example.com")

    class Meta:
        ordering = ["origin"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "origin"], name="unique_origin_per_pipeline")]

    def clean(self) -> None:
        self.origin = normalize_origin(self.origin)

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.origin = normalize_origin(self.origin)
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return self.origin


def validate_mapping(mapping: object) -> None:
    """The model's validator for a webhook source's field mapping (ingestion.webhook_mapping owns the rules)."""
    try:
        webhook_mapping.validate_mapping(mapping)
    except webhook_mapping.MappingInvalid as exc:
        raise ValidationError(str(exc)) from None


class WebhookSecret(models.Model):
    source = models.OneToOneField(Source, on_delete=models.CASCADE, primary_key=True, related_name="webhook")
    # The choices are the verifier registry's: a scheme exists once it can be verified.
    scheme = models.CharField(max_length=20, choices=[(name, scheme.label) for name, scheme in SCHEMES.items()])
    secret_encrypted = models.TextField(blank=True, editable=False)
    hint = models.CharField(max_length=16, blank=True, editable=False)
    tolerance_seconds = models.PositiveIntegerField(default=300)
    mapping = models.JSONField(default=dict, blank=True, validators=[validate_mapping])
    # Scheme options: generic-hmac {"header", "encoding": hex|base64, "prefix"}; shared-secret {"header"}.
    options = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.scheme} for {self.source_id}"


def validate_webhook_secret(*, scheme: str, secret: str) -> None:
    problem = secret_problem(scheme, secret)
    if problem:
        raise ValidationError(problem)


class AuditEntry(models.Model):
    """One configuration change: who, what, to which object, the fields before and after, and when.

    Written by pipelines.audit from model signals, so the admin, its actions, commands and a shell
    are all recorded. Secret fields appear only as "[redacted]". Entries are never edited.
    """

    class Action(models.TextChoices):
        CREATE = "create", "create"
        UPDATE = "update", "update"
        DELETE = "delete", "delete"

    at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    actor = models.CharField(
        max_length=200, editable=False, help_text="admin:USERNAME, command:NAME (OS user) or shell:OS_USER"
    )
    action = models.CharField(max_length=10, choices=Action.choices, editable=False)
    object_type = models.CharField(max_length=40, editable=False)
    object_id = models.CharField(max_length=80, editable=False)
    object_repr = models.CharField(max_length=300, editable=False)
    pipeline_id = models.CharField(max_length=40, blank=True, db_index=True, editable=False)
    # {"field": [before, after]}: only the fields that changed; None stands for "did not exist".
    changes = models.JSONField(default=dict, editable=False)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if self.pk is not None:
            raise ValueError("audit entries are never changed")
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_type} {self.object_id}"
