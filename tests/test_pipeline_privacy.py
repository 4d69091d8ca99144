"""A pipeline's privacy settings (consent required, IP mode) reach the gateway in its key-store
snapshot; a record cached by an older version, without them, reads as the old behaviour."""

from __future__ import annotations

import pytest

from pipelines import services
from pipelines.keystore import snapshot_from_record
from pipelines.selectors import pipeline_record

pytestmark = pytest.mark.django_db


def test_a_new_pipeline_does_not_require_consent_and_keeps_full_ips() -> None:
    created = services.pipeline_create(name="Defaults")

    record = pipeline_record(created.pipeline_key)
    assert record is not None
    snapshot = snapshot_from_record(record)

    assert (snapshot.consent_required, snapshot.ip_mode) == (False, "full")


def test_consent_required_and_ip_mode_travel_in_the_snapshot() -> None:
    created = services.pipeline_create(name="Private", consent_required=True, ip_mode="truncate")

    record = pipeline_record(created.pipeline_key)
    assert record is not None
    snapshot = snapshot_from_record(record)

    assert (snapshot.consent_required, snapshot.ip_mode) == (True, "truncate")


def test_changed_privacy_settings_are_in_the_next_snapshot() -> None:
    created = services.pipeline_create(name="Changing")

    services.pipeline_set_privacy(pipeline=created.pipeline, consent_required=True, ip_mode="drop")

    record = pipeline_record(created.pipeline_key)
    assert record is not None
    assert (snapshot_from_record(record).consent_required, snapshot_from_record(record).ip_mode) == (True, "drop")


def test_a_record_cached_by_an_older_version_reads_as_consent_not_required_and_full_ips() -> None:
    created = services.pipeline_create(name="Old record", consent_required=True, ip_mode="drop")
    record = pipeline_record(created.pipeline_key)
    assert record is not None
    older = {k: v for k, v in record.items() if k not in {"consent_required", "ip_mode"}}

    snapshot = snapshot_from_record(older)

    assert (snapshot.consent_required, snapshot.ip_mode) == (False, "full")
    assert snapshot.pipeline_id == created.pipeline.id


@pytest.mark.parametrize("ip_mode", ["anonymise", ""])
def test_an_unknown_ip_mode_is_refused(ip_mode: str) -> None:
    pipeline = services.pipeline_create(name=f"Refuses {ip_mode!r}").pipeline

    with pytest.raises(services.ConfigError, match="IP mode must be one of full, truncate, drop"):
        services.pipeline_set_privacy(pipeline=pipeline, ip_mode=ip_mode)
    with pytest.raises(services.ConfigError, match="IP mode must be one of full, truncate, drop"):
        services.pipeline_create(name="Never", ip_mode=ip_mode)

    pipeline.refresh_from_db()
    assert pipeline.ip_mode == "full"
