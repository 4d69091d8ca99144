"""The management commands, run as a user runs them: separate processes printing JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.models import (
    AllowedOrigin,
    AuditEntry,
    Pipeline,
    PipelineKey,
    SigningSecret,
    Source,
    Status,
    WebhookSecret,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def manage(database_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DATABASE_URL": database_url}
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    return run


def run_json(manage, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = manage(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_create_pipeline_prints_id_key_and_secret_once(manage) -> None:  # type: ignore[no-untyped-def]
    out = run_json(
        manage,
        "create_pipeline",
        "--name",
        "Shop",
        "--origin",
        "https://Shop.Example.com/",
        "--rate-limit",
        "250",
        "--no-dedup",
    )

    pipeline = Pipeline.objects.get(id=out["pipeline_id"])
    assert out["pipeline_key"].startswith("dk_") and len(out["pipeline_key"]) >= 3 + 22
    assert out["signing_secret"].startswith("sk_")
    assert (pipeline.rate_limit_rps, pipeline.dedup_enabled) == (250, False)
    assert list(pipeline.origins.values_list("origin", flat=True)) == ["https://shop.example.com"]
    assert PipelineKey.objects.get(key=out["pipeline_key"]).status == Status.ACTIVE
    assert out["signing_secret"] not in json.dumps(run_json(manage, "list_pipelines"))


def test_rotate_key_adds_a_key_and_keeps_the_old_one_active(manage) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "Rotating")

    rotated = run_json(manage, "rotate_key", created["pipeline_key"])

    assert rotated["pipeline_key"] != created["pipeline_key"]
    statuses = dict(PipelineKey.objects.filter(pipeline_id=created["pipeline_id"]).values_list("key", "status"))
    assert statuses == {created["pipeline_key"]: "active", rotated["pipeline_key"]: "active"}


def test_revoke_key_marks_it_revoked(manage) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "Revoking")

    result = manage("revoke_key", created["pipeline_key"])

    assert result.returncode == 0, result.stderr
    key = PipelineKey.objects.get(key=created["pipeline_key"])
    assert key.status == Status.REVOKED and key.revoked_at is not None


def test_rotate_secret_keeps_the_newest_two_active(manage) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "Secrets")

    second = run_json(manage, "rotate_secret", "--pipeline-key", created["pipeline_key"])
    third = run_json(manage, "rotate_secret", "--pipeline-key", created["pipeline_key"])

    active = SigningSecret.objects.filter(pipeline_id=created["pipeline_id"], status=Status.ACTIVE)
    assert sorted(active.values_list("hint", flat=True)) == sorted(
        [second["signing_secret"][-4:], third["signing_secret"][-4:]]
    )
    assert SigningSecret.objects.filter(pipeline_id=created["pipeline_id"]).count() == 3


def test_create_webhook_source_stores_scheme_mapping_and_encrypted_secret(manage) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "Hooks")

    out = run_json(
        manage,
        "create_webhook_source",
        "--pipeline-key",
        created["pipeline_key"],
        "--scheme",
        "stripe",
        "--secret",
        "whsec_stripe_test_secret",
        "--mapping",
        '{"event": "type", "userId": "data.object.customer"}',
    )

    source = Source.objects.get(id=out["source_id"])
    assert source.id.startswith("wh_") and source.kind == "webhook"
    hook = WebhookSecret.objects.get(source=source)
    assert hook.scheme == "stripe" and hook.mapping == {"event": "type", "userId": "data.object.customer"}
    assert "whsec_stripe_test_secret" not in hook.secret_encrypted


def test_list_pipelines_prints_json(manage) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "Listed", "--origin", "https://a.example")

    listed = run_json(manage, "list_pipelines")

    row = next(p for p in listed["pipelines"] if p["pipeline_id"] == created["pipeline_id"])
    assert row["active_keys"] == [created["pipeline_key"]]
    assert row["origins"] == ["https://a.example"]


@pytest.mark.parametrize(
    "args",
    [
        ("create_pipeline", "--name", "Bad origin", "--origin", "ftp://nope"),
        ("create_pipeline", "--name", "Bad origin path", "--origin", "https://a.example/path"),
        ("create_pipeline", "--name", "Zero rate", "--rate-limit", "0"),
        ("create_pipeline", "--name", "Not a number", "--rate-limit", "fast"),
        ("rotate_key", "dk_doesnotexist0000000000"),
        ("revoke_key", "dk_doesnotexist0000000000"),
        ("rotate_secret", "--pipeline-key", "dk_doesnotexist0000000000"),
        ("create_webhook_source", "--pipeline-key", "dk_doesnotexist0000000000", "--scheme", "github", "--secret", "s"),
        ("create_webhook_source", "--pipeline-key", "dk_doesnotexist0000000000", "--scheme", "carrier-pigeon"),
        ("create_pipeline", "--name", "Bad IP mode", "--ip-mode", "anonymise"),
        ("add_origin", "--pipeline-key", "dk_doesnotexist0000000000", "https://a.example"),
        ("add_origin", "--pipeline", "pip_doesnotexist", "https://a.example"),
        ("remove_origin", "--pipeline-key", "dk_doesnotexist0000000000", "https://a.example"),
        ("enable_pipeline", "--pipeline", "pip_doesnotexist"),
        ("disable_pipeline", "--pipeline-key", "dk_doesnotexist0000000000"),
        ("disable_pipeline",),
        ("set_privacy", "--pipeline", "pip_doesnotexist", "--ip-mode", "drop"),
        ("revoke_secret", "--pipeline", "pip_doesnotexist", "--hint", "abcd"),
        ("revoke_secret", "--pipeline", "pip_doesnotexist"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line_and_change_nothing(manage, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    before = [model.objects.count() for model in CONFIGURATION_MODELS]

    result = manage(*args)

    assert_refused_with_one_line(result)
    assert [model.objects.count() for model in CONFIGURATION_MODELS] == before


CONFIGURATION_MODELS = (Pipeline, PipelineKey, SigningSecret, AllowedOrigin, Source, AuditEntry)


def assert_refused_with_one_line(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    assert len([line for line in result.stderr.splitlines() if line.strip() and not line.startswith("usage:")]) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("add_origin", "ftp://nope"),
        ("add_origin", "https://already.example"),
        ("remove_origin", "https://never-added.example"),
        ("set_privacy",),
        ("set_privacy", "--ip-mode", "anonymise"),
        ("revoke_secret", "--hint", "zzzz"),
        ("revoke_secret", "--id", "0"),
        ("revoke_secret", "--hint", "abcd", "--id", "1"),
    ],
)
def test_bad_arguments_about_an_existing_pipeline_change_nothing(manage, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "Untouched", "--origin", "https://already.example")
    pipeline = Pipeline.objects.get(id=created["pipeline_id"])
    before = ([model.objects.count() for model in CONFIGURATION_MODELS], pipeline.consent_required, pipeline.ip_mode)

    result = manage(args[0], "--pipeline", created["pipeline_id"], *args[1:])

    assert_refused_with_one_line(result)
    pipeline.refresh_from_db()
    after = ([model.objects.count() for model in CONFIGURATION_MODELS], pipeline.consent_required, pipeline.ip_mode)
    assert after == before


def test_create_pipeline_sets_consent_required_and_ip_mode(manage) -> None:  # type: ignore[no-untyped-def]
    out = run_json(manage, "create_pipeline", "--name", "Private", "--consent-required", "--ip-mode", "truncate")

    pipeline = Pipeline.objects.get(id=out["pipeline_id"])
    assert (pipeline.consent_required, pipeline.ip_mode) == (True, "truncate")
    assert (out["consent_required"], out["ip_mode"]) == (True, "truncate")


def test_create_pipeline_defaults_to_consent_not_required_and_full_ip(manage) -> None:  # type: ignore[no-untyped-def]
    out = run_json(manage, "create_pipeline", "--name", "Defaults")

    pipeline = Pipeline.objects.get(id=out["pipeline_id"])
    assert (pipeline.consent_required, pipeline.ip_mode) == (False, "full")


def test_add_origin_and_remove_origin_change_the_allowlist(manage) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "Origins", "--origin", "https://a.example")

    added = run_json(manage, "add_origin", "--pipeline-key", created["pipeline_key"], "https://B.example:443/")
    removed = run_json(manage, "remove_origin", "--pipeline", created["pipeline_id"], "https://a.example")

    assert added["added"] == "https://b.example"
    assert added["origins"] == ["https://a.example", "https://b.example"]
    assert removed["origins"] == ["https://b.example"]
    assert list(AllowedOrigin.objects.filter(pipeline_id=created["pipeline_id"]).values_list("origin", flat=True)) == [
        "https://b.example"
    ]


def test_disable_pipeline_and_enable_pipeline_switch_it(manage) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "Switched")

    disabled = run_json(manage, "disable_pipeline", "--pipeline-key", created["pipeline_key"])
    assert disabled == {"pipeline_id": created["pipeline_id"], "enabled": False}
    assert Pipeline.objects.get(id=created["pipeline_id"]).enabled is False

    enabled = run_json(manage, "enable_pipeline", "--pipeline", created["pipeline_id"])
    assert enabled == {"pipeline_id": created["pipeline_id"], "enabled": True}
    assert Pipeline.objects.get(id=created["pipeline_id"]).enabled is True


def test_set_privacy_changes_only_what_it_is_given(manage) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "Privacy")

    first = run_json(manage, "set_privacy", "--pipeline", created["pipeline_id"], "--ip-mode", "drop")
    second = run_json(manage, "set_privacy", "--pipeline", created["pipeline_id"], "--consent-required")
    third = run_json(manage, "set_privacy", "--pipeline", created["pipeline_id"], "--no-consent-required")

    assert (first["consent_required"], first["ip_mode"]) == (False, "drop")
    assert (second["consent_required"], second["ip_mode"]) == (True, "drop")
    assert (third["consent_required"], third["ip_mode"]) == (False, "drop")


def test_revoke_secret_revokes_the_one_named_by_its_hint_and_keeps_the_other(manage) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "Two secrets")
    second = run_json(manage, "rotate_secret", "--pipeline-key", created["pipeline_key"])
    first_hint = created["signing_secret"][-4:]

    out = run_json(manage, "revoke_secret", "--pipeline-key", created["pipeline_key"], "--hint", first_hint)

    assert out["revoked_hint"] == first_hint
    assert out["active_hints"] == [second["signing_secret"][-4:]]
    statuses = dict(SigningSecret.objects.filter(pipeline_id=created["pipeline_id"]).values_list("hint", "status"))
    assert statuses == {first_hint: "revoked", second["signing_secret"][-4:]: "active"}


def test_revoke_secret_takes_an_id_too(manage) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "By id")
    secret = SigningSecret.objects.get(pipeline_id=created["pipeline_id"])

    out = run_json(manage, "revoke_secret", "--pipeline", created["pipeline_id"], "--id", str(secret.pk))

    assert out["revoked_secret_id"] == secret.pk and out["active_hints"] == []
    secret.refresh_from_db()
    assert secret.status == "revoked"


def test_bad_webhook_mapping_is_refused(manage) -> None:  # type: ignore[no-untyped-def]
    created = run_json(manage, "create_pipeline", "--name", "Bad mapping")

    result = manage(
        "create_webhook_source",
        "--pipeline-key",
        created["pipeline_key"],
        "--scheme",
        "github",
        "--secret",
        "s3cret",
        "--mapping",
        '{"pipelineId": "data.id"}',
    )

    assert result.returncode != 0
    assert "not an envelope field" in result.stderr
    assert not Source.objects.filter(pipeline_id=created["pipeline_id"]).exists()


def test_check_deploy_is_clean_apart_from_what_tls_in_front_provides() -> None:
    env = {
        **os.environ,
        "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
        "ENCRYPTION_KEY": "x2iiTSFZh1sVpuGnaTFeQ3-i9NxuExRx4TQyLY7g3mE=",
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    reported = sorted(set(re.findall(r"\((\S+\.[WE]\d+)\)", result.stdout + result.stderr)))
    assert reported == ["security.W004", "security.W008"]  # HSTS and the HTTPS redirect belong to the TLS proxy
