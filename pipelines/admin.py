"""The admin: the same service functions as the management commands, behind forms and actions.

Secrets made here (a new pipeline's signing secret, a rotated one) are shown once in the answer
to the POST that made them, and the audit trail is read-only.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join

from pipelines import services
from pipelines.live import live_events_view
from pipelines.models import (
    AllowedOrigin,
    AuditEntry,
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


class PipelineCreateForm(forms.Form):
    """The add form. Its values go to services.pipeline_create, whose refusals come back as errors
    on this form: the admin and ``create_pipeline`` share one set of rules."""

    name = forms.CharField(max_length=200)
    type = forms.ChoiceField(choices=Pipeline.Type.choices, initial=Pipeline.Type.WEB)
    enabled = forms.BooleanField(required=False, initial=True)
    origins = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Allowed browser origins, one per line, e.g. https://shop.example.com",
    )
    # No min_value here: the service's rule is the one that refuses.
    rate_limit_rps = forms.IntegerField(
        initial=1000, label="Rate limit (events/s)", help_text=Pipeline._meta.get_field("rate_limit_rps").help_text
    )
    dedup_enabled = forms.BooleanField(required=False, initial=True, label="Dedup enabled")
    cookie_domain = forms.CharField(required=False, max_length=253)
    consent_required = forms.BooleanField(
        required=False, help_text=Pipeline._meta.get_field("consent_required").help_text
    )
    ip_mode = forms.ChoiceField(
        choices=Pipeline.IpMode.choices,
        initial=Pipeline.IpMode.FULL,
        label="IP mode",
        help_text=Pipeline._meta.get_field("ip_mode").help_text,
    )

    def create(self) -> services.PipelineCreated | None:
        """The pipeline, or None with the service's refusal added to the form."""
        data = self.cleaned_data
        try:
            return services.pipeline_create(
                name=data["name"],
                origins=data["origins"].splitlines(),
                pipeline_type=data["type"],
                enabled=data["enabled"],
                rate_limit_rps=data["rate_limit_rps"],
                dedup_enabled=data["dedup_enabled"],
                cookie_domain=data["cookie_domain"],
                consent_required=data["consent_required"],
                ip_mode=data["ip_mode"],
            )
        except services.ConfigError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, str(exc))
            return None


class PipelineChangeForm(forms.ModelForm):
    class Meta:
        model = Pipeline
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            services.pipeline_validate(
                name=data.get("name", ""),
                pipeline_type=data.get("type", ""),
                rate_limit_rps=data.get("rate_limit_rps", 0),
                ip_mode=data.get("ip_mode", ""),
            )
        except services.ConfigError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, str(exc))
        return data


def shown_once_response(request: HttpRequest, *, title: str, rows: list[dict[str, str]]) -> HttpResponse:
    """Secrets shown once, in the answer to the POST that made them.

    Never through django.contrib.messages: its cookie is signed, not encrypted, so a secret there
    would sit readable in the browser (and in any proxy log of cookies) until the next page.
    """
    context = {**admin.site.each_context(request), "title": title, "rows": rows, "opts": Pipeline._meta}
    response = TemplateResponse(request, "admin/pipelines/shown_once.html", context)
    add_never_cache_headers(response)  # no-store: the back button and caches must not keep it
    return response


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    form = PipelineChangeForm
    list_display = ("name", "id", "type", "enabled", "rate_limit_rps", "dedup_enabled", "consent_required", "ip_mode")
    list_filter = ("type", "enabled", "consent_required", "ip_mode")
    search_fields = ("name", "slug", "id", "keys__key")
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [AllowedOriginInline, PipelineKeyInline, SigningSecretInline]
    actions = ["add_key", "rotate_signing_secret"]

    def get_urls(self) -> list[URLPattern]:
        # "Live events", linked from the change page (templates/admin/pipelines/pipeline/change_form.html).
        view = self.admin_site.admin_view(lambda request, object_id: live_events_view(self, request, object_id))
        return [path("<path:object_id>/live/", view, name="pipelines_pipeline_live"), *super().get_urls()]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # admin_view around this already checks staff status and CSRF and sets never-cache.
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PipelineCreateForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            created = form.create()
            if created is not None:
                self.log_addition(request, created.pipeline, [{"added": {}}])
                return shown_once_response(
                    request,
                    title=f"Pipeline {created.pipeline.name} created",
                    rows=[_shown_once_row(created.pipeline, key=created.pipeline_key, secret=created.signing_secret)],
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Add pipeline",
            "form": form,
            "opts": self.opts,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/pipelines/pipeline/create.html", context)

    @admin.action(description="Add a pipeline key (rotation: revoke the old one afterwards)")
    def add_key(self, request: HttpRequest, queryset: QuerySet[Pipeline]) -> None:
        # A key is a public identifier (it ships in web pages), so a message is fine.
        for pipeline in queryset:
            key = services.key_create(pipeline=pipeline)
            messages.success(request, f"{pipeline.name}: new key {key.key}")

    @admin.action(description="Rotate the signing secret (keeps the newest two active)")
    def rotate_signing_secret(self, request: HttpRequest, queryset: QuerySet[Pipeline]) -> HttpResponse:
        rows = []
        for pipeline in queryset:
            _, secret = services.secret_rotate(pipeline=pipeline)
            rows.append(_shown_once_row(pipeline, secret=secret))
        return shown_once_response(request, title="New signing secrets", rows=rows)


def _shown_once_row(pipeline: Pipeline, *, secret: str, key: str = "") -> dict[str, str]:
    return {
        "pipeline": pipeline.name,
        "url": reverse("admin:pipelines_pipeline_change", args=[pipeline.pk]),
        "key": key,
        "secret": secret,
    }


@admin.register(SigningSecret)
class SigningSecretAdmin(admin.ModelAdmin):
    list_display = ("__str__", "pipeline", "status", "created_at", "revoked_at")
    list_filter = ("status",)
    search_fields = ("pipeline__name", "pipeline__id", "hint")
    fields = ("id", "pipeline", "hint", "status", "created_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # secrets are made by rotating, so the plaintext is shown once

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke the selected signing secrets")
    def revoke(self, request: HttpRequest, queryset: QuerySet[SigningSecret]) -> None:
        for secret in queryset.filter(status=Status.ACTIVE).select_related("pipeline"):
            services.secret_revoke_one(pipeline=secret.pipeline, secret_id=secret.pk)
            messages.success(request, f"{secret.pipeline.name}: revoked {secret}")


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


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: entries are written by pipelines.audit and never changed or deleted here."""

    list_display = ("at", "actor", "action", "object_type", "object_repr", "pipeline_id")
    list_filter = ("action", "object_type")
    search_fields = ("actor", "object_id", "object_repr", "pipeline_id")
    date_hierarchy = "at"
    fields = ("at", "actor", "action", "object_type", "object_id", "object_repr", "pipeline_id", "changes_table")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="changes (before → after)")
    def changes_table(self, entry: AuditEntry) -> str:
        return format_html(
            "<table><tr><th>field</th><th>before</th><th>after</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                ((field, json.dumps(before), json.dumps(after)) for field, (before, after) in entry.changes.items()),
            ),
        )
