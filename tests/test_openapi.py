"""The API's OpenAPI document, served by the gateway."""

from __future__ import annotations

from tests.fixtures.gateway import Gateway
from tests.fixtures.http import request


def test_the_openapi_document_is_served_and_lists_every_ingestion_path(gateway: Gateway) -> None:
    # Given a running gateway

    # When a client asks for the API's description
    response = request("GET", gateway.url + "/openapi.json")

    # Then it gets the document, with every input's path in it
    assert response.status == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = set(document["paths"])
    for path in (
        "/v1/t",
        "/v1/p",
        "/v1/i",
        "/v1/g",
        "/v1/events",
        "/v1/batch",
        "/v1/pixel/{event_type}",
        "/v1/webhook",
    ):
        assert path in paths, path
