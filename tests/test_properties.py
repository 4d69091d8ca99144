"""Properties of everything that parses hostile bytes, checked with Hypothesis over inputs no one
would write by hand: the body decoder, the envelope builder, the pixel query, the webhook mapping,
every signature verifier, and the cookies and messages that carry client text out again.

Each property is one the gateway promises whatever a client sends: an answer in the error shape and
never a crash (every failure is an ApiError with a 4xx status), a valid signature always verifies and
any one-byte change never does, and no CR, LF or ';' ever reaches a Set-Cookie header, nor CR or LF
an error message (messages are logged, as one line each).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from django.http import QueryDict
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ingestion import event_types
from ingestion.envelope import MAX_TIME_LENGTH, RequestFacts, build_envelope
from ingestion.errors import ApiError, InvalidPayload, InvalidSignature
from ingestion.identity import click_ids_from_page, cookie_headers, resolve_identity
from ingestion.payload import MAX_DEPTH, decode_json_body, decompress, depth_exceeds
from ingestion.pixel import event_from_query
from ingestion.records import to_record
from ingestion.signatures import secret_problem, sign_server_request, verify_server_signature, verify_webhook
from ingestion.webhook_mapping import MAPPABLE_FIELDS, OBJECT_TARGETS, MappingInvalid, apply_mapping, validate_mapping
from pipelines.keystore import WebhookSource

NOW = 1_714_561_200.0
LIMIT = 64 * 1024
HOSTILE_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "\r\n", "a;b=c", "\x00", "é", "<img src=x>", "%0d%0a", "1e400", "-0", "9" * 25, "2024-05-01T12:00:00.000Z"]
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson parses as an int; larger ones are floats
    | st.floats(allow_nan=False, allow_infinity=False)
    | HOSTILE_TEXT
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(HOSTILE_TEXT, children, max_size=4),
    max_leaves=12,
)
ISO_TIMES = st.datetimes(timezones=st.none() | st.just(UTC)).map(lambda moment: moment.isoformat()) | st.text(
    alphabet="0123456789", min_size=1, max_size=80
).map(lambda fraction: f"2024-05-01T12:00:00.{fraction}Z")  # Python reads any number of fraction digits
EVENT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(event_types.ALL) | HOSTILE_TEXT | JSON_SCALARS,
    "event": HOSTILE_TEXT | JSON_SCALARS,
    "name": HOSTILE_TEXT | JSON_SCALARS,
    "userId": JSON_SCALARS,
    "anonymousId": JSON_SCALARS,
    "groupId": JSON_SCALARS,
    "messageId": JSON_SCALARS,
    "timestamp": ISO_TIMES | HOSTILE_TEXT | JSON_SCALARS,
    "sentAt": ISO_TIMES | HOSTILE_TEXT | JSON_SCALARS,
    "properties": JSON,
    "traits": JSON,
    "context": JSON | st.fixed_dictionaries({"page": st.fixed_dictionaries({"url": HOSTILE_TEXT})}),
    "pipelineId": JSON_SCALARS,
    "writeKey": JSON_SCALARS,
}
EVENTS = st.fixed_dictionaries({}, optional=EVENT_FIELDS) | st.dictionaries(HOSTILE_TEXT, JSON, max_size=4)


def facts(**extra: Any) -> RequestFacts:
    return RequestFacts(
        pipeline_id="pip_props",
        source_kind="server",
        source_id=None,
        received_at=datetime(2024, 5, 1, 12, tzinfo=UTC),
        ip="203.0.113.9",
        user_agent="props",
        gpc=False,
        **extra,
    )


def a_clients_error(error: ApiError) -> None:
    """What every refusal of hostile input must be: the client's error, in one line."""
    assert 400 <= error.status < 500, error
    assert "\r" not in error.message and "\n" not in error.message, error.message


# -- the body decoder ---------------------------------------------------------------------------


@given(
    raw=st.binary(max_size=3000) | JSON.map(orjson.dumps) | st.binary(max_size=3000).map(gzip.compress),
    content_type=st.sampled_from(["application/json", "text/plain; charset=utf-8", "", "text/html", "multipart/x"]),
    encoding=st.sampled_from(["", "gzip", "identity", "x-gzip", "br", "GZIP"]),
)
@settings(max_examples=300)
def test_any_bytes_decode_to_an_object_or_a_clients_error(raw: bytes, content_type: str, encoding: str) -> None:
    try:
        body = decode_json_body(raw, content_type=content_type, content_encoding=encoding, limit=LIMIT)
    except ApiError as error:
        a_clients_error(error)
    else:
        assert type(body) is dict
        assert not depth_exceeds(body, MAX_DEPTH)


