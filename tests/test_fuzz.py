"""Schemathesis against a live gateway: every operation of /openapi.json, fed what its document
allows and what it does not; no answer may be a 5xx, and every answer must match the document
(status, content type, body schema, headers).

Three cases in four are made authentic before they are sent, so the fuzz reaches past the key
check: a real pipeline key (or the pixel's wk, or a real webhook source), the request's real v2
signature on the signed paths, and a real gzip body when the case says Content-Encoding: gzip. The
fourth goes as generated, to fuzz the refusals.

CI runs FUZZ_MAX_EXAMPLES (100) examples per operation (about 1,100 requests, ~15 s), derandomized, so
a run is repeatable; `bin/fuzz` runs longer ones with fresh seeds. Every dependency is up (Kafka, PostgreSQL, Redis), so a 503 here
is a finding, not an outage: MSG_SIZE_TOO_LARGE was one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ingestion.signatures import sign_server_request
from pipelines import services
from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "100"))
# bin/fuzz sets FUZZ_SEED for a fresh run; CI explores the same examples every time.
SEED = os.environ.get("FUZZ_SEED")
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
SIGNED_PATHS = {"/v1/events", "/v1/batch"}


@pytest.fixture
def fuzz_target(gateway: Gateway, pipeline: PipelineCreated) -> Iterator[dict[str, Any]]:
    source = services.webhook_source_create(
        pipeline=pipeline.pipeline,
        scheme="none",
        secret="",
        mapping={"event": "type", "userId": "user.id", "timestamp": "at", "properties.plan": "plan"},
        options=None,
        tolerance_seconds=300,
    )
    yield {"url": gateway.url, "pipeline": pipeline, "source": source.id}


# Every operation the document has, named here so that a new one is fuzzed only once it is listed
# (test_every_documented_operation_is_fuzzed fails until then).
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    *(("POST", f"/v1/{short}") for short in ("t", "p", "i", "g", "a", "s", "b")),
    *(("POST", f"/v1/{name}") for name in ("track", "page", "screen", "identify", "group", "alias")),
    ("POST", "/v1/events"),
    ("POST", "/v1/batch"),
    ("GET", "/v1/pixel/{event_type}"),
    ("POST", "/v1/webhook"),
    ("GET", "/v1/projects/{write_key}/settings"),
    ("GET", "/sourceConfig/"),
    ("POST", "/beacon/v1/batch"),
]


@pytest.fixture(scope="module")
def api_schema(gateway: Gateway) -> Any:
    return schemathesis.openapi.from_url(gateway.url + "/openapi.json")


def authentic(case: Any) -> bool:
    """Three cases in four, decided by the case itself so that a failure replays the same way."""
    return hashlib.sha256(repr((case.path_parameters, case.query, case.body)).encode()).digest()[0] % 4 != 0


def send(case: Any, target: dict[str, Any]) -> tuple[requests.Response, dict[str, Any]]:
    kwargs = case.as_transport_kwargs(base_url=target["url"])
    headers: dict[str, str] = kwargs["headers"]
    body: bytes | None = None
    if "json" in kwargs:
        body = json.dumps(kwargs.pop("json"), allow_nan=False).encode()
    elif "data" in kwargs:
        data = kwargs.pop("data")
        body = data.encode() if isinstance(data, str) else data
    if authentic(case):
        created: PipelineCreated = target["pipeline"]
        headers["Authorization"] = f"Bearer {created.pipeline_key}"
        if case.path == "/v1/pixel/{event_type}":
            kwargs["params"] = {**kwargs.get("params", {}), "wk": created.pipeline_key}
        if case.path == "/v1/webhook":
            kwargs["params"] = {**kwargs.get("params", {}), "source": target["source"]}
        if case.path in ("/sourceConfig/", "/beacon/v1/batch"):
            kwargs["params"] = {**kwargs.get("params", {}), "writeKey": created.pipeline_key}
        if case.path == "/v1/projects/{write_key}/settings":
            kwargs["url"] = f"{target['url']}/v1/projects/{created.pipeline_key}/settings"
        if body is not None and headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.compress(body)
        if case.path in SIGNED_PATHS and body is not None:
            stamp = int(time.time() * 1000)
            secret = created.signing_secret.encode()
            headers.update(sign_server_request(secret, body, stamp, method="POST", path=case.path))
    response = requests.request(data=body, timeout=30, **kwargs)
    return response, kwargs


def test_every_documented_operation_is_fuzzed(api_schema: Any) -> None:
    # Given the live document's operations, then each is in the fuzz list
    documented = [(result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()]
    assert sorted(documented) == sorted(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_operation_answers_a_5xx_or_outside_its_document(
    api_schema: Any, fuzz_target: dict[str, Any], method: str, path: str
) -> None:
    # Given the cases schemathesis makes for the operation, fitting its document and not
    operation = api_schema[path][method]
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))
    # 503 is /readyz's documented answer when a dependency is down, not a server error
    checks = CONFORMANCE if path == "/readyz" else [not_a_server_error, *CONFORMANCE]

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=SEED is None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def each(case: Any) -> None:
        # When each is sent to the live gateway (made authentic or not)
        response, kwargs = send(case, fuzz_target)

        # Then the answer is not a server error, and it is what the document says
        case.validate_response(response, checks=checks, headers=kwargs["headers"], transport_kwargs=kwargs)

    if SEED is not None:
        each = seed(int(SEED))(each)
    each()
