"""Third-party webhooks (POST /v1/webhook?source=wh_…) end to end, signed as each vendor documents it.

Every signature is computed here with hmac/hashlib from the vendor's documented recipe (Standard
Webhooks by its own reference library), sent over real HTTP to the gateway, and the mapped envelope is
read back from Kafka. A refused request is checked to have published nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from ingestion.webhook import MAX_WEBHOOK_BYTES
from pipelines import services
from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, encode, post
from tests.fixtures.kafka import KafkaRecord, read_records, the_record

SETTLE = 1.5
STRIPE_MAPPING = {
    "event": "type",
    "userId": "data.object.customer",
    "messageId": "id",
    "properties.amount": "data.object.amount",
}


# -- helpers: a source, a request, the record --------------------------------------------------------------


def webhook_source(
    created: PipelineCreated,
    scheme: str,
    secret: str = "",
    mapping: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
    tolerance_seconds: int = 300,
) -> str:
    source = services.webhook_source_create(
        pipeline=created.pipeline,
        scheme=scheme,
        secret=secret,
        mapping=mapping,
        options=options,
        tolerance_seconds=tolerance_seconds,
    )
    return source.id


def webhook_url(gateway: Gateway, source_id: str) -> str:
    return f"{gateway.url}/v1/webhook?source={source_id}"


def send(
    gateway: Gateway,
    source_id: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> Response:
    return post(webhook_url(gateway, source_id), body, content_type=content_type, headers=headers)


def nothing_published(kafka_bootstrap: str, kafka_topic: str, created: PipelineCreated) -> bool:
    return read_records(kafka_bootstrap, kafka_topic, pipeline_id=created.pipeline.id, expect=0, settle=SETTLE) == []


def assert_accepted(response: Response) -> None:
    assert (response.status, response.json()) == (200, {"success": True})


def assert_refused(response: Response, status: int, code: str) -> None:
    assert response.status == status
    assert response.json()["error"]["code"] == code


def assert_from_source(record: KafkaRecord, created: PipelineCreated, source_id: str) -> None:
    assert record.value["source"] == {"kind": "webhook", "id": source_id}
    assert record.value["pipelineId"] == created.pipeline.id
    assert record.headers["source_kind"] == "webhook"


def hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def b64_hmac(secret: str, message: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def json_body(payload: Any) -> bytes:
    return encode(json.dumps(payload, separators=(",", ":")))


# -- vendors' payloads and signatures, per their documentation ---------------------------------------------


def stripe_event(customer: str = "cus_NffrFeUfNV2Hib", amount: int = 4200) -> dict[str, Any]:
    return {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "type": "invoice.paid",
        "created": 1714561200,
        "data": {"object": {"id": "in_1MtHbELkdIwHu7ixl4OzzPMv", "customer": customer, "amount": amount}},
    }


def stripe_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    # Stripe: signed_payload = "<t>.<raw body>"; v1 = hex HMAC-SHA256 keyed with the endpoint secret.
    t = int(time.time()) if timestamp is None else timestamp
    return {"Stripe-Signature": f"t={t},v1={hex_hmac(secret, f'{t}.'.encode() + body)}"}


def shopify_headers(secret: str, body: bytes) -> dict[str, str]:
    # Shopify: base64 HMAC-SHA256 of the raw body keyed with the app's client secret.
    return {"X-Shopify-Hmac-Sha256": b64_hmac(secret, body), "X-Shopify-Topic": "orders/create"}


def github_headers(secret: str, body: bytes) -> dict[str, str]:
    # GitHub: "sha256=" + hex HMAC-SHA256 of the raw body keyed with the webhook secret.
    return {"X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body), "X-GitHub-Event": "push"}


def hubspot_v3_headers(secret: str, url: str, body: bytes, timestamp_ms: int | None = None) -> dict[str, str]:
    # HubSpot v3: base64 HMAC-SHA256 of method + full URL + raw body + timestamp (ms), keyed with the app secret.
    ts = str(int(time.time() * 1000) if timestamp_ms is None else timestamp_ms)
    signature = b64_hmac(secret, b"POST" + url.encode() + body + ts.encode())
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": ts}


def standard_webhooks_headers(secret: str, body: bytes, msg_id: str) -> dict[str, str]:
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}


def standard_webhooks_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# -- stripe ----------------------------------------------------------------------------------------------


def test_a_stripe_event_signed_as_stripe_documents_is_published_with_its_mapped_fields(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a Stripe source with the Stripe-like mapping, and an invoice.paid event signed with its secret
    secret = "whsec_" + secrets.token_hex(16)
    source_id = webhook_source(pipeline, "stripe", secret, mapping=STRIPE_MAPPING)
    event = stripe_event(customer="cus_NffrFeUfNV2Hib", amount=4200)
    body = json_body(event)

    # When Stripe delivers it
    response = send(gateway, source_id, body, stripe_headers(secret, body))

    # Then it is accepted, and the envelope carries the mapped fields
    assert_accepted(response)
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert_from_source(record, pipeline, source_id)
    envelope = record.value
    assert envelope["type"] == "track"
    assert envelope["event"] == "invoice.paid"
    assert envelope["userId"] == "cus_NffrFeUfNV2Hib"
    assert envelope["messageId"] == event["id"]
    assert envelope["properties"] == {"amount": 4200}
    assert envelope["context"]["webhook"] == {"scheme": "stripe"}
    assert record.key == f"{pipeline.pipeline.id}:cus_NffrFeUfNV2Hib"
    assert record.headers["message_id"] == event["id"]


def test_a_stripe_event_signed_with_another_secret_is_refused_and_not_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a Stripe source, and an event signed with some other endpoint's secret
    source_id = webhook_source(pipeline, "stripe", "whsec_" + secrets.token_hex(16), mapping=STRIPE_MAPPING)
    body = json_body(stripe_event())

    # When it is delivered
    response = send(gateway, source_id, body, stripe_headers("whsec_" + secrets.token_hex(16), body))

    # Then it is refused as an invalid signature, and nothing is published
    assert_refused(response, 401, "INVALID_SIGNATURE")
    assert nothing_published(kafka_bootstrap, kafka_topic, pipeline)


def test_a_stripe_event_signed_longer_ago_than_the_tolerance_is_refused_as_stale(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a Stripe source that tolerates 300 s, and an authentic event signed ten minutes ago (a replay)
    secret = "whsec_" + secrets.token_hex(16)
    source_id = webhook_source(pipeline, "stripe", secret, mapping=STRIPE_MAPPING, tolerance_seconds=300)
    body = json_body(stripe_event())

    # When it is delivered
    response = send(gateway, source_id, body, stripe_headers(secret, body, timestamp=int(time.time()) - 600))

    # Then it is refused as stale, and nothing is published
    assert_refused(response, 401, "STALE_TIMESTAMP")
    assert nothing_published(kafka_bootstrap, kafka_topic, pipeline)


# -- shopify ---------------------------------------------------------------------------------------------


SHOPIFY_ORDER = {
    "id": 820982911946154508,
    "email": "jon@example.com",
    "total_price": "199.00",
    "customer": {"id": 115310627314723954},
}
SHOPIFY_MAPPING = {"userId": "customer.id", "messageId": "id", "properties.total": "total_price"}


def test_a_shopify_webhook_with_a_base64_hmac_of_its_body_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a Shopify source, and an orders/create webhook signed with the app secret
    secret = "shpss_" + secrets.token_hex(16)
    source_id = webhook_source(pipeline, "shopify", secret, mapping=SHOPIFY_MAPPING)
    body = json_body(SHOPIFY_ORDER)

    # When Shopify delivers it
    response = send(gateway, source_id, body, shopify_headers(secret, body))

    # Then it is published with the mapped fields (ids as strings)
    assert_accepted(response)
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert_from_source(record, pipeline, source_id)
    assert record.value["userId"] == "115310627314723954"
    assert record.value["messageId"] == "820982911946154508"
    assert record.value["properties"] == {"total": "199.00"}


def test_a_shopify_webhook_whose_body_was_altered_after_signing_is_refused(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a Shopify source, and a signature made over a different body
    secret = "shpss_" + secrets.token_hex(16)
    source_id = webhook_source(pipeline, "shopify", secret, mapping=SHOPIFY_MAPPING)
    signed = json_body(SHOPIFY_ORDER)
    altered = json_body({**SHOPIFY_ORDER, "total_price": "0.01"})

    # When the altered body arrives with the original signature
    response = send(gateway, source_id, altered, shopify_headers(secret, signed))

    # Then it is refused, and nothing is published
    assert_refused(response, 401, "INVALID_SIGNATURE")
    assert nothing_published(kafka_bootstrap, kafka_topic, pipeline)


# -- github ----------------------------------------------------------------------------------------------


GITHUB_PUSH = {
    "ref": "refs/heads/main",
    "repository": {"full_name": "octo-org/octo-repo"},
    "sender": {"login": "octocat", "id": 1},
    "head_commit": {"id": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
}
GITHUB_MAPPING = {
    "userId": "sender.login",
    "messageId": "head_commit.id",
    "properties.repository": "repository.full_name",
}


def test_a_github_webhook_with_an_x_hub_signature_256_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a GitHub source, and a push event signed with the webhook secret
    secret = secrets.token_hex(20)
    source_id = webhook_source(pipeline, "github", secret, mapping=GITHUB_MAPPING)
    body = json_body(GITHUB_PUSH)

    # When GitHub delivers it
    response = send(gateway, source_id, body, github_headers(secret, body))

    # Then it is published with the mapped fields
    assert_accepted(response)
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert_from_source(record, pipeline, source_id)
    assert record.value["userId"] == "octocat"
    assert record.value["messageId"] == "6dcb09b5b57875f334f61aebed695e2e4193db5e"
    assert record.value["properties"] == {"repository": "octo-org/octo-repo"}


def test_a_github_webhook_signed_with_another_secret_is_refused(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a GitHub source, and a push event signed with a secret it does not hold
    source_id = webhook_source(pipeline, "github", secrets.token_hex(20), mapping=GITHUB_MAPPING)
    body = json_body(GITHUB_PUSH)

    # When it is delivered
    response = send(gateway, source_id, body, github_headers(secrets.token_hex(20), body))

    # Then it is refused, and nothing is published
    assert_refused(response, 401, "INVALID_SIGNATURE")
    assert nothing_published(kafka_bootstrap, kafka_topic, pipeline)


# -- hubspot v3 ------------------------------------------------------------------------------------------


HUBSPOT_EVENTS = [
    {
        "eventId": 1001,
        "subscriptionType": "contact.creation",
        "objectId": 123456,
        "occurredAt": 1714561200123,
        "portalId": 62515,
    }
]
HUBSPOT_MAPPING = {"event": "0.subscriptionType", "userId": "0.objectId", "timestamp": "0.occurredAt"}


def test_a_hubspot_v3_webhook_signed_over_method_url_body_and_timestamp_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a HubSpot v3 source, and HubSpot's batch of events signed over POST + the gateway URL
    # (with ?source=…) + body + timestamp
    secret = str(uuid.uuid4())
    source_id = webhook_source(pipeline, "hubspot-v3", secret, mapping=HUBSPOT_MAPPING)
    body = json_body(HUBSPOT_EVENTS)
    url = webhook_url(gateway, source_id)

    # When HubSpot delivers it
    response = send(gateway, source_id, body, hubspot_v3_headers(secret, url, body))

    # Then it is published: fields mapped from the array, the whole batch kept as the payload
    assert_accepted(response)
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert_from_source(record, pipeline, source_id)
    envelope = record.value
    assert envelope["event"] == "contact.creation"
    assert envelope["userId"] == "123456"
    assert envelope["originalTimestamp"] == "2024-05-01T11:00:00.123Z"
    assert envelope["properties"] == {"payload": HUBSPOT_EVENTS}
    assert envelope["context"]["webhook"]["scheme"] == "hubspot-v3"


def test_a_hubspot_v3_webhook_signed_for_another_url_is_refused(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a HubSpot v3 source, and a signature made over the URL without its ?source= query
    secret = str(uuid.uuid4())
    source_id = webhook_source(pipeline, "hubspot-v3", secret, mapping=HUBSPOT_MAPPING)
    body = json_body(HUBSPOT_EVENTS)
    other_url = gateway.url + "/v1/webhook"

    # When it is delivered to the source's URL
    response = send(gateway, source_id, body, hubspot_v3_headers(secret, other_url, body))

    # Then it is refused, and nothing is published
    assert_refused(response, 401, "INVALID_SIGNATURE")
    assert nothing_published(kafka_bootstrap, kafka_topic, pipeline)


# -- standard webhooks -----------------------------------------------------------------------------------


STANDARD_EVENT = {
    "type": "invoice.paid",
    "timestamp": "2024-05-01T11:00:00Z",
    "data": {"id": "inv_123", "user": "u_77"},
}
STANDARD_MAPPING = {"event": "type", "userId": "data.user", "properties.invoice": "data.id"}


def test_a_standard_webhooks_message_signed_by_the_reference_library_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a Standard Webhooks source, and a message signed by the standardwebhooks library
    secret = standard_webhooks_secret()
    source_id = webhook_source(pipeline, "standard-webhooks", secret, mapping=STANDARD_MAPPING)
    body = json_body(STANDARD_EVENT)

    # When it is delivered
    response = send(gateway, source_id, body, standard_webhooks_headers(secret, body, "msg_" + secrets.token_hex(8)))

    # Then it is published with the mapped fields
    assert_accepted(response)
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert_from_source(record, pipeline, source_id)
    assert record.value["event"] == "invoice.paid"
    assert record.value["userId"] == "u_77"
    assert record.value["properties"] == {"invoice": "inv_123"}


def test_a_standard_webhooks_message_signed_with_another_secret_is_refused(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a Standard Webhooks source, and a message signed by the library with another secret
    source_id = webhook_source(pipeline, "standard-webhooks", standard_webhooks_secret(), mapping=STANDARD_MAPPING)
    body = json_body(STANDARD_EVENT)
    headers = standard_webhooks_headers(standard_webhooks_secret(), body, "msg_" + secrets.token_hex(8))

    # When it is delivered
    response = send(gateway, source_id, body, headers)

    # Then it is refused, and nothing is published
    assert_refused(response, 401, "INVALID_SIGNATURE")
    assert nothing_published(kafka_bootstrap, kafka_topic, pipeline)


# -- generic hmac ----------------------------------------------------------------------------------------


GENERIC_EVENT = {"event": "Signed Up", "user": {"id": "u_9"}, "plan": "pro"}
GENERIC_MAPPING = {"event": "event", "userId": "user.id", "properties.plan": "plan"}
BASE64_OPTIONS = {"header": "X-Acme-Signature", "encoding": "base64", "prefix": "sha256="}


def test_a_generic_hmac_webhook_with_a_hex_signature_in_x_signature_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a generic-hmac source with its defaults (hex SHA-256 in X-Signature)
    secret = secrets.token_urlsafe(24)
    source_id = webhook_source(pipeline, "generic-hmac", secret, mapping=GENERIC_MAPPING)
    body = json_body(GENERIC_EVENT)

    # When a sender posts the body with its hex HMAC
    response = send(gateway, source_id, body, {"X-Signature": hex_hmac(secret, body)})

    # Then it is published with the mapped fields
    assert_accepted(response)
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert_from_source(record, pipeline, source_id)
    assert (record.value["event"], record.value["userId"]) == ("Signed Up", "u_9")
    assert record.value["properties"] == {"plan": "pro"}


def test_a_generic_hmac_webhook_whose_hex_signature_is_over_another_body_is_refused(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a generic-hmac source, and a hex signature over a different body
    secret = secrets.token_urlsafe(24)
    source_id = webhook_source(pipeline, "generic-hmac", secret, mapping=GENERIC_MAPPING)
    body = json_body(GENERIC_EVENT)
    signature = hex_hmac(secret, json_body({**GENERIC_EVENT, "plan": "free"}))

    # When it is delivered
    response = send(gateway, source_id, body, {"X-Signature": signature})

    # Then it is refused, and nothing is published
    assert_refused(response, 401, "INVALID_SIGNATURE")
    assert nothing_published(kafka_bootstrap, kafka_topic, pipeline)


def test_a_generic_hmac_webhook_with_a_prefixed_base64_signature_in_its_own_header_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a generic-hmac source configured for "sha256=<base64>" in X-Acme-Signature
    secret = secrets.token_urlsafe(24)
    source_id = webhook_source(pipeline, "generic-hmac", secret, mapping=GENERIC_MAPPING, options=BASE64_OPTIONS)
    body = json_body(GENERIC_EVENT)

    # When a sender posts the body signed that way
    response = send(gateway, source_id, body, {"X-Acme-Signature": "sha256=" + b64_hmac(secret, body)})

    # Then it is published
    assert_accepted(response)
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert_from_source(record, pipeline, source_id)
    assert record.value["event"] == "Signed Up"


def test_a_generic_hmac_webhook_with_a_base64_signature_under_another_secret_is_refused(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a generic-hmac source configured for "sha256=<base64>", and a signature made with another secret
    source_id = webhook_source(
        pipeline, "generic-hmac", secrets.token_urlsafe(24), mapping=GENERIC_MAPPING, options=BASE64_OPTIONS
    )
    body = json_body(GENERIC_EVENT)
    signature = "sha256=" + b64_hmac(secrets.token_urlsafe(24), body)

    # When it is delivered
    response = send(gateway, source_id, body, {"X-Acme-Signature": signature})

    # Then it is refused, and nothing is published
    assert_refused(response, 401, "INVALID_SIGNATURE")
    assert nothing_published(kafka_bootstrap, kafka_topic, pipeline)


# -- shared secret ---------------------------------------------------------------------------------------


def test_a_shared_secret_webhook_carrying_the_secret_in_its_header_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a shared-secret source that expects the secret in X-Webhook-Token
    secret = secrets.token_urlsafe(24)
    source_id = webhook_source(
        pipeline, "shared-secret", secret, mapping=GENERIC_MAPPING, options={"header": "X-Webhook-Token"}
    )
    body = json_body(GENERIC_EVENT)

    # When a sender posts with that header
    response = send(gateway, source_id, body, {"X-Webhook-Token": secret})

    # Then it is published
    assert_accepted(response)
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert_from_source(record, pipeline, source_id)
    assert record.value["event"] == "Signed Up"


def test_a_shared_secret_webhook_carrying_the_wrong_secret_is_refused(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a shared-secret source
    secret = secrets.token_urlsafe(24)
    source_id = webhook_source(
        pipeline, "shared-secret", secret, mapping=GENERIC_MAPPING, options={"header": "X-Webhook-Token"}
    )

    # When a sender posts with a different value in the header
    response = send(gateway, source_id, json_body(GENERIC_EVENT), {"X-Webhook-Token": secret + "x"})

    # Then it is refused, and nothing is published
    assert_refused(response, 401, "INVALID_SIGNATURE")
    assert nothing_published(kafka_bootstrap, kafka_topic, pipeline)


# -- none ------------------------------------------------------------------------------------------------


def test_an_unauthenticated_source_publishes_an_unsigned_webhook(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a source with scheme none
    source_id = webhook_source(pipeline, "none", mapping=GENERIC_MAPPING)

    # When a sender posts with no signature at all
    response = send(gateway, source_id, json_body(GENERIC_EVENT))

    # Then it is published
    assert_accepted(response)
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert_from_source(record, pipeline, source_id)
    assert record.value["event"] == "Signed Up"
    assert record.value["context"]["webhook"] == {"scheme": "none"}


def test_an_unauthenticated_source_checks_no_signature_header_even_a_wrong_one(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a source with scheme none: there is no signature that could be invalid
    source_id = webhook_source(pipeline, "none", mapping=GENERIC_MAPPING)
    body = json_body(GENERIC_EVENT)

    # When a sender posts with signature headers of other schemes that match nothing
    headers = {"X-Signature": "0" * 64, "Stripe-Signature": "t=1,v1=" + "0" * 64}
    response = send(gateway, source_id, body, headers)

    # Then no scheme is applied: it is published
    assert_accepted(response)
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["event"] == "Signed Up"


# -- sources, mapping, identity --------------------------------------------------------------------------


def test_a_webhook_for_an_unknown_source_is_not_found(gateway: Gateway) -> None:
    # Given a source id that was never created, one that is not a source id at all, and none
    for source in ("wh_" + secrets.token_urlsafe(12), "not-a-source", ""):
        # When a webhook is posted to it
        response = send(gateway, source, json_body(stripe_event()))

        # Then it is not found
        assert_refused(response, 404, "NOT_FOUND")


def test_a_pipeline_key_is_not_a_webhook_source(gateway: Gateway, pipeline: PipelineCreated) -> None:
    # Given a pipeline key used where a webhook source id belongs
    # When a webhook is posted with it
    response = send(gateway, pipeline.pipeline_key, json_body(stripe_event()))

    # Then it is not found
    assert_refused(response, 404, "NOT_FOUND")


def test_a_plain_text_body_is_published_raw_with_notes_on_what_could_not_be_mapped(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a source with the Stripe-like mapping, and a sender that posts plain text
    secret = secrets.token_urlsafe(24)
    source_id = webhook_source(pipeline, "github", secret, mapping=STRIPE_MAPPING)
    body = b"payment succeeded for cus_123: 42.00 EUR"

    # When it is delivered, correctly signed
    response = send(gateway, source_id, body, github_headers(secret, body), content_type="text/plain")

    # Then it is still published: the raw text under properties, the notes under context.webhook
    assert_accepted(response)
    envelope = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert envelope["type"] == "track"
    assert envelope["event"] == "webhook"
    assert envelope["properties"] == {"payload": "payment succeeded for cus_123: 42.00 EUR"}
    notes = envelope["context"]["webhook"]["notes"]
    assert any("'type' is not in the payload" in note for note in notes), notes
    assert any("not an object" in note for note in notes), notes


def test_a_json_array_body_is_published_raw_with_notes(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a source with the Stripe-like mapping, and a sender that posts a JSON array of events
    secret = "whsec_" + secrets.token_hex(16)
    source_id = webhook_source(pipeline, "stripe", secret, mapping=STRIPE_MAPPING)
    events = [stripe_event(), stripe_event()]
    body = json_body(events)

    # When it is delivered, correctly signed
    response = send(gateway, source_id, body, stripe_headers(secret, body))

    # Then the whole array is kept under properties.payload, with notes
    assert_accepted(response)
    envelope = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert envelope["properties"] == {"payload": events}
    assert envelope["userId"] is None
    assert envelope["context"]["webhook"]["notes"]


def test_a_payload_missing_the_mapped_paths_is_published_raw_with_a_note_per_missing_path(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a Stripe source with the Stripe-like mapping, and an event of another shape
    secret = "whsec_" + secrets.token_hex(16)
    source_id = webhook_source(pipeline, "stripe", secret, mapping=STRIPE_MAPPING)
    payload = {"kind": "ping", "sent": 1714561200}
    body = json_body(payload)

    # When it is delivered, correctly signed
    response = send(gateway, source_id, body, stripe_headers(secret, body))

    # Then it is published with the raw payload, and each unreadable path is noted
    assert_accepted(response)
    envelope = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert envelope["event"] == "webhook"
    assert envelope["properties"] == {"payload": payload}
    notes = envelope["context"]["webhook"]["notes"]
    for path in ("type", "data.object.customer", "id", "data.object.amount"):
        assert any(f"{path!r} is not in the payload" in note for note in notes), (path, notes)


def test_a_webhook_event_about_no_user_is_accepted_and_keyed_by_its_message_id(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a Stripe event with no customer (an account-level event)
    secret = "whsec_" + secrets.token_hex(16)
    source_id = webhook_source(pipeline, "stripe", secret, mapping={"event": "type", "messageId": "id"})
    event = {"id": "evt_" + secrets.token_hex(12), "type": "balance.available", "data": {"object": {"available": []}}}
    body = json_body(event)

    # When it is delivered
    response = send(gateway, source_id, body, stripe_headers(secret, body))

    # Then it is accepted without any identity, and keyed by its message id
    assert_accepted(response)
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert (record.value["userId"], record.value["anonymousId"]) == (None, None)
    assert record.value["messageId"] == event["id"]
    assert record.key == f"{pipeline.pipeline.id}:{event['id']}"


def test_a_payload_mapped_to_a_group_call_without_a_group_id_is_still_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a mapping that takes the call type from the payload, and a payload that says group but names none
    source_id = webhook_source(pipeline, "none", mapping={"type": "kind", "event": "action"})
    payload = {"kind": "group", "action": "Team Joined"}

    # When it is delivered
    response = send(gateway, source_id, json_body(payload))

    # Then it is published as a track, with the reason noted
    assert_accepted(response)
    envelope = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert envelope["type"] == "track"
    assert envelope["event"] == "Team Joined"
    assert envelope["context"]["webhook"]["notes"]


def test_a_mapped_identifier_too_long_for_the_envelope_is_kept_in_properties_not_refused(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a mapping whose userId path holds a 300-character value
    source_id = webhook_source(pipeline, "none", mapping={"event": "type", "userId": "user"})
    payload = {"type": "Signed Up", "user": "u" * 300}

    # When it is delivered
    response = send(gateway, source_id, json_body(payload))

    # Then it is published; the value is kept under properties and noted
    assert_accepted(response)
    envelope = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert envelope["userId"] is None
    assert envelope["properties"]["userId"] == "u" * 300
    assert envelope["context"]["webhook"]["notes"]


def test_a_mapped_timestamp_with_no_utc_equivalent_is_kept_in_properties_not_refused(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a mapping that reads the event time, and a time whose UTC equivalent falls before the year 1
    source_id = webhook_source(pipeline, "none", mapping={"event": "type", "timestamp": "at"})
    payload = {"type": "Synced", "at": "0001-01-01T00:30:00+01:00"}

    # When it is delivered
    response = send(gateway, source_id, json_body(payload))

    # Then it is published, the odd time kept under properties and noted, no original timestamp claimed
    assert_accepted(response)
    envelope = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert envelope["properties"] == {"timestamp": "0001-01-01T00:30:00+01:00"}
    assert envelope["originalTimestamp"] is None
    assert envelope["context"]["webhook"]["notes"]


def test_a_mapped_epoch_before_the_year_1000_is_published_as_an_iso_time(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a mapping that reads the event time, and a payload stamped -50,000,000,000 s (the year 385)
    source_id = webhook_source(pipeline, "none", mapping={"event": "type", "timestamp": "at"})

    # When it is delivered
    response = send(gateway, source_id, json_body({"type": "Synced", "at": -50_000_000_000}))

    # Then it is published with that time, written with a four-digit year
    assert_accepted(response)
    envelope = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert envelope["originalTimestamp"] == "0385-07-25T07:06:40.000Z"


# -- what can never be published: 4xx, so the vendor stops retrying ------------------------------------------


def test_a_webhook_nested_past_the_limit_is_refused_with_400(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given an unauthenticated source, and payloads nested 33, 300 and 900 levels deep (orjson encodes 254)
    source_id = webhook_source(pipeline, "none", mapping=GENERIC_MAPPING)
    for depth in (33, 300, 900):
        body = b'{"a":' * depth + b"1" + b"}" * depth

        # When each is posted
        response = send(gateway, source_id, body)

        # Then it is refused as the sender's fault (once a 500, which vendors retry), and nothing is published
        assert_refused(response, 400, "INVALID_PAYLOAD")
        assert "deeper than 32" in response.json()["error"]["message"]
    assert nothing_published(kafka_bootstrap, kafka_topic, pipeline)


def test_a_webhook_of_a_megabyte_is_refused_as_too_large_not_as_retryable(
    gateway: Gateway, pipeline: PipelineCreated
) -> None:
    # Given a source, and a JSON payload of 1,000,000 bytes (under 1 MiB; its envelope is over Kafka's 1 MB)
    source_id = webhook_source(pipeline, "none", mapping=GENERIC_MAPPING)
    body = json_body({"event": "Big", "blob": "x" * 999_970})
    assert 999_000 < len(body) < 1024 * 1024

    # When it is posted
    response = send(gateway, source_id, body)

    # Then it is 413: too large to ever be published (once a 503 with MSG_SIZE_TOO_LARGE: retry forever)
    assert_refused(response, 413, "PAYLOAD_TOO_LARGE")


def test_a_webhook_within_the_body_limit_whose_envelope_cannot_be_published_is_refused_with_413(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a source, and 400 KB of control characters as plain text: each one is six bytes as JSON
    source_id = webhook_source(pipeline, "none", mapping=GENERIC_MAPPING)
    body = b"\x01" * 400_000

    # When it is posted
    response = send(gateway, source_id, body, content_type="text/plain")

    # Then it is 413, not a 503 the vendor would retry forever, and nothing is published
    assert_refused(response, 413, "PAYLOAD_TOO_LARGE")
    assert nothing_published(kafka_bootstrap, kafka_topic, pipeline)


def test_a_webhook_at_the_body_limit_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a source with no mapping, and a JSON payload at the webhook body limit
    source_id = webhook_source(pipeline, "none")
    blob = "x" * (MAX_WEBHOOK_BYTES - 20)
    body = json_body({"blob": blob})
    assert len(body) <= MAX_WEBHOOK_BYTES

    # When it is posted
    response = send(gateway, source_id, body)

    # Then it is published whole, its envelope within what the producer can send
    assert_accepted(response)
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["properties"]["payload"]["blob"] == blob
