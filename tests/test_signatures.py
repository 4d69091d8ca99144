"""Server HMAC, every webhook scheme and field mapping, against signatures computed here, independently.

Pure functions: no database, no network. Standard Webhooks requests are signed by the vendor's own
``standardwebhooks`` library, so compatibility is proven by their implementation, not by ours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from ingestion.errors import InvalidSignature, StaleTimestamp
from ingestion.signatures import sign_server_request, verify_server_signature, verify_webhook
from ingestion.webhook_mapping import apply_mapping
from pipelines.keystore import WebhookSource

NOW = 1_700_000_000.0
NOW_MS = int(NOW * 1000)
BODY = b'{"type":"track","event":"Order Completed","properties":{"total":42.5}}'
SECRET = b"sk_live_current_0123456789abcdef"
PREVIOUS_SECRET = b"sk_live_previous_fedcba9876543210"
WEBHOOK_URL = "https://collect.example.com/v1/webhook?source=wh_abc123"


def hex_hmac(secret: bytes, message: bytes, algorithm: Any = hashlib.sha256) -> str:
    return hmac.new(secret, message, algorithm).hexdigest()


def b64_hmac(secret: bytes, message: bytes, algorithm: Any = hashlib.sha256) -> str:
    return base64.b64encode(hmac.new(secret, message, algorithm).digest()).decode()


def server_headers(secret: bytes, body: bytes, timestamp_ms: int) -> tuple[str, str]:
    return "sha256=" + hex_hmac(secret, f"{timestamp_ms}.".encode() + body), str(timestamp_ms)


def verify_server(
    signature: str | None,
    timestamp: str | None,
    *,
    body: bytes = BODY,
    secrets: tuple[bytes, ...] = (SECRET,),
    method: str = "POST",
    path: str = "/v1/events",
    accept_v1: bool = True,
) -> None:
    verify_server_signature(
        secrets=secrets,
        body=body,
        signature_header=signature,
        timestamp_header=timestamp,
        now=NOW,
        method=method,
        path=path,
        accept_v1=accept_v1,
    )


def v2_headers(secret: bytes, body: bytes, timestamp_ms: int, target: str = "POST /v1/events") -> tuple[str, str]:
    return "v2=" + hex_hmac(secret, f"{timestamp_ms}.{target}.".encode() + body), str(timestamp_ms)


def source(
    scheme: str, secret: str = "whk_secret_value", *, options: dict[str, Any] | None = None, tolerance: int = 300
) -> WebhookSource:
    return WebhookSource(
        id="wh_test", scheme=scheme, secret=secret, tolerance_seconds=tolerance, mapping={}, options=options or {}
    )


def verify(
    hook: WebhookSource, headers: dict[str, str], *, body: bytes = BODY, url: str = WEBHOOK_URL, method: str = "POST"
) -> None:
    verify_webhook(source=hook, method=method, url=url, headers=headers, body=body, now=NOW)


# -- server-side HMAC ---------------------------------------------------------------------------


def test_server_request_signed_over_timestamp_dot_body_is_accepted() -> None:
    signature, timestamp = server_headers(SECRET, BODY, NOW_MS)

    verify_server(signature, timestamp)


def test_sign_server_request_produces_the_documented_headers() -> None:
    headers = sign_server_request(SECRET, BODY, NOW_MS)

    assert headers == {
        "X-Signature": "sha256=" + hex_hmac(SECRET, b"1700000000000." + BODY),
        "X-Timestamp": "1700000000000",
    }


def test_server_request_signed_with_sign_server_request_is_accepted() -> None:
    headers = sign_server_request(SECRET, BODY, NOW_MS - 1_000)

    verify_server(headers["X-Signature"], headers["X-Timestamp"])


@pytest.mark.parametrize("signing_secret", [SECRET, PREVIOUS_SECRET], ids=["new", "previous"])
def test_server_request_signed_with_either_active_secret_is_accepted_during_rotation(signing_secret: bytes) -> None:
    signature, timestamp = server_headers(signing_secret, BODY, NOW_MS)

    verify_server(signature, timestamp, secrets=(SECRET, PREVIOUS_SECRET))


def test_server_request_signed_with_a_retired_secret_is_rejected() -> None:
    signature, timestamp = server_headers(PREVIOUS_SECRET, BODY, NOW_MS)

    with pytest.raises(InvalidSignature):
        verify_server(signature, timestamp, secrets=(SECRET,))


def test_server_request_with_a_tampered_body_is_rejected() -> None:
    signature, timestamp = server_headers(SECRET, BODY, NOW_MS)

    with pytest.raises(InvalidSignature):
        verify_server(signature, timestamp, body=BODY.replace(b"42.5", b"4250"))


def test_server_request_with_a_changed_timestamp_is_rejected_because_the_timestamp_is_signed() -> None:
    signature, _ = server_headers(SECRET, BODY, NOW_MS)

    with pytest.raises(InvalidSignature):
        verify_server(signature, str(NOW_MS + 1))


def test_server_request_without_a_signature_header_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify_server(None, str(NOW_MS))


def test_server_signature_without_the_sha256_prefix_is_rejected() -> None:
    signature, timestamp = server_headers(SECRET, BODY, NOW_MS)

    with pytest.raises(InvalidSignature):
        verify_server(signature.removeprefix("sha256="), timestamp)


def test_server_signature_with_non_ascii_garbage_is_rejected_not_crashed() -> None:
    with pytest.raises(InvalidSignature):
        verify_server("sha256=é" * 10, str(NOW_MS))


def test_server_request_without_a_timestamp_is_stale() -> None:
    signature, _ = server_headers(SECRET, BODY, NOW_MS)

    with pytest.raises(StaleTimestamp):
        verify_server(signature, None)


def test_server_request_with_a_malformed_timestamp_is_stale() -> None:
    signature = "sha256=" + hex_hmac(SECRET, b"yesterday." + BODY)

    with pytest.raises(StaleTimestamp):
        verify_server(signature, "yesterday")


def test_server_request_older_than_five_minutes_is_stale() -> None:
    signature, timestamp = server_headers(SECRET, BODY, NOW_MS - 301_000)

    with pytest.raises(StaleTimestamp):
        verify_server(signature, timestamp)


def test_server_request_more_than_five_minutes_in_the_future_is_stale() -> None:
    signature, timestamp = server_headers(SECRET, BODY, NOW_MS + 301_000)

    with pytest.raises(StaleTimestamp):
        verify_server(signature, timestamp)


@pytest.mark.parametrize("offset_ms", [-299_000, 299_000], ids=["past", "future"])
def test_server_request_within_five_minutes_either_way_is_accepted(offset_ms: int) -> None:
    signature, timestamp = server_headers(SECRET, BODY, NOW_MS + offset_ms)

    verify_server(signature, timestamp)


def test_server_timestamp_sent_in_seconds_is_stale_and_says_milliseconds() -> None:
    signature, timestamp = server_headers(SECRET, BODY, int(NOW))

    with pytest.raises(StaleTimestamp, match="milliseconds"):
        verify_server(signature, timestamp)


def test_server_request_signed_v2_over_method_path_and_body_is_accepted() -> None:
    signature, timestamp = v2_headers(SECRET, BODY, NOW_MS)

    verify_server(signature, timestamp)


@pytest.mark.parametrize("target", ["POST /v1/batch", "PUT /v1/events", "POST /v1/events/", "post /v1/events"], ids=str)
def test_server_request_signed_v2_for_another_method_or_path_is_rejected(target: str) -> None:
    signature, timestamp = v2_headers(SECRET, BODY, NOW_MS, target)

    with pytest.raises(InvalidSignature):
        verify_server(signature, timestamp)


def test_sign_server_request_with_a_method_and_path_produces_a_v2_signature() -> None:
    headers = sign_server_request(SECRET, BODY, NOW_MS, method="POST", path="/v1/batch")

    assert headers == {
        "X-Signature": "v2=" + hex_hmac(SECRET, b"1700000000000.POST /v1/batch." + BODY),
        "X-Timestamp": "1700000000000",
    }
    verify_server(headers["X-Signature"], headers["X-Timestamp"], path="/v1/batch")


def test_a_v1_signature_is_rejected_when_v1_is_turned_off_and_the_error_says_to_sign_v2() -> None:
    signature, timestamp = server_headers(SECRET, BODY, NOW_MS)

    with pytest.raises(InvalidSignature, match="v2="):
        verify_server(signature, timestamp, accept_v1=False)


def test_server_request_for_a_pipeline_without_secrets_is_rejected() -> None:
    signature, timestamp = server_headers(SECRET, BODY, NOW_MS)

    with pytest.raises(InvalidSignature):
        verify_server(signature, timestamp, secrets=())


# -- stripe -------------------------------------------------------------------------------------


def stripe_header(secret: str, body: bytes, timestamp: int, *, extra: str = "") -> str:
    return f"t={timestamp},v1={hex_hmac(secret.encode(), f'{timestamp}.'.encode() + body)}{extra}"


def test_stripe_signature_is_accepted() -> None:
    hook = source("stripe", "whsec_stripe_endpoint_secret")

    verify(hook, {"stripe-signature": stripe_header(hook.secret, BODY, int(NOW)) + ",v0=deadbeef"})


def test_stripe_signature_is_accepted_when_any_v1_matches() -> None:
    hook = source("stripe", "whsec_new")
    old = hex_hmac(b"whsec_old", f"{int(NOW)}.".encode() + BODY)
    new = hex_hmac(b"whsec_new", f"{int(NOW)}.".encode() + BODY)

    verify(hook, {"stripe-signature": f"t={int(NOW)},v1={old},v1={new}"})


def test_stripe_header_name_is_matched_case_insensitively() -> None:
    hook = source("stripe", "whsec_stripe_endpoint_secret")

    verify(hook, {"Stripe-Signature": stripe_header(hook.secret, BODY, int(NOW))})


def test_stripe_signature_over_a_tampered_body_is_rejected() -> None:
    hook = source("stripe", "whsec_stripe_endpoint_secret")

    with pytest.raises(InvalidSignature):
        verify(hook, {"stripe-signature": stripe_header(hook.secret, BODY, int(NOW))}, body=BODY + b" ")


def test_stripe_header_with_only_a_v0_signature_is_rejected() -> None:
    hook = source("stripe", "whsec_stripe_endpoint_secret")
    v1 = stripe_header(hook.secret, BODY, int(NOW))

    with pytest.raises(InvalidSignature):
        verify(hook, {"stripe-signature": v1.replace("v1=", "v0=")})


def test_stripe_header_without_a_timestamp_is_rejected() -> None:
    hook = source("stripe", "whsec_stripe_endpoint_secret")

    with pytest.raises(InvalidSignature):
        verify(hook, {"stripe-signature": "v1=" + hex_hmac(hook.secret.encode(), BODY)})


def test_stripe_request_without_the_header_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify(source("stripe", "whsec_stripe_endpoint_secret"), {})


def test_stripe_event_older_than_the_tolerance_is_stale() -> None:
    hook = source("stripe", "whsec_stripe_endpoint_secret", tolerance=300)

    with pytest.raises(StaleTimestamp):
        verify(hook, {"stripe-signature": stripe_header(hook.secret, BODY, int(NOW) - 301)})


def test_stripe_event_from_beyond_the_tolerance_in_the_future_is_stale() -> None:
    hook = source("stripe", "whsec_stripe_endpoint_secret", tolerance=300)

    with pytest.raises(StaleTimestamp):
        verify(hook, {"stripe-signature": stripe_header(hook.secret, BODY, int(NOW) + 301)})


def test_stripe_tolerance_comes_from_the_source() -> None:
    hook = source("stripe", "whsec_stripe_endpoint_secret", tolerance=900)

    verify(hook, {"stripe-signature": stripe_header(hook.secret, BODY, int(NOW) - 600)})


# -- shopify ------------------------------------------------------------------------------------


def test_shopify_hmac_of_the_body_is_accepted() -> None:
    hook = source("shopify", "shpss_app_client_secret")

    verify(hook, {"x-shopify-hmac-sha256": b64_hmac(hook.secret.encode(), BODY)})


def test_shopify_hmac_of_another_body_is_rejected() -> None:
    hook = source("shopify", "shpss_app_client_secret")

    with pytest.raises(InvalidSignature):
        verify(hook, {"x-shopify-hmac-sha256": b64_hmac(hook.secret.encode(), b"{}")})


def test_shopify_hmac_under_another_secret_is_rejected() -> None:
    hook = source("shopify", "shpss_app_client_secret")

    with pytest.raises(InvalidSignature):
        verify(hook, {"x-shopify-hmac-sha256": b64_hmac(b"shpss_someone_else", BODY)})


def test_shopify_request_without_the_header_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify(source("shopify", "shpss_app_client_secret"), {"x-shopify-topic": "orders/create"})


# -- github -------------------------------------------------------------------------------------


def test_github_documented_example_signature_is_accepted() -> None:
    # The worked example in GitHub's "Validating webhook deliveries" guide.
    hook = source("github", "It's a Secret to Everybody")

    verify(
        hook,
        {"x-hub-signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"},
        body=b"Hello, World!",
    )


def test_github_signature_of_the_body_is_accepted() -> None:
    hook = source("github", "gh_webhook_secret")

    verify(hook, {"x-hub-signature-256": "sha256=" + hex_hmac(hook.secret.encode(), BODY)})


def test_github_signature_over_a_tampered_body_is_rejected() -> None:
    hook = source("github", "gh_webhook_secret")

    with pytest.raises(InvalidSignature):
        verify(hook, {"x-hub-signature-256": "sha256=" + hex_hmac(hook.secret.encode(), BODY)}, body=b"{}")


def test_github_legacy_sha1_signature_is_not_accepted() -> None:
    hook = source("github", "gh_webhook_secret")

    with pytest.raises(InvalidSignature):
        verify(hook, {"x-hub-signature": "sha1=" + hex_hmac(hook.secret.encode(), BODY, hashlib.sha1)})


# -- hubspot-v3 ---------------------------------------------------------------------------------


def hubspot_headers(secret: str, *, method: str, signed_uri: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
    source_string = method.encode() + signed_uri.encode() + body + str(timestamp_ms).encode()
    return {
        "x-hubspot-signature-v3": b64_hmac(secret.encode(), source_string),
        "x-hubspot-request-timestamp": str(timestamp_ms),
    }


def test_hubspot_v3_signature_over_method_uri_body_and_timestamp_is_accepted() -> None:
    hook = source("hubspot-v3", "hubspot-client-secret")
    headers = hubspot_headers(hook.secret, method="POST", signed_uri=WEBHOOK_URL, body=BODY, timestamp_ms=NOW_MS)

    verify(hook, headers)


def test_hubspot_v3_signs_the_url_with_its_listed_escapes_decoded() -> None:
    hook = source("hubspot-v3", "hubspot-client-secret")
    called = "https://collect.example.com/v1/webhook?source=wh_abc123&who=a%40b.com&path=%2Fx%3Ay%3Fz&s=%21%24%27%28%29%2A%2C%3B"
    signed = "https://collect.example.com/v1/webhook?source=wh_abc123&who=a@b.com&path=/x:y?z&s=!$'()*,;"
    headers = hubspot_headers(hook.secret, method="POST", signed_uri=signed, body=BODY, timestamp_ms=NOW_MS)

    verify(hook, headers, url=called)


def test_hubspot_v3_leaves_other_escapes_encoded() -> None:
    hook = source("hubspot-v3", "hubspot-client-secret")
    called = "https://collect.example.com/v1/webhook?source=wh_abc123&name=Ada%20Lovelace&pct=%2540"
    headers = hubspot_headers(hook.secret, method="POST", signed_uri=called, body=BODY, timestamp_ms=NOW_MS)

    verify(hook, headers, url=called)


def test_hubspot_v3_signature_over_a_fully_decoded_url_is_rejected() -> None:
    hook = source("hubspot-v3", "hubspot-client-secret")
    called = "https://collect.example.com/v1/webhook?source=wh_abc123&name=Ada%20Lovelace"
    wrongly_decoded = "https://collect.example.com/v1/webhook?source=wh_abc123&name=Ada Lovelace"
    headers = hubspot_headers(hook.secret, method="POST", signed_uri=wrongly_decoded, body=BODY, timestamp_ms=NOW_MS)

    with pytest.raises(InvalidSignature):
        verify(hook, headers, url=called)


def test_hubspot_v3_signature_for_another_url_is_rejected() -> None:
    hook = source("hubspot-v3", "hubspot-client-secret")
    headers = hubspot_headers(hook.secret, method="POST", signed_uri=WEBHOOK_URL, body=BODY, timestamp_ms=NOW_MS)

    with pytest.raises(InvalidSignature):
        verify(hook, headers, url=WEBHOOK_URL.replace("wh_abc123", "wh_other"))


def test_hubspot_v3_signature_over_a_tampered_body_is_rejected() -> None:
    hook = source("hubspot-v3", "hubspot-client-secret")
    headers = hubspot_headers(hook.secret, method="POST", signed_uri=WEBHOOK_URL, body=BODY, timestamp_ms=NOW_MS)

    with pytest.raises(InvalidSignature):
        verify(hook, headers, body=BODY.replace(b"Order", b"Refund"))


def test_hubspot_v3_request_without_a_timestamp_header_is_rejected() -> None:
    hook = source("hubspot-v3", "hubspot-client-secret")
    headers = hubspot_headers(hook.secret, method="POST", signed_uri=WEBHOOK_URL, body=BODY, timestamp_ms=NOW_MS)
    del headers["x-hubspot-request-timestamp"]

    with pytest.raises(InvalidSignature):
        verify(hook, headers)


def test_hubspot_v3_request_older_than_five_minutes_is_stale() -> None:
    hook = source("hubspot-v3", "hubspot-client-secret")
    headers = hubspot_headers(
        hook.secret, method="POST", signed_uri=WEBHOOK_URL, body=BODY, timestamp_ms=NOW_MS - 301_000
    )

    with pytest.raises(StaleTimestamp):
        verify(hook, headers)


def test_hubspot_v3_request_from_beyond_five_minutes_in_the_future_is_stale() -> None:
    hook = source("hubspot-v3", "hubspot-client-secret")
    headers = hubspot_headers(
        hook.secret, method="POST", signed_uri=WEBHOOK_URL, body=BODY, timestamp_ms=NOW_MS + 301_000
    )

    with pytest.raises(StaleTimestamp):
        verify(hook, headers)


# -- standard-webhooks --------------------------------------------------------------------------

STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-key-32byt").decode()


def standard_headers(
    secret: str, body: bytes, *, msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", at: float = NOW
) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at)), "webhook-signature": signature}


def test_standard_webhooks_signature_made_by_the_reference_library_is_accepted() -> None:
    hook = source("standard-webhooks", STANDARD_SECRET)

    verify(hook, standard_headers(STANDARD_SECRET, BODY))


def test_standard_webhooks_secret_without_base64_padding_is_accepted() -> None:
    unpadded = "whsec_" + base64.b64encode(b"a key that needs padding").decode().rstrip("=")
    hook = source("standard-webhooks", unpadded)

    verify(hook, standard_headers(unpadded, BODY))


def test_standard_webhooks_accepts_any_v1_in_a_space_separated_list() -> None:
    hook = source("standard-webhooks", STANDARD_SECRET)
    headers = standard_headers(STANDARD_SECRET, BODY)
    other = standard_headers("whsec_" + base64.b64encode(b"rotated-away-old-key").decode(), BODY)["webhook-signature"]
    headers["webhook-signature"] = f"v1a,c29tZXRoaW5nIGFzeW1tZXRyaWM= {other} {headers['webhook-signature']}"

    verify(hook, headers)


def test_standard_webhooks_signature_under_another_secret_is_rejected() -> None:
    hook = source("standard-webhooks", STANDARD_SECRET)

    with pytest.raises(InvalidSignature):
        verify(hook, standard_headers("whsec_" + base64.b64encode(b"someone else's key").decode(), BODY))


def test_standard_webhooks_signature_over_a_tampered_body_is_rejected() -> None:
    hook = source("standard-webhooks", STANDARD_SECRET)

    with pytest.raises(InvalidSignature):
        verify(hook, standard_headers(STANDARD_SECRET, BODY), body=BODY.replace(b"42.5", b"0"))


def test_standard_webhooks_signature_for_another_message_id_is_rejected() -> None:
    hook = source("standard-webhooks", STANDARD_SECRET)
    headers = standard_headers(STANDARD_SECRET, BODY)
    headers["webhook-id"] = "msg_replayed_under_new_id"

    with pytest.raises(InvalidSignature):
        verify(hook, headers)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_webhooks_request_missing_a_header_is_rejected(missing: str) -> None:
    hook = source("standard-webhooks", STANDARD_SECRET)
    headers = standard_headers(STANDARD_SECRET, BODY)
    del headers[missing]

    with pytest.raises(InvalidSignature):
        verify(hook, headers)


def test_standard_webhooks_message_older_than_the_tolerance_is_stale() -> None:
    hook = source("standard-webhooks", STANDARD_SECRET)

    with pytest.raises(StaleTimestamp):
        verify(hook, standard_headers(STANDARD_SECRET, BODY, at=NOW - 301))


def test_standard_webhooks_message_from_beyond_the_tolerance_in_the_future_is_stale() -> None:
    hook = source("standard-webhooks", STANDARD_SECRET)

    with pytest.raises(StaleTimestamp):
        verify(hook, standard_headers(STANDARD_SECRET, BODY, at=NOW + 301))


# -- generic-hmac -------------------------------------------------------------------------------


def test_generic_hmac_defaults_to_hex_sha256_in_x_signature() -> None:
    hook = source("generic-hmac", "generic-secret")

    verify(hook, {"x-signature": hex_hmac(b"generic-secret", BODY)})


def test_generic_hmac_honours_header_base64_prefix_and_sha512_options() -> None:
    options = {"header": "X-Acme-Signature", "encoding": "base64", "prefix": "sha512=", "algorithm": "sha512"}
    hook = source("generic-hmac", "generic-secret", options=options)

    verify(hook, {"x-acme-signature": "sha512=" + b64_hmac(b"generic-secret", BODY, hashlib.sha512)})


def test_generic_hmac_accepts_sha1_when_configured() -> None:
    hook = source("generic-hmac", "generic-secret", options={"algorithm": "sha1", "prefix": "sha1="})

    verify(hook, {"x-signature": "sha1=" + hex_hmac(b"generic-secret", BODY, hashlib.sha1)})


def test_generic_hmac_without_the_configured_prefix_is_rejected() -> None:
    hook = source("generic-hmac", "generic-secret", options={"prefix": "sha256="})

    with pytest.raises(InvalidSignature):
        verify(hook, {"x-signature": hex_hmac(b"generic-secret", BODY)})


def test_generic_hmac_over_a_tampered_body_is_rejected() -> None:
    hook = source("generic-hmac", "generic-secret")

    with pytest.raises(InvalidSignature):
        verify(hook, {"x-signature": hex_hmac(b"generic-secret", BODY)}, body=b"{}")


def test_generic_hmac_with_the_wrong_algorithm_is_rejected() -> None:
    hook = source("generic-hmac", "generic-secret", options={"algorithm": "sha512"})

    with pytest.raises(InvalidSignature):
        verify(hook, {"x-signature": hex_hmac(b"generic-secret", BODY)})


def test_generic_hmac_request_without_the_header_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify(source("generic-hmac", "generic-secret"), {})


def test_generic_hmac_with_an_unsupported_algorithm_rejects_rather_than_crashes() -> None:
    hook = source("generic-hmac", "generic-secret", options={"algorithm": "md5"})

    with pytest.raises(InvalidSignature, match="misconfigured"):
        verify(hook, {"x-signature": hex_hmac(b"generic-secret", BODY, hashlib.md5)})


# -- shared-secret, none, and configuration faults ----------------------------------------------


def test_shared_secret_header_equal_to_the_secret_is_accepted() -> None:
    verify(source("shared-secret", "s3cr3t-token"), {"x-webhook-secret": "s3cr3t-token"})


def test_shared_secret_in_a_configured_header_is_accepted() -> None:
    hook = source("shared-secret", "s3cr3t-token", options={"header": "X-Auth-Token"})

    verify(hook, {"X-Auth-Token": "s3cr3t-token"})


def test_shared_secret_that_differs_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify(source("shared-secret", "s3cr3t-token"), {"x-webhook-secret": "s3cr3t-tokeN"})


def test_shared_secret_request_without_the_header_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify(source("shared-secret", "s3cr3t-token"), {})


def test_shared_secret_source_with_an_empty_secret_accepts_nothing() -> None:
    with pytest.raises(InvalidSignature):
        verify(source("shared-secret", ""), {"x-webhook-secret": ""})


def test_scheme_none_accepts_an_unsigned_request() -> None:
    verify(source("none", ""), {})


def test_unknown_scheme_rejects_rather_than_crashes() -> None:
    with pytest.raises(InvalidSignature):
        verify(source("carrier-pigeon", "secret"), {})


# -- field mapping ------------------------------------------------------------------------------

STRIPE_EVENT = {
    "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    "type": "invoice.paid",
    "created": 1_700_000_000,
    "data": {
        "object": {
            "id": "in_1",
            "customer": "cus_9s6XKzkNRiz8i3",
            "amount_paid": 2000,
            "currency": "usd",
            "lines": {"data": [{"price": {"id": "price_basic"}}, {"price": {"id": "price_addon"}}]},
        }
    },
}


def test_mapping_fills_envelope_fields_from_dotted_paths() -> None:
    mapping = {
        "event": "type",
        "messageId": "id",
        "userId": "data.object.customer",
        "timestamp": "created",
        "properties.amount": "data.object.amount_paid",
        "properties.currency": "data.object.currency",
    }

    event, notes = apply_mapping(STRIPE_EVENT, mapping)

    assert event == {
        "type": "track",
        "event": "invoice.paid",
        "messageId": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
        "userId": "cus_9s6XKzkNRiz8i3",
        "timestamp": "2023-11-14T22:13:20.000Z",
        "properties": {"amount": 2000, "currency": "usd"},
    }
    assert notes == []


def test_mapping_reads_list_elements_by_integer_index() -> None:
    mapping = {
        "event": "type",
        "properties.first_price": "data.object.lines.data.0.price.id",
        "properties.second_price": "data.object.lines.data.1.price.id",
    }

    event, notes = apply_mapping(STRIPE_EVENT, mapping)

    assert event["properties"] == {"first_price": "price_basic", "second_price": "price_addon"}
    assert notes == []


def test_mapping_notes_a_path_that_is_not_in_the_payload_and_leaves_the_field_out() -> None:
    event, notes = apply_mapping(
        STRIPE_EVENT, {"event": "type", "userId": "data.object.email", "properties.id": "data.object.lines.data.5.id"}
    )

    assert "userId" not in event
    assert any("data.object.email" in note for note in notes)
    assert any("data.object.lines.data.5.id" in note for note in notes)


def test_mapping_keeps_a_timestamp_too_long_for_the_envelope_in_properties_not_refused() -> None:
    # Given a payload whose mapped time is an ISO string with 100 characters of fraction
    stamp = "2024-05-01T12:00:00." + "1" * 100 + "Z"

    # When it is mapped
    event, notes = apply_mapping({"at": stamp}, {"timestamp": "at"})

    # Then the envelope would refuse it, so it is kept under properties, with a note
    assert "timestamp" not in event
    assert event["properties"]["timestamp"] == stamp
    assert any(note.startswith("timestamp:") for note in notes)


def test_mapping_without_a_readable_event_name_falls_back_to_webhook_and_says_so() -> None:
    event, notes = apply_mapping({"kind": "ping", "n": 1}, {"event": "type", "properties.n": "n"})

    assert event["event"] == "webhook"
    assert any("event" in note and "webhook" in note for note in notes)


def test_empty_mapping_keeps_the_whole_payload_under_properties() -> None:
    event, notes = apply_mapping(STRIPE_EVENT, {})

    assert event == {"type": "track", "event": "webhook", "properties": {"payload": STRIPE_EVENT}}
    assert any("payload" in note for note in notes)


def test_payload_that_is_not_an_object_is_kept_under_properties() -> None:
    hubspot_batch = [{"objectId": 123, "subscriptionType": "contact.creation"}]

    event, notes = apply_mapping(hubspot_batch, {"event": "0.subscriptionType", "userId": "0.objectId"})

    assert event == {
        "type": "track",
        "event": "contact.creation",
        "userId": "123",
        "properties": {"payload": hubspot_batch},
    }
    assert any("not an object" in note for note in notes)


def test_scalar_payload_is_kept_under_properties() -> None:
    event, notes = apply_mapping("just a string", {"event": "type"})

    assert event["properties"] == {"payload": "just a string"}
    assert notes


def test_mapping_of_a_whole_object_to_properties_takes_it_with_specific_fields_on_top() -> None:
    mapping = {"event": "type", "properties": "data.object", "properties.currency": "type"}

    event, _ = apply_mapping(STRIPE_EVENT, mapping)

    assert event["properties"]["customer"] == "cus_9s6XKzkNRiz8i3"
    assert event["properties"]["currency"] == "invoice.paid"


def test_mapping_can_make_an_identify_with_traits() -> None:
    payload = {"kind": "identify", "user": {"id": 42, "email": "ada@example.com", "plan": "pro"}}

    event, notes = apply_mapping(
        payload, {"type": "kind", "userId": "user.id", "traits": "user", "properties.plan": "user.plan"}
    )

    assert event["type"] == "identify"
    assert event["userId"] == "42"
    assert event["traits"] == {"id": 42, "email": "ada@example.com", "plan": "pro"}
    assert "event" not in event
    assert notes == []


def test_mapping_of_an_unknown_type_keeps_track_and_the_value() -> None:
    event, notes = apply_mapping({"kind": "refund"}, {"type": "kind"})

    assert event["type"] == "track"
    assert event["properties"]["type"] == "refund"
    assert any("type" in note for note in notes)


def test_mapping_keeps_a_non_text_identifier_under_properties_instead_of_dropping_it() -> None:
    payload = {"event": "signup", "user": {"id": 7, "tags": ["a"]}}

    event, notes = apply_mapping(payload, {"event": "event", "userId": "user"})

    assert "userId" not in event
    assert event["properties"]["userId"] == {"id": 7, "tags": ["a"]}
    assert notes


def test_mapping_turns_unix_milliseconds_into_an_iso_timestamp() -> None:
    event, _ = apply_mapping({"occurredAt": 1_700_000_000_123, "e": "x"}, {"event": "e", "timestamp": "occurredAt"})

    assert event["timestamp"] == "2023-11-14T22:13:20.123Z"


def test_mapping_keeps_an_unparseable_timestamp_under_properties() -> None:
    event, notes = apply_mapping({"when": "last tuesday", "e": "x"}, {"event": "e", "timestamp": "when"})

    assert "timestamp" not in event
    assert event["properties"]["timestamp"] == "last tuesday"
    assert notes


def test_mapping_sets_nested_context_fields() -> None:
    payload = {"e": "x", "page": "https://shop.example.com/checkout", "ip": "203.0.113.7"}

    event, _ = apply_mapping(
        payload, {"event": "e", "context.page.url": "page", "context.ip": "ip", "properties.p": "page"}
    )

    assert event["context"] == {"page": {"url": "https://shop.example.com/checkout"}, "ip": "203.0.113.7"}


def test_mapping_does_not_modify_the_payload() -> None:
    payload = json.loads(json.dumps(STRIPE_EVENT))

    apply_mapping(payload, {"event": "type", "properties": "data.object", "properties.extra": "id"})

    assert payload == STRIPE_EVENT
