"""The management commands, run as a user runs them: separate processes printing JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.models import AllowedOrigin, Pipeline, PipelineKey, SigningSecret, Source, Status, WebhookSecret

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
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line_and_change_nothing(manage, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    before = [model.objects.count() for model in (Pipeline, PipelineKey, SigningSecret, AllowedOrigin, Source)]

    result = manage(*args)

    assert result.returncode != 0
    assert result.stdout == ""
    assert len([line for line in result.stderr.splitlines() if line.strip() and not line.startswith("usage:")]) == 1
    after = [model.objects.count() for model in (Pipeline, PipelineKey, SigningSecret, AllowedOrigin, Source)]
    assert after == before


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
