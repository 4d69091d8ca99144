"""A pipeline's IP mode (issue 12, build 4): ``full`` keeps the address, ``truncate`` keeps the IPv4
/24 or the IPv6 /48, ``drop`` leaves ``context.ip`` out; for the address the gateway saw and for one
the client supplied."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway, start_gateway
from tests.fixtures.http import post
from tests.fixtures.kafka import the_record
from tests.fixtures.payloads import signature_headers
from tests.fixtures.privacy import set_privacy


@pytest.fixture(scope="module")
def proxied_gateway(gateway_env: dict[str, str], log_dir: Path) -> Iterator[Gateway]:
    """A gateway behind a proxy on 127.0.0.1 it trusts: X-Forwarded-For names the visitor."""
    running = start_gateway({**gateway_env, "TRUSTED_PROXIES": "127.0.0.1/32"}, log_dir)
    yield running
    running.stop()


@pytest.fixture
def pipeline_in_mode(make_pipeline: Callable[..., PipelineCreated]) -> Callable[[str], PipelineCreated]:
    def make(ip_mode: str) -> PipelineCreated:
        created = make_pipeline()
        set_privacy(created, ip_mode=ip_mode)
        return created

    return make


def browser_context(
    gateway: Gateway, created: PipelineCreated, forwarded_for: str, kafka: tuple[str, str], **context: Any
) -> dict[str, Any]:
    response = post(
        gateway.url + "/v1/t",
        {"event": "Viewed", "context": context},
        key=created.pipeline_key,
        headers={"X-Forwarded-For": forwarded_for},
    )
    assert response.status == 200, response.body
    return the_record(kafka[0], kafka[1], created).value["context"]


@pytest.mark.parametrize(
    ("mode", "visitor", "recorded"),
    [
        ("full", "203.0.113.7", "203.0.113.7"),
        ("truncate", "203.0.113.7", "203.0.113.0"),
        ("truncate", "2001:db8:abcd:12:34:56:78:9a", "2001:db8:abcd::"),
        ("truncate", "::ffff:203.0.113.7", "203.0.113.0"),
    ],
    ids=["full", "truncate IPv4", "truncate IPv6", "truncate IPv4-mapped IPv6"],
)
def test_the_observed_address_is_recorded_as_the_pipelines_ip_mode_says(
    proxied_gateway: Gateway,
    pipeline_in_mode: Callable[[str], PipelineCreated],
    kafka_bootstrap: str,
    kafka_topic: str,
    mode: str,
    visitor: str,
    recorded: str,
) -> None:
    # Given a pipeline in this IP mode, and a visitor the trusted proxy names
    created = pipeline_in_mode(mode)

    # When the visitor's page posts an event
    context = browser_context(proxied_gateway, created, visitor, (kafka_bootstrap, kafka_topic))

    # Then its address is recorded as the mode says
    assert context["ip"] == recorded


def test_drop_leaves_every_address_out(
    proxied_gateway: Gateway, pipeline_in_mode: Callable[[str], PipelineCreated], kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pipeline that drops addresses, and a page whose body claims one too
    created = pipeline_in_mode("drop")

    # When the page posts
    context = browser_context(
        proxied_gateway, created, "203.0.113.7", (kafka_bootstrap, kafka_topic), ip="198.51.100.77"
    )

    # Then no address is in the event at all
    assert "ip" not in context
    assert "ip" not in context.get("claimed", {})
    assert "203.0.113" not in json.dumps(context) and "198.51.100" not in json.dumps(context)


def test_truncate_applies_to_the_address_a_page_claims(
    proxied_gateway: Gateway, pipeline_in_mode: Callable[[str], PipelineCreated], kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pipeline that truncates, and a page whose body claims another address
    created = pipeline_in_mode("truncate")

    # When the page posts
    context = browser_context(
        proxied_gateway, created, "203.0.113.7", (kafka_bootstrap, kafka_topic), ip="198.51.100.77"
    )

    # Then both the observed address and the claim are truncated
    assert (context["ip"], context["claimed"]["ip"]) == ("203.0.113.0", "198.51.100.0")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("full", "198.51.100.77"), ("truncate", "198.51.100.0"), ("drop", None)],
)
def test_the_ip_mode_applies_to_the_end_users_address_a_server_reports(
    gateway: Gateway,
    pipeline_in_mode: Callable[[str], PipelineCreated],
    kafka_bootstrap: str,
    kafka_topic: str,
    mode: str,
    expected: str | None,
) -> None:
    # Given a backend that reports its end user's address in context.ip, signed
    created = pipeline_in_mode(mode)
    body = json.dumps({"type": "track", "event": "Paid", "userId": "u-1", "context": {"ip": "198.51.100.77"}}).encode()
    headers = signature_headers(created.signing_secret, body)

    # When it posts to /v1/events
    response = post(gateway.url + "/v1/events", body, key=created.pipeline_key, headers=headers)

    # Then the reported address is kept, truncated or dropped as the mode says
    assert response.status == 200, response.body
    assert the_record(kafka_bootstrap, kafka_topic, created).value["context"].get("ip") == expected
