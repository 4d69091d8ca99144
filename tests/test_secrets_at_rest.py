"""Secrets are stored encrypted and survive a change of ENCRYPTION_KEY."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from pipelines import crypto, services
from pipelines.keystore import snapshot_from_record
from pipelines.selectors import pipeline_record

pytestmark = pytest.mark.django_db


def raw_rows() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted, hint FROM pipelines_signingsecret")
        signing = cursor.fetchall()
        cursor.execute("SELECT secret_encrypted, hint, options::text FROM pipelines_webhooksecret")
        webhook = cursor.fetchall()
    return repr(signing + webhook)


def test_secrets_are_unreadable_in_the_database() -> None:
    created = services.pipeline_create(name="Vault")
    services.webhook_source_create(pipeline=created.pipeline, scheme="github", secret="gh-webhook-secret-value")

    stored = raw_rows()

    assert created.signing_secret not in stored
    assert created.signing_secret.removeprefix("sk_") not in stored
    assert "gh-webhook-secret-value" not in stored
    snapshot = snapshot_from_record(pipeline_record(created.pipeline_key))
    assert snapshot.signing_secrets == (created.signing_secret.encode(),)
    assert next(iter(snapshot.webhook_sources.values())).secret == "gh-webhook-secret-value"


def test_secrets_survive_an_encryption_key_change() -> None:
    created = services.pipeline_create(name="Rotation")
    services.webhook_source_create(pipeline=created.pipeline, scheme="shopify", secret="shopify-secret")
    old, new = settings.ENCRYPTION_KEY, Fernet.generate_key().decode()

    with override_settings(ENCRYPTION_KEY=new, ENCRYPTION_KEY_PREVIOUS=old):
        during = snapshot_from_record(pipeline_record(created.pipeline_key))
        call_command("reencrypt_secrets", "--json")
    with override_settings(ENCRYPTION_KEY=new, ENCRYPTION_KEY_PREVIOUS=""):
        after = snapshot_from_record(pipeline_record(created.pipeline_key))
    with override_settings(ENCRYPTION_KEY=old, ENCRYPTION_KEY_PREVIOUS=""):
        old_key_alone = snapshot_from_record(pipeline_record(created.pipeline_key))

    assert during.signing_secrets == (created.signing_secret.encode(),)
    assert after.signing_secrets == (created.signing_secret.encode(),)
    assert next(iter(after.webhook_sources.values())).secret == "shopify-secret"
    assert old_key_alone.signing_secrets == ()  # re-encrypted: the old key no longer reads them
    assert old_key_alone.webhook_sources == {}


def test_a_secret_from_an_unknown_key_is_reported_unreadable() -> None:
    token = Fernet(Fernet.generate_key()).encrypt(b"sk_elsewhere").decode()

    with pytest.raises(crypto.SecretUnreadable):
        crypto.decrypt(token)
