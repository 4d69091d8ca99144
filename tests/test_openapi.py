"""The API's OpenAPI document and its docs page, served by the gateway (ingestion.openapi, ingestion.api)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ingestion.api import api
from tests.fixtures.gateway import ROOT, Gateway
from tests.fixtures.http import request

INGESTION_OPERATIONS = {
    ("/v1/t", "post"),
    ("/v1/p", "post"),
    ("/v1/i", "post"),
    ("/v1/g", "post"),
    ("/v1/events", "post"),
    ("/v1/batch", "post"),
    ("/v1/pixel/{event_type}", "get"),
    ("/v1/webhook", "post"),
}


@pytest.fixture(scope="module")
def document(gateway: Gateway) -> dict[str, Any]:
    response = request("GET", gateway.url + "/openapi.json")
    assert response.status == 200
    return response.json()


def test_the_openapi_document_is_served_and_lists_every_ingestion_path(document: dict[str, Any]) -> None:
    # Given a running gateway's document (fetched by the fixture)

    # Then it is OpenAPI 3, with every input's operation in it
    assert document["openapi"].startswith("3.")
    operations = {(path, method) for path, methods in document["paths"].items() for method in methods}
    assert INGESTION_OPERATIONS <= operations


def test_every_request_body_is_described_with_the_segment_event_the_batch_or_the_vendors_payload(
    document: dict[str, Any],
) -> None:
    # Given the document's operations that take a body
    bodies = {
        path: document["paths"][path][method]["requestBody"]["content"]
        for path, method in INGESTION_OPERATIONS
        if method == "post"
    }

    # Then each names its schema: the Segment-spec event, the batch, or (webhooks) any object
    for path in ("/v1/t", "/v1/p", "/v1/i", "/v1/g", "/v1/events"):
        assert bodies[path]["application/json"]["schema"] == {"$ref": "#/components/schemas/Event"}, path
        assert "text/plain" in bodies[path], path
    assert bodies["/v1/batch"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Batch"}
    assert bodies["/v1/webhook"]["application/json"]["schema"]["type"] == "object"
    schemas = document["components"]["schemas"]
    assert {"type", "event", "userId", "anonymousId", "context", "timestamp", "messageId"} <= set(
        schemas["Event"]["properties"]
    )
    assert schemas["Batch"]["properties"]["batch"]["maxItems"] == 500
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)  # each one a valid JSON Schema


def test_every_auth_scheme_is_described_and_each_operation_says_which_it_takes(document: dict[str, Any]) -> None:
    # Given the document's security schemes
    schemes = document["components"]["securitySchemes"]

    # Then bearer, basic, the pixel's wk, the HMAC headers and the webhook source are there
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert schemes["basic"]["scheme"] == "basic"
    assert (schemes["wk"]["in"], schemes["wk"]["name"]) == ("query", "wk")
    assert (schemes["signature"]["name"], schemes["timestamp"]["name"]) == ("X-Signature", "X-Timestamp")
    assert schemes["webhookSource"]["name"] == "source"
    paths = document["paths"]
    # and the writeKey in a body is the browser's no-header alternative, documented on the event
    assert {} in paths["/v1/t"]["post"]["security"]
    assert "writeKey" in document["components"]["schemas"]["Event"]["properties"]
    assert {"bearer": [], "signature": [], "timestamp": []} in paths["/v1/events"]["post"]["security"]
    assert {} not in paths["/v1/events"]["post"]["security"]
    assert paths["/v1/pixel/{event_type}"]["get"]["security"] == [{"wk": []}]


def test_every_error_answer_is_documented_in_the_one_error_shape(document: dict[str, Any]) -> None:
    # Given every ingestion operation
    for path, method in INGESTION_OPERATIONS:
        responses = document["paths"][path][method]["responses"]

        # Then its errors, those answered on the wire too, have the error shape
        for status in ("400", "408", "413", "414", "431", "503"):
            assert responses[status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }, (path, status)
        assert "Retry-After" in responses["503"]["headers"]
    assert "image/gif" in document["paths"]["/v1/pixel/{event_type}"]["get"]["responses"]["200"]["content"]
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]


def test_describing_the_api_adds_no_validation_to_the_hot_path() -> None:
    # Given the ninja operations of the ingestion paths
    operations = [
        operation
        for router in api._get_bound_routers()
        for path_view in router.path_operations.values()
        for operation in path_view.operations
    ]

    # Then none has a model ninja would validate a request against: the body is read raw
    assert operations
    for operation in operations:
        body_models = [model for model in operation.models if getattr(model, "__ninja_param_source__", "") == "body"]
        assert body_models == [], operation.view_func.__name__


def test_the_docs_page_is_served_with_its_assets_from_the_gateway_not_a_cdn(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    # Given a gateway whose static files were collected, as the image and bin/demo do
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, "GATEWAY_VAR_DIR": str(tmp_path)},
        check=True,
    )
    own = gateway_factory(GATEWAY_VAR_DIR=str(tmp_path))

    # When a person opens /docs
    page = request("GET", own.url + "/docs")

    # Then it is Swagger UI, every script and style from the gateway itself
    assert page.status == 200
    html = page.body.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets), assets
    for asset in assets:
        assert asset.startswith("/static/"), asset  # not a CDN's URL
        served = request("GET", own.url + asset)
        assert served.status == 200, asset
        assert len(served.body) > 1000, asset