@given(body=st.dictionaries(HOSTILE_TEXT, JSON, max_size=6), cuts=st.lists(st.integers(min_value=0), max_size=5))
def test_a_json_object_in_any_number_of_gzip_members_decodes_whole(body: dict[str, Any], cuts: list[int]) -> None:
    # Given the object's bytes cut into up to six pieces, each its own gzip member
    data = orjson.dumps(body)
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces = [data[start:end] for start, end in zip([0, *points], [*points, len(data)], strict=True)]
    raw = b"".join(gzip.compress(piece) for piece in pieces)

    # When it is decoded, then it is the object, whole
    assert decode_json_body(raw, content_type="application/json", content_encoding="gzip", limit=1 << 20) == body


@given(raw=st.binary(max_size=2000).map(lambda data: zlib.compress(data)[:50] + data), limit=st.integers(0, 3000))
@example(raw=gzip.compress(b"x" * 5000) * 2, limit=4096)
def test_nothing_decompressed_is_ever_over_the_limit(raw: bytes, limit: int) -> None:
    for candidate in (raw, gzip.compress(raw)):
        try:
            data = decompress(candidate, content_encoding="gzip", limit=limit)
        except ApiError as error:
            a_clients_error(error)
        else:
            assert len(data) <= limit


# -- the envelope builder -----------------------------------------------------------------------


@given(event=EVENTS, path_type=st.none() | st.sampled_from(event_types.ALL), sent_at=st.none() | ISO_TIMES)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_event_becomes_a_publishable_envelope_or_a_clients_error(
    event: dict[str, Any], path_type: str | None, sent_at: str | None
) -> None:
    try:
        envelope = build_envelope(event, path_type, facts(sent_at=sent_at))
        record = to_record(envelope)
    except ApiError as error:
        a_clients_error(error)
        return
    # What the gateway owns is the gateway's, whatever the client sent
    assert (envelope["pipelineId"], envelope["source"], envelope["schemaVersion"]) == (
        "pip_props",
        {"kind": "server", "id": None},
        1,
    )
    assert envelope["receivedAt"] == "2024-05-01T12:00:00.000Z"
    assert "writeKey" not in envelope
    assert envelope["type"] in event_types.ALL
    for field in ("userId", "anonymousId", "groupId", "messageId"):
        assert envelope[field] is None or type(envelope[field]) is str
    for field in ("timestamp", "originalTimestamp", "sentAt"):
        assert envelope[field] is None or (type(envelope[field]) is str and envelope[field].endswith("Z"))
    assert orjson.loads(record.value) == orjson.loads(orjson.dumps(envelope))


@given(value=st.text(min_size=MAX_TIME_LENGTH + 1, max_size=500))
def test_a_time_too_long_to_read_is_refused_whatever_it_holds(value: str) -> None:
    with pytest.raises(InvalidPayload):
        build_envelope({"event": "E", "userId": "u", "timestamp": value}, "track", facts())


# -- the pixel query ------------------------------------------------------------------------------


PIXEL_PARAMS = st.sampled_from(["wk", "e", "uid", "aid", "gid", "mid", "name", "ts", "cb", "p.x", "t.y", "p.", "gclid"])


@given(
    pairs=st.lists(st.tuples(PIXEL_PARAMS | HOSTILE_TEXT, HOSTILE_TEXT | st.integers().map(str)), max_size=8),
    raw=st.text(max_size=200),
    event_type=st.sampled_from(event_types.PIXEL),
)
@settings(max_examples=300)
def test_any_pixel_query_becomes_an_envelope_or_a_clients_error(
    pairs: list[tuple[str, str]], raw: str, event_type: str
) -> None:
    for query_string in (QueryDict(mutable=True), QueryDict(raw)):
        query = query_string.copy()
        for name, value in pairs:
            query.appendlist(name, value)
        try:
            envelope = build_envelope(event_from_query(query, event_type), event_type, facts(anonymous_id="a1"))
            to_record(envelope)
        except ApiError as error:
            a_clients_error(error)
        else:
            assert envelope["type"] == event_type


# -- the webhook mapping --------------------------------------------------------------------------


PATHS = st.lists(
    st.sampled_from(["a", "b", "0", "1", "data", "object", "id", "type", "at"]), min_size=1, max_size=4
).map(".".join)
TARGETS = st.sampled_from(sorted(MAPPABLE_FIELDS)) | st.builds(
    lambda head, tail: f"{head}.{tail}", st.sampled_from(OBJECT_TARGETS), PATHS
)
PAYLOAD_KEYS = st.sampled_from(["a", "b", "0", "data", "object", "id", "type", "at"]) | HOSTILE_TEXT
PAYLOADS = st.recursive(
    JSON_SCALARS | ISO_TIMES | st.integers(min_value=0, max_value=10**14),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(PAYLOAD_KEYS, children, max_size=4),
    max_leaves=15,
)


