"""The admin: the same service functions as the management commands, behind forms and actions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import URLPattern, path

from pipelines import services
from pipelines.live import live_events_view
from pipelines.models import (
    AllowedOrigin,
    Pipeline,
    PipelineKey,
    SigningSecret,
    Source,
    Status,
    WebhookSecret,
    validate_webhook_secret,
)


class AllowedOriginInline(admin.TabularInline):
    model = AllowedOrigin
    extra = 1


class PipelineKeyInline(admin.TabularInline):
    model = PipelineKey
    extra = 0
    can_delete = False
    fields = ("key", "status", "created_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SigningSecretInline(admin.TabularInline):
    model = SigningSecret
    extra = 0
    can_delete = False
    fields = ("hint", "status", "created_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "type", "enabled", "rate_limit_rps", "dedup_enabled")
    list_filter = ("type", "enabled")
    search_fields = ("name", "slug", "id", "keys__key")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [AllowedOriginInline, PipelineKeyInline, SigningSecretInline]
    actions = ["add_key", "rotate_signing_secret"]

    def get_urls(self) -> list[URLPattern]:
        # "Live events", linked from the change page (templates/admin/pipelines/pipeline/change_form.html).
        view = self.admin_site.admin_view(lambda request, object_id: live_events_view(self, request, object_id))
        return [path("<path:object_id>/live/", view, name="pipelines_pipeline_live"), *super().get_urls()]

    def save_model(self, request: HttpRequest, obj: Pipeline, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            key, secret = services.pipeline_provision(pipeline=obj)
            messages.warning(
                request,
                f"Pipeline key {key.key}. Signing secret {secret} — copy it now, it is not shown again.",
            )

    @admin.action(description="Add a pipeline key (rotation: revoke the old one afterwards)")
    def add_key(self, request: HttpRequest, queryset: QuerySet[Pipeline]) -> None:
        for pipeline in queryset:
            key = services.key_create(pipeline=pipeline)
            messages.success(request, f"{pipeline.name}: new key {key.key}")

    @admin.action(description="Rotate the signing secret (keeps the newest two active)")
    def rotate_signing_secret(self, request: HttpRequest, queryset: QuerySet[Pipeline]) -> None:
        for pipeline in queryset:
            _, secret = services.secret_rotate(pipeline=pipeline)
            messages.warning(request, f"{pipeline.name}: signing secret {secret} — copy it now, it is not shown again.")


@admin.register(PipelineKey)
class PipelineKeyAdmin(admin.ModelAdmin):
    list_display = ("key", "pipeline", "status", "created_at", "revoked_at")
    list_filter = ("status",)
    search_fields = ("key", "pipeline__name")
    readonly_fields = ("key", "pipeline", "status", "created_at", "revoked_at")
    actions = ["revoke", "rotate"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[PipelineKey]) -> None:
        for key in queryset.filter(status=Status.ACTIVE):
            services.key_revoke(key=key.key)
            messages.success(request, f"revoked {key.key}")

    @admin.action(description="Rotate: add a new key beside each selected one")
    def rotate(self, request: HttpRequest, queryset: QuerySet[PipelineKey]) -> None:
        for key in queryset:
            try:
                new = services.key_rotate(key=key.key)
            except services.ConfigError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"new key {new.key} beside {key.key}")


class WebhookSecretForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the stored secret.",
    )

    class Meta:
        model = WebhookSecret
        fields = ("scheme", "secret", "tolerance_seconds", "mapping", "options")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        secret, scheme = data.get("secret") or "", data.get("scheme")
        if scheme and (secret or not self.instance.secret_encrypted):
            try:
                validate_webhook_secret(scheme=scheme, secret=secret)
            except ValidationError as exc:
                raise forms.ValidationError(exc.messages) from exc
        return data

    def save(self, commit: bool = True) -> WebhookSecret:
        webhook = super().save(commit=False)
        if self.cleaned_data.get("secret"):
            services.webhook_secret_set(webhook=webhook, secret=self.cleaned_data["secret"])
        if commit:
            webhook.save()
        return webhook


class WebhookSecretInline(admin.StackedInline):
    model = WebhookSecret
    form = WebhookSecretForm
    can_delete = False
    readonly_fields = ("hint",)


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("id", "pipeline", "kind", "name", "enabled")
    list_filter = ("kind", "enabled")
    search_fields = ("id", "name", "pipeline__name")
    readonly_fields = ("id", "created_at")
    inlines = [WebhookSecretInline]
