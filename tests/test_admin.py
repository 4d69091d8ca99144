"""The admin as an operator uses it: a new pipeline shows its secret once; webhook secrets stay hidden."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from pipelines.models import Pipeline, PipelineKey, SigningSecret, Source, WebhookSecret

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = User.objects.create_superuser("ops", "ops@example.com", "correct horse battery staple")
    client = Client()
    client.force_login(user)
    return client


def test_adding_a_pipeline_in_the_admin_shows_its_key_and_secret_once(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/pipelines/pipeline/add/",
        {
            "name": "Shop",
            "slug": "shop",
            "type": "web",
            "enabled": "on",
            "rate_limit_rps": "1000",
            "dedup_enabled": "on",
            "cookie_domain": "",
            "origins-TOTAL_FORMS": "1",
            "origins-INITIAL_FORMS": "0",
            "origins-0-origin": "https://shop.example.com",
            "keys-TOTAL_FORMS": "0",
            "keys-INITIAL_FORMS": "0",
            "signing_secrets-TOTAL_FORMS": "0",
            "signing_secrets-INITIAL_FORMS": "0",
        },
        follow=True,
        secure=True,
    )

    pipeline = Pipeline.objects.get(slug="shop")
    key = PipelineKey.objects.get(pipeline=pipeline)
    secret = SigningSecret.objects.get(pipeline=pipeline)
    page = response.content.decode()
    assert response.status_code == 200
    assert key.key in page
    shown = page.split("Signing secret ", 1)[1].split(" ", 1)[0]
    assert shown.startswith("sk_") and shown.endswith(secret.hint)
    assert list(pipeline.origins.values_list("origin", flat=True)) == ["https://shop.example.com"]
    again = admin_client.get(f"/admin/pipelines/pipeline/{pipeline.pk}/change/", secure=True).content.decode()
    assert shown not in again


def test_a_webhook_secret_entered_in_the_admin_is_stored_encrypted_and_never_rendered(admin_client: Client) -> None:
    pipeline = Pipeline.objects.create(name="Hooks", slug="hooks")

    response = admin_client.post(
        "/admin/pipelines/source/add/",
        {
            "pipeline": pipeline.pk,
            "kind": "webhook",
            "name": "GitHub",
            "enabled": "on",
            "webhook-TOTAL_FORMS": "1",
            "webhook-INITIAL_FORMS": "0",
            "webhook-MIN_NUM_FORMS": "0",
            "webhook-MAX_NUM_FORMS": "1",
            "webhook-0-scheme": "github",
            "webhook-0-secret": "gh-admin-secret",
            "webhook-0-tolerance_seconds": "300",
            "webhook-0-mapping": '{"event": "action"}',
            "webhook-0-options": "{}",
        },
        secure=True,
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    source = Source.objects.get(pipeline=pipeline)
    hook = WebhookSecret.objects.get(source=source)
    assert source.id.startswith("wh_")
    assert hook.secret_encrypted and "gh-admin-secret" not in hook.secret_encrypted
    change_page = admin_client.get(f"/admin/pipelines/source/{source.pk}/change/", secure=True).content.decode()
    assert "gh-admin-secret" not in change_page


def test_a_webhook_mapping_that_names_no_envelope_field_is_refused_in_the_admin(admin_client: Client) -> None:
    pipeline = Pipeline.objects.create(name="Hooks", slug="hooks-bad")

    response = admin_client.post(
        "/admin/pipelines/source/add/",
        {
            "pipeline": pipeline.pk,
            "kind": "webhook",
            "name": "Bad",
            "enabled": "on",
            "webhook-TOTAL_FORMS": "1",
            "webhook-INITIAL_FORMS": "0",
            "webhook-MIN_NUM_FORMS": "0",
            "webhook-MAX_NUM_FORMS": "1",
            "webhook-0-scheme": "github",
            "webhook-0-secret": "s",
            "webhook-0-tolerance_seconds": "300",
            "webhook-0-mapping": '{"pipelineId": "data.id"}',
            "webhook-0-options": "{}",
        },
        secure=True,
    )

    assert response.status_code == 200
    assert "not an envelope field" in response.content.decode()
    assert not Source.objects.filter(pipeline=pipeline).exists()
