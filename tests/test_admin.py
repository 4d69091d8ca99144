"""The admin as an operator uses it: a new pipeline shows its secret once, in the page and in no
cookie; the same rules as the commands; webhook secrets stay hidden."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.contrib.messages.storage.cookie import CookieStorage
from django.http import HttpResponse
from django.test import Client, RequestFactory

from pipelines import services
from pipelines.models import Pipeline, PipelineKey, SigningSecret, Source, WebhookSecret

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = User.objects.create_superuser("ops", "ops@example.com", "correct horse battery staple")
    client = Client()
    client.force_login(user)
    return client


def add_pipeline_form(**overrides: str) -> dict[str, str]:
    form = {
        "name": "Shop",
        "type": "web",
        "enabled": "on",
        "origins": "https://shop.example.com\nhttps://www.shop.example.com",
        "rate_limit_rps": "1000",
        "dedup_enabled": "on",
        "cookie_domain": "",
        "ip_mode": "full",
    }
    form.update(overrides)
    return form


def cookies_seen_by_browser(client: Client, response: HttpResponse) -> str:
    """Every cookie value the browser now holds or was just sent, decoded where Django signs them."""
    values = [morsel.value for morsel in [*response.cookies.values(), *client.cookies.values()]]
    request = RequestFactory().get("/")
    request.COOKIES = {name: morsel.value for name, morsel in client.cookies.items()}
    decoded = CookieStorage(request)._decode(request.COOKIES.get(CookieStorage.cookie_name, "")) or []
    return " ".join([*values, *(str(message) for message in decoded)])


def test_adding_a_pipeline_in_the_admin_shows_its_key_and_secret_once_in_the_page(admin_client: Client) -> None:
    # When an operator adds a pipeline
    response = admin_client.post("/admin/pipelines/pipeline/add/", add_pipeline_form(), secure=True)

    # Then the answer to that POST is the page showing the key and the secret, not to be cached
    pipeline = Pipeline.objects.get(name="Shop")
    key = PipelineKey.objects.get(pipeline=pipeline)
    secret = SigningSecret.objects.get(pipeline=pipeline)
    page = response.content.decode()
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert key.key in page
    shown = page.split('class="signing-secret">', 1)[1].split("<", 1)[0]
    assert shown.startswith("sk_") and shown.endswith(secret.hint)
    assert sorted(pipeline.origins.values_list("origin", flat=True)) == [
        "https://shop.example.com",
        "https://www.shop.example.com",
    ]
    # And the secret travels in no cookie and no session, and is not shown again
    assert shown not in cookies_seen_by_browser(admin_client, response)
    assert shown not in str(dict(admin_client.session.items()))
    again = admin_client.get(f"/admin/pipelines/pipeline/{pipeline.pk}/change/", secure=True).content.decode()
    assert shown not in again


def test_a_rate_limit_of_zero_is_refused_in_the_admin_as_create_pipeline_refuses_it(admin_client: Client) -> None:
    # When an operator adds a pipeline with a rate limit of 0
    response = admin_client.post(
        "/admin/pipelines/pipeline/add/", add_pipeline_form(name="Zero", rate_limit_rps="0"), secure=True
    )

    # Then the form comes back with the service's own refusal beside the field, and nothing exists
    assert response.status_code == 200
    assert "rate limit must be at least 1 event/s" in response.content.decode()
    assert not Pipeline.objects.filter(name="Zero").exists()


def test_an_origin_that_is_not_an_origin_is_refused_in_the_admin_add_form(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/pipelines/pipeline/add/", add_pipeline_form(name="Bad", origins="ftp://nope"), secure=True
    )

    assert response.status_code == 200
    assert "is not an origin such as https://shop.example.com" in response.content.decode()
    assert not Pipeline.objects.filter(name="Bad").exists()


def test_a_rate_limit_of_zero_is_refused_when_a_pipeline_is_changed_in_the_admin(admin_client: Client) -> None:
    pipeline = services.pipeline_create(name="Editable").pipeline
    form = {
        "name": "Editable",
        "slug": pipeline.slug,
        "type": "web",
        "enabled": "on",
        "rate_limit_rps": "0",
        "dedup_enabled": "on",
        "cookie_domain": "",
        "ip_mode": "full",
        **empty_inlines(),
    }

    response = admin_client.post(f"/admin/pipelines/pipeline/{pipeline.pk}/change/", form, secure=True)

    assert response.status_code == 200
    assert "rate limit must be at least 1 event/s" in response.content.decode()
    pipeline.refresh_from_db()
    assert pipeline.rate_limit_rps == 1000


def test_consent_required_and_ip_mode_are_set_when_a_pipeline_is_added_in_the_admin(admin_client: Client) -> None:
    admin_client.post(
        "/admin/pipelines/pipeline/add/",
        add_pipeline_form(name="Private", consent_required="on", ip_mode="truncate"),
        secure=True,
    )

    pipeline = Pipeline.objects.get(name="Private")
    assert (pipeline.consent_required, pipeline.ip_mode) == (True, "truncate")


def test_rotating_a_secret_in_the_admin_shows_it_in_the_page_and_not_in_the_messages_cookie(
    admin_client: Client,
) -> None:
    # Given a pipeline
    pipeline = services.pipeline_create(name="Rotated").pipeline

    # When an operator runs the rotate action on it
    response = admin_client.post(
        "/admin/pipelines/pipeline/",
        {"action": "rotate_signing_secret", "_selected_action": [pipeline.pk]},
        secure=True,
    )

    # Then the new secret is in the answer, uncached, and in no cookie
    newest = SigningSecret.objects.filter(pipeline=pipeline).order_by("-created_at", "-id").first()
    assert newest is not None
    page = response.content.decode()
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    shown = page.split('class="signing-secret">', 1)[1].split("<", 1)[0]
    assert shown.startswith("sk_") and shown.endswith(newest.hint)
    assert shown not in cookies_seen_by_browser(admin_client, response)
    assert shown not in admin_client.get("/admin/pipelines/pipeline/", secure=True).content.decode()


def test_one_signing_secret_can_be_revoked_in_the_admin(admin_client: Client) -> None:
    # Given a pipeline with two active signing secrets
    pipeline = services.pipeline_create(name="Two secrets").pipeline
    services.secret_rotate(pipeline=pipeline)
    older = SigningSecret.objects.filter(pipeline=pipeline).order_by("created_at", "id").first()
    assert older is not None

    # When an operator revokes the older one
    response = admin_client.post(
        "/admin/pipelines/signingsecret/",
        {"action": "revoke", "_selected_action": [older.pk]},
        secure=True,
    )

    # Then only that one is revoked
    assert response.status_code == 302
    statuses = dict(SigningSecret.objects.filter(pipeline=pipeline).values_list("pk", "status"))
    assert statuses[older.pk] == "revoked"
    assert sorted(statuses.values()) == ["active", "revoked"]


def empty_inlines() -> dict[str, str]:
    return {
        f"{prefix}-{name}": "0"
        for prefix in ("origins", "keys", "signing_secrets")
        for name in ("TOTAL_FORMS", "INITIAL_FORMS")
    }


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
