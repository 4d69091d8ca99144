"""Trust boundaries (issue 11, item 11): what a page claims is kept apart from what the gateway saw;
cookie values are checked before they are copied; ids with control characters are refused; large
numeric ids keep their digits; an IPv4-mapped IPv6 address is the IPv4 address it maps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway, start_gateway
from tests.fixtures.http import assert_error, post
from tests.fixtures.kafka import read_records, the_record
from tests.fixtures.payloads import returning_visitor, signature_headers

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
SETTLE = 1.0


@pytest.fixture(scope="module")
def proxied_gateway(gateway_env: dict[str, str], log_dir: Path) -> Iterator[Gateway]:
    """A gateway that believes X-Forwarded-For from 127.0.0.1 (its proxy)."""
    running = start_gateway({**gateway_env, "TRUSTED_PROXIES": "127.0.0.1/32"}, log_dir)
    yield running
    running.stop()


# -- a page's context is a claim --------------------------------------------------------------------------


@pytest.mark.parametrize("behind_proxy", [False, True], ids=["no trusted proxy", "behind a trusted proxy"])
def test_a_pages_context_ip_and_user_agent_do_not_replace_what_the_gateway_saw(
    gateway: Gateway,
    proxied_gateway: Gateway,
    pipeline: PipelineCreated,
    kafka_bootstrap: str,
    kafka_topic: str,
    behind_proxy: bool,
) -> None:
    # Given a page whose body claims another address and another browser
    body = {"event": "Viewed", "context": {"ip": "10.9.8.7", "userAgent": "Forged/1.0"}}
    target = proxied_gateway if behind_proxy else gateway
    headers = {"User-Agent": CHROME, **({"X-Forwarded-For": "203.0.113.7"} if behind_proxy else {})}

    # When it posts
    response = post(target.url + "/v1/t", body, key=pipeline.pipeline_key, headers=headers)

    # Then context.ip and context.userAgent are what the gateway saw; the claims are kept apart
    assert response.status == 200, response.body
    context = the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]
    assert context["ip"] == ("203.0.113.7" if behind_proxy else "127.0.0.1")
    assert context["userAgent"] == CHROME
    assert context["claimed"] == {"ip": "10.9.8.7", "userAgent": "Forged/1.0"}


def test_a_page_cannot_write_the_claimed_key_itself(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a page that sends its own context.claimed and no claims of its own
    body = {"event": "Viewed", "context": {"claimed": {"ip": "1.2.3.4"}}}

    # When it posts
    response = post(gateway.url + "/v1/t", body, key=pipeline.pipeline_key, headers={"User-Agent": CHROME})

    # Then the key is the gateway's: absent, as nothing was claimed
    assert response.status == 200
    assert "claimed" not in the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]


# -- cookie values ---------------------------------------------------------------------------------------

HOSTILE_VALUES = {
    "markup": "<img src=x onerror=alert(1)>",
    "3,000 characters": "fb.1.1714561200000." + "1" * 3000,
    "a control character": "GA1.1.123\x01.456",
}


@pytest.mark.parametrize("value", HOSTILE_VALUES.values(), ids=HOSTILE_VALUES.keys())
def test_a_vendor_cookie_not_in_its_vendors_format_is_not_copied_and_is_minted_anew(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, value: str
) -> None:
    # Given a browser whose vendor cookies hold something no vendor writes
    cookies = {**returning_visitor(), "_ga": value, "_fbp": value, "_ttp": value, "_fbc": value}

    # When it posts
    response = post(gateway.url + "/v1/t", {"event": "Viewed"}, key=pipeline.pipeline_key, cookies=cookies)

    # Then the bad values are not in the event, and _ga, _fbp and _ttp are set anew in their formats
    assert response.status == 200, response.body
    assert {"_ga", "_fbp", "_ttp"} <= response.cookies.keys()
    vendor_ids = the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]["vendorIds"]
    assert value not in json.dumps(vendor_ids)
    assert "fbc" not in vendor_ids
    assert vendor_ids["ga"] == response.cookies["_ga"].value


def test_vendor_cookies_in_their_vendors_formats_are_kept(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given cookies as the vendors' own scripts write them
    cookies = {
        **returning_visitor(),
        "_ga": "GA1.2.1536436723.1714561200",
        "_fbp": "fb.2.1714561200000.1116446470",
        "_ttp": "2Ts1dVxCsPRXeKWs8fXQ2kRzKv1",
        "_fbc": "fb.1.1714561200000.IwAR2F4-dbP0l7Mn1Iaw",
        "_gcl_aw": "GCL.1714561200.Cj0KCQjw3tCyBhDBARIsAEY0XNm",
        "_pin_unauth": "dWlkPU9EZ3lNMk14WkRjdE1HRTNOQzAwWmpRM0xUaGlNalF0TURBd1pXTmpZVEk1",
    }

    # When the browser posts
    response = post(gateway.url + "/v1/t", {"event": "Viewed"}, key=pipeline.pipeline_key, cookies=cookies)

    # Then nothing is set again and each is copied as it is
    assert response.status == 200
    assert response.cookies == {}
    vendor_ids = the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]["vendorIds"]
    assert (vendor_ids["ga"], vendor_ids["ttp"], vendor_ids["pinUnauth"]) == (
        cookies["_ga"],
        cookies["_ttp"],
        cookies["_pin_unauth"],
    )


# -- ids -------------------------------------------------------------------------------------------------

CONTROL_IDS = {
    "NUL in messageId": {"messageId": "m-1\x00evil"},
    "a line feed in messageId": {"messageId": "m-1\nX-Injected: 1"},
    "NUL in anonymousId": {"anonymousId": "a\x00"},
    "an escape in userId": {"userId": "u\x1b[31m"},
    "a C1 control in groupId": {"groupId": "g\x85"},
}


@pytest.mark.parametrize("ids", CONTROL_IDS.values(), ids=CONTROL_IDS.keys())
def test_an_id_with_a_control_character_is_refused_and_not_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, ids: dict[str, str]
) -> None:
    # Given an event whose id carries a control character
    body = {"event": "Viewed", "groupId": "g-1", **ids}

    # When it is posted
    response = post(gateway.url + "/v1/g", body, key=pipeline.pipeline_key)

    # Then it is refused, and nothing reaches Kafka
    assert_error(response, 400, "INVALID_PAYLOAD")
    assert read_records(kafka_bootstrap, kafka_topic, pipeline_id=pipeline.pipeline.id, expect=0, settle=SETTLE) == []


def test_a_batch_item_with_nul_in_its_message_id_is_reported_and_the_rest_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch with one NUL-bearing messageId
    batch = [
        {"type": "track", "event": "A", "userId": "u", "messageId": "ok-1"},
        {"type": "track", "event": "B", "userId": "u", "messageId": "bad\x00"},
    ]

    # When it is posted
    response = post(gateway.url + "/v1/batch", {"batch": batch}, key=pipeline.pipeline_key)

    # Then that item is reported and only the good one is published
    assert response.status == 200
    assert [(e["index"], e["code"]) for e in response.json()["errors"]] == [(1, "INVALID_PAYLOAD")]
    records = read_records(kafka_bootstrap, kafka_topic, pipeline_id=pipeline.pipeline.id, expect=1, settle=SETTLE)
    assert [r.headers["message_id"] for r in records] == ["ok-1"]


def test_a_twenty_digit_numeric_user_id_keeps_every_digit(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a server that sends a 20-digit user id as a JSON number (within 64 bits)
    body = b'{"type": "track", "event": "Paid", "userId": 12345678901234567890}'

    # When it is posted
    response = post(
        gateway.url + "/v1/events",
        body,
        key=pipeline.pipeline_key,
        headers=signature_headers(pipeline.signing_secret, body),
    )

    # Then the envelope's userId is that number's digits, as a string
    assert response.status == 200, response.body
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert record.value["userId"] == "12345678901234567890"
    assert record.key == f"{pipeline.pipeline.id}:12345678901234567890"


def test_a_numeric_user_id_past_64_bits_is_refused_rather_than_turned_into_a_float(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a 20-digit user id as a JSON number no 64-bit integer holds
    body = b'{"event": "Paid", "userId": 99999999999999999999}'

    # When it is posted
    response = post(gateway.url + "/v1/t", body, key=pipeline.pipeline_key)

    # Then it is refused, with a message that says to quote it, instead of published as "1e+20"
    assert_error(response, 400, "INVALID_PAYLOAD")
    assert "quoted" in response.json()["error"]["message"]
    assert read_records(kafka_bootstrap, kafka_topic, pipeline_id=pipeline.pipeline.id, expect=0, settle=SETTLE) == []


# -- IPv4-mapped IPv6 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forwarded_for", "recorded"),
    [
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("198.51.100.1, ::ffff:127.0.0.1", "198.51.100.1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
    ],
    ids=["a mapped visitor", "a mapped proxy hop after the visitor", "only a mapped proxy hop"],
)
def test_an_ipv4_mapped_address_in_x_forwarded_for_is_the_ipv4_address_it_maps(
    proxied_gateway: Gateway,
    pipeline: PipelineCreated,
    kafka_bootstrap: str,
    kafka_topic: str,
    forwarded_for: str,
    recorded: str,
) -> None:
    # Given a gateway that trusts its proxy on 127.0.0.1, and a hop in the IPv4-mapped spelling

    # When a request arrives through the proxy
    response = post(
        proxied_gateway.url + "/v1/t",
        {"event": "Viewed"},
        key=pipeline.pipeline_key,
        headers={"X-Forwarded-For": forwarded_for},
    )

    # Then the address is compared and recorded as IPv4: the mapped proxy is the proxy, never the visitor
    assert response.status == 200
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]["ip"] == recorded


def test_a_claimed_address_that_is_no_address_is_not_kept(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a page whose context.ip is markup, and whose context.userAgent is an object
    body = {"event": "Viewed", "context": {"ip": "<script>alert(1)</script>", "userAgent": {"x": 1}}}

    # When it posts
    response = post(gateway.url + "/v1/t", body, key=pipeline.pipeline_key, headers={"User-Agent": CHROME})

    # Then neither is in the event: the observed values are, and nothing is claimed
    assert response.status == 200
    context = the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]
    assert (context["ip"], context["userAgent"]) == ("127.0.0.1", CHROME)
    assert "claimed" not in context