@given(payload=PAYLOADS, mapping=st.dictionaries(TARGETS, PATHS, max_size=6))
@example(payload={"at": "2024-05-01T12:00:00." + "1" * 80 + "Z"}, mapping={"timestamp": "at"})
@example(
    payload={"id": 2**64 - 1, "a": 1e300, "b": -(2**63)}, mapping={"userId": "id", "groupId": "a", "messageId": "b"}
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_payload_is_mapped_to_an_event_the_envelope_takes_and_nothing_is_dropped(
    payload: Any, mapping: dict[str, str]
) -> None:
    try:
        validate_mapping(mapping)
    except MappingInvalid:
        assume(False)

    # When a vendor's payload is mapped
    event, notes = apply_mapping(payload, mapping)

    # Then the envelope takes it as it is (refusing it would lose the vendor's event), and its
    # properties keep what was not mapped
    envelope = build_envelope(event, event.get("type") or "track", facts(require_identity=False))
    to_record(envelope)
    assert envelope["properties"], (payload, mapping, notes)
    assert all("\r" not in note and "\n" not in note for note in notes if "\\" not in note)


# -- every signature verifier ---------------------------------------------------------------------


def _hex(secret: bytes, message: bytes, algorithm: Callable[[], Any] = hashlib.sha256) -> str:
    return hmac.new(secret, message, algorithm).hexdigest()


def _b64(secret: bytes, message: bytes, algorithm: Callable[[], Any] = hashlib.sha256) -> str:
    return base64.b64encode(hmac.new(secret, message, algorithm).digest()).decode()


URL = "https://collect.example.com/v1/webhook?source=wh_props"


def _standard_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


# scheme -> (secret from random bytes, options, headers for (secret, body, now)), each from the vendor's documentation
SIGNERS: dict[str, tuple[Callable[[bytes], str], dict[str, str], Callable[[str, bytes, int], dict[str, str]]]] = {
    "stripe": (
        lambda raw: "whsec_" + raw.hex(),
        {},
        lambda secret, body, now: {
            "Stripe-Signature": f"t={now},v1={_hex(secret.encode(), f'{now}.'.encode() + body)}"
        },
    ),
    "shopify": (
        lambda raw: raw.hex(),
        {},
        lambda secret, body, now: {"X-Shopify-Hmac-Sha256": _b64(secret.encode(), body)},
    ),
    "github": (
        lambda raw: raw.hex(),
        {},
        lambda secret, body, now: {"X-Hub-Signature-256": "sha256=" + _hex(secret.encode(), body)},
    ),
    "hubspot-v3": (
        lambda raw: raw.hex(),
        {},
        lambda secret, body, now: {
            "X-HubSpot-Signature-v3": _b64(secret.encode(), b"POST" + URL.encode() + body + str(now * 1000).encode()),
            "X-HubSpot-Request-Timestamp": str(now * 1000),
        },
    ),
    "standard-webhooks": (
        lambda raw: "whsec_" + base64.b64encode(raw).decode(),
        {},
        lambda secret, body, now: {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(now),
            "webhook-signature": "v1,"
            + base64.b64encode(
                hmac.new(_standard_key(secret), f"msg_1.{now}.".encode() + body, hashlib.sha256).digest()
            ).decode(),
        },
    ),
    "generic-hmac (hex)": (
        lambda raw: raw.hex(),
        {},
        lambda secret, body, now: {"X-Signature": _hex(secret.encode(), body)},
    ),
    "generic-hmac (base64, sha512, prefixed)": (
        lambda raw: raw.hex(),
        {"header": "X-Acme", "encoding": "base64", "algorithm": "sha512", "prefix": "sha512="},
        lambda secret, body, now: {"X-Acme": "sha512=" + _b64(secret.encode(), body, hashlib.sha512)},
    ),
}


def one_byte_changes(body: bytes, index: int, byte: int) -> list[bytes]:
    """The body with one byte replaced, inserted or deleted at ``index``."""
    changed = [body[:index] + bytes([byte]) + body[index:]]
    if body:
        at = index % len(body)
        if body[at] != byte:
            changed.append(body[:at] + bytes([byte]) + body[at + 1 :])
        changed.append(body[:at] + body[at + 1 :])
    return changed


@pytest.mark.parametrize("name", SIGNERS)
@given(
    raw_secret=st.binary(min_size=8, max_size=40),
    body=st.binary(max_size=300),
    index=st.integers(0, 300),
    byte=st.integers(0, 255),
)
@settings(max_examples=150)
def test_a_webhook_signature_verifies_and_no_one_byte_change_to_the_body_does(
    name: str, raw_secret: bytes, body: bytes, index: int, byte: int
) -> None:
    make_secret, options, sign = SIGNERS[name]
    secret = make_secret(raw_secret)
    source = WebhookSource(
        id="wh_props", scheme=name.split(" ")[0], secret=secret, tolerance_seconds=300, mapping={}, options=options
    )
    headers = sign(secret, body, int(NOW))

    # A valid signature always verifies
    verify_webhook(source=source, method="POST", url=URL, headers=headers, body=body, now=NOW)

    # and no one-byte change to the body does
    for changed in one_byte_changes(body, index % (len(body) + 1), byte):
        with pytest.raises(InvalidSignature):
            verify_webhook(source=source, method="POST", url=URL, headers=headers, body=changed, now=NOW)


@given(
    raw_secret=st.binary(min_size=8, max_size=40),
    body=st.binary(max_size=300),
    index=st.integers(0, 300),
    byte=st.integers(0, 255),
    path=st.sampled_from(["/v1/events", "/v1/batch"]),
    version=st.sampled_from(["v1", "v2"]),
)
@settings(max_examples=300)
def test_a_server_signature_verifies_and_no_one_byte_change_to_the_body_or_path_does(
    raw_secret: bytes, body: bytes, index: int, byte: int, path: str, version: str
) -> None:
    secret = raw_secret.hex().encode()
    stamp = int(NOW * 1000)
    bound = {"method": "POST", "path": path} if version == "v2" else {}
    headers = sign_server_request(secret, body, stamp, **bound)

    def verify(sent: bytes, sent_path: str = path) -> None:
        verify_server_signature(
            secrets=[secret],
            body=sent,
            signature_header=headers["X-Signature"],
            timestamp_header=headers["X-Timestamp"],
            now=NOW,
            method="POST",
            path=sent_path,
        )

    verify(body)
    for changed in one_byte_changes(body, index % (len(body) + 1), byte):
        with pytest.raises(InvalidSignature):
            verify(changed)
    if version == "v2":
        with pytest.raises(InvalidSignature):
            verify(body, "/v1/events" if path == "/v1/batch" else "/v1/batch")


@given(secret=st.text(min_size=1, max_size=40), given_=st.text(max_size=40))
def test_a_shared_secret_the_admin_accepts_verifies_only_when_it_is_the_secret(secret: str, given_: str) -> None:
    if secret_problem("shared-secret", secret):
        assert secret != secret.strip() or not secret.isprintable()  # refused when saved: it could never match
        return
    source = WebhookSource(
        id="wh_props", scheme="shared-secret", secret=secret, tolerance_seconds=300, mapping={}, options={}
    )
    verify_webhook(source=source, method="POST", url=URL, headers={"X-Webhook-Secret": secret}, body=b"", now=NOW)
    if given_.strip() != secret:
        with pytest.raises(InvalidSignature):
            verify_webhook(
                source=source, method="POST", url=URL, headers={"X-Webhook-Secret": given_}, body=b"", now=NOW
            )


# -- cookies and the messages that carry client text ------------------------------------------------


@given(
    page_url=HOSTILE_TEXT.map(lambda text: f"https://shop.example/?gclid={text}&fbclid={text}") | HOSTILE_TEXT,
    search=HOSTILE_TEXT,
    cookies=st.dictionaries(st.sampled_from(["_dfid", "_ga", "_fbp", "_ttp", "_fbc", "_gcl_aw"]), HOSTILE_TEXT),
    domain=st.sampled_from([None, "example.com", ".shop.example.com"]),
)
@settings(max_examples=300)
def test_no_cr_lf_or_semicolon_from_a_client_reaches_a_set_cookie(
    page_url: str, search: str, cookies: dict[str, str], domain: str | None
) -> None:
    click_ids = click_ids_from_page({"url": page_url, "search": "?" + search})
    visitor = resolve_identity(cookies, click_ids, now_ms=int(NOW * 1000))
    for name, value in cookie_headers(visitor, domain):
        assert name == b"Set-Cookie"
        assert b"\r" not in value and b"\n" not in value, value
        pair, *attributes = value.split(b"; ")
        assert b";" not in pair, value  # the value cannot end the cookie early or add an attribute
        assert {attribute.split(b"=")[0] for attribute in attributes} <= {
            b"Max-Age",
            b"Path",
            b"Secure",
            b"SameSite",
            b"HttpOnly",
            b"Domain",
        }, value
