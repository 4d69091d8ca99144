"""The audit trail: every configuration change is recorded with who made it, from the admin, its
actions, a command or a shell, with secrets redacted; the admin shows it read-only."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from pipelines import services
from pipelines.audit import REDACTED
from pipelines.models import AuditEntry, Pipeline, Source, WebhookSecret

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def admin_client(db: None) -> Client:
    user = User.objects.create_superuser("ops", "ops@example.com", "correct horse battery staple")
    client = Client()
    client.force_login(user)
    return client


def manage(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def entries_for(pipeline_id: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(pipeline_id=pipeline_id).order_by("at", "id"))


def test_a_change_in_the_admin_form_is_recorded_as_the_staff_user_with_before_and_after(admin_client: Client) -> None:
    # Given a pipeline with a rate limit of 1000
    pipeline = services.pipeline_create(name="Audited").pipeline
    AuditEntry.objects.all().delete()

    # When the staff user "ops" sets it to 50 in the admin
    response = admin_client.post(
        f"/admin/pipelines/pipeline/{pipeline.pk}/change/",
        {
            "name": "Audited",
            "slug": pipeline.slug,
            "type": "web",
            "enabled": "on",
            "rate_limit_rps": "50",
            "dedup_enabled": "on",
            "cookie_domain": "",
            "ip_mode": "full",
            **{
                f"{prefix}-{name}": "0"
                for prefix in ("origins", "keys", "signing_secrets")
                for name in ("TOTAL_FORMS", "INITIAL_FORMS")
            },
        },
        secure=True,
    )

    # Then one entry says who, what and the change, and nothing else was recorded
    assert response.status_code == 302
    [entry] = entries_for(pipeline.pk)
    assert (entry.actor, entry.action, entry.object_type, entry.object_id) == (
        "admin:ops",
        "update",
        "pipeline",
        pipeline.pk,
    )
    assert entry.changes == {"rate_limit_rps": [1000, 50]}


def test_pipeline_creation_in_the_admin_records_the_pipeline_its_origins_key_and_secret(admin_client: Client) -> None:
    admin_client.post(
        "/admin/pipelines/pipeline/add/",
        {"name": "Made here", "type": "web", "rate_limit_rps": "10", "ip_mode": "full", "origins": "https://a.example"},
        secure=True,
    )

    pipeline = Pipeline.objects.get(name="Made here")
    recorded = [(e.actor, e.action, e.object_type) for e in entries_for(pipeline.pk)]
    assert recorded == [
        ("admin:ops", "create", "pipeline"),
        ("admin:ops", "create", "allowed origin"),
        ("admin:ops", "create", "pipeline key"),
        ("admin:ops", "create", "signing secret"),
    ]


def test_an_admin_action_is_recorded_as_the_staff_user_and_the_secret_is_redacted(admin_client: Client) -> None:
    # Given a pipeline
    pipeline = services.pipeline_create(name="Rotating").pipeline
    AuditEntry.objects.all().delete()

    # When "ops" rotates its signing secret with the admin action
    response = admin_client.post(
        "/admin/pipelines/pipeline/",
        {"action": "rotate_signing_secret", "_selected_action": [pipeline.pk]},
        secure=True,
    )

    # Then the new secret's entry is ops', and neither plaintext nor ciphertext is in the trail
    shown = response.content.decode().split('class="signing-secret">', 1)[1].split("<", 1)[0]
    [entry] = entries_for(pipeline.pk)
    assert (entry.actor, entry.action, entry.object_type) == ("admin:ops", "create", "signing secret")
    assert entry.changes["secret_encrypted"] == [None, REDACTED]
    ciphertext = pipeline.signing_secrets.get(pk=entry.object_id).secret_encrypted
    trail = json.dumps([e.changes for e in AuditEntry.objects.all()])
    assert shown not in trail and ciphertext not in trail


def test_a_command_is_recorded_with_its_name_and_the_os_user(database_url: str, transactional_db: None) -> None:
    # Given a pipeline
    pipeline = services.pipeline_create(name="Commanded").pipeline

    # When an operator disables it from the command line
    result = manage(database_url, "disable_pipeline", "--pipeline", pipeline.pk)

    # Then the entry names the command and who ran it
    assert result.returncode == 0, result.stderr
    entry = entries_for(pipeline.pk)[-1]
    assert entry.actor == f"command:disable_pipeline ({getpass.getuser()})"
    assert (entry.action, entry.changes) == ("update", {"enabled": [True, False]})


def test_a_plain_orm_save_from_a_shell_is_recorded_as_the_os_user(db: None) -> None:
    # Given a pipeline
    pipeline = services.pipeline_create(name="Shell").pipeline

    # When someone changes it with the ORM, as in manage.py shell
    pipeline.ip_mode = Pipeline.IpMode.DROP
    pipeline.save()

    # Then that is recorded too
    entry = entries_for(pipeline.pk)[-1]
    assert entry.actor == f"shell:{getpass.getuser()}"
    assert (entry.action, entry.changes) == ("update", {"ip_mode": ["full", "drop"]})


def test_manage_py_shell_is_recorded_as_the_os_user(database_url: str, transactional_db: None) -> None:
    pipeline = services.pipeline_create(name="Real shell").pipeline

    result = manage(
        database_url,
        "shell",
        "-c",
        f"from pipelines.models import Pipeline; p = Pipeline.objects.get(pk='{pipeline.pk}'); "
        "p.consent_required = True; p.save()",
    )

    assert result.returncode == 0, result.stderr
    entry = entries_for(pipeline.pk)[-1]
    assert (entry.actor, entry.changes) == (f"shell:{getpass.getuser()}", {"consent_required": [False, True]})


def test_a_webhook_secret_change_is_recorded_without_the_secret(db: None) -> None:
    # Given a webhook source with a secret
    pipeline = services.pipeline_create(name="Hooks").pipeline
    source = services.webhook_source_create(pipeline=pipeline, scheme="github", secret="first-webhook-secret")
    hook = WebhookSecret.objects.get(source=source)
    old_ciphertext = hook.secret_encrypted

    # When the secret is replaced
    services.webhook_secret_set(webhook=hook, secret="second-webhook-secret")
    hook.save()

    # Then the trail says the secret changed, and shows neither secret nor ciphertext
    entry = entries_for(pipeline.pk)[-1]
    assert (entry.action, entry.object_type, entry.object_id) == ("update", "webhook secret", source.pk)
    assert entry.changes["secret_encrypted"] == [REDACTED, REDACTED]
    assert "hint" not in entry.changes  # both end in "cret": the hint did not change
    trail = json.dumps([e.changes for e in AuditEntry.objects.all()])
    for secret in ("first-webhook-secret", "second-webhook-secret", old_ciphertext, hook.secret_encrypted):
        assert secret not in trail


def test_deleting_a_pipeline_records_what_it_and_its_rows_were(db: None) -> None:
    created = services.pipeline_create(name="Deleted", origins=["https://gone.example"])
    pipeline_id = created.pipeline.pk

    created.pipeline.delete()

    deleted = {(e.object_type, e.action) for e in entries_for(pipeline_id) if e.action == "delete"}
    assert deleted == {
        ("pipeline", "delete"),
        ("allowed origin", "delete"),
        ("pipeline key", "delete"),
        ("signing secret", "delete"),
    }
    origin = next(e for e in entries_for(pipeline_id) if e.action == "delete" and e.object_type == "allowed origin")
    assert origin.changes["origin"] == ["https://gone.example", None]


def test_audit_log_prints_entries_as_json(database_url: str, transactional_db: None) -> None:
    pipeline = services.pipeline_create(name="Listed").pipeline
    services.pipeline_set_enabled(pipeline=pipeline, enabled=False)

    result = manage(database_url, "audit_log", "--json", "--pipeline", pipeline.pk)

    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert isinstance(entries, list)
    assert {"at", "actor", "action"} <= set(entries[0])
    assert (entries[0]["action"], entries[0]["changes"]) == ("update", {"enabled": [True, False]})
    assert [e["object_type"] for e in entries][-1] == "pipeline"


def test_audit_log_prints_one_line_per_entry(database_url: str, transactional_db: None) -> None:
    pipeline = services.pipeline_create(name="Lines").pipeline
    services.pipeline_set_privacy(pipeline=pipeline, ip_mode="truncate")

    result = manage(database_url, "audit_log", "--limit", "1", "--pipeline", pipeline.pk)

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert f"update pipeline {pipeline.pk}" in line and 'ip_mode: "full" -> "truncate"' in line


def test_the_admin_shows_the_audit_trail_read_only(admin_client: Client) -> None:
    # Given an entry
    pipeline = services.pipeline_create(name="Read only").pipeline
    entry = entries_for(pipeline.pk)[0]

    # When a superuser opens it, tries to change, delete or add one
    page = admin_client.get(f"/admin/pipelines/auditentry/{entry.pk}/change/", secure=True)
    changed = admin_client.post(f"/admin/pipelines/auditentry/{entry.pk}/change/", {"actor": "x"}, secure=True)
    deleted = admin_client.post(f"/admin/pipelines/auditentry/{entry.pk}/delete/", {"post": "yes"}, secure=True)
    added = admin_client.get("/admin/pipelines/auditentry/add/", secure=True)

    # Then it is shown and nothing else is allowed
    assert page.status_code == 200 and entry.actor in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert changed.status_code == 403 and deleted.status_code == 403 and added.status_code == 403
    assert AuditEntry.objects.get(pk=entry.pk).actor == entry.actor


def test_an_audit_entry_cannot_be_rewritten(db: None) -> None:
    pipeline = services.pipeline_create(name="Immutable").pipeline
    entry = entries_for(pipeline.pk)[0]

    entry.actor = "someone else"
    with pytest.raises(ValueError, match="never changed"):
        entry.save()


def test_a_source_created_by_the_service_is_recorded(db: None) -> None:
    pipeline = services.pipeline_create(name="Source").pipeline

    source = services.webhook_source_create(pipeline=pipeline, scheme="none")

    types = [(e.object_type, e.object_id) for e in entries_for(pipeline.pk)][-2:]
    assert types == [("source", source.pk), ("webhook secret", source.pk)]
    assert Source.objects.filter(pk=source.pk).exists()
