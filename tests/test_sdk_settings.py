"""The settings documents the browser SDKs fetch first (issue 12, build 1): analytics-next's
``/v1/projects/<writeKey>/settings`` and RudderStack's ``/sourceConfig/``, pointed back at the gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import override_settings

from ingestion import publisher as publisher_module
from ingestion.handler import IngestionHandler
from pipelines import keystore as keystore_module
from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import assert_error, basic, options, request
from tests.fixtures.queries import count_queries

SHOP = "https://shop.example.com"
ELSEWHERE = "https://evil.example.net"


def settings_url(gateway: Gateway, key: str) -> str:
    return f"{gateway.url}/v1/projects/{key}/settings"


def source_config_url(gateway: Gateway, key: str | None = None) -> str:
    query = "p=npm&v=3.34.1&build=modern&lockIntegrationsVersion=false"
    return f"{gateway.url}/sourceConfig/?{query}" + (f"&writeKey={key}" if key else "")


# -- analytics-next --------------------------------------------------------------------------------------


def test_analytics_next_settings_point_the_sdk_at_the_host_the_page_used(
    gateway: Gateway, pipeline: PipelineCreated
) -> None:
    # Given a page that loads analytics-next with the gateway as its CDN, on a customer's subdomain
    headers = {"Host": "collect.shop.example.com"}

    # When the SDK fetches its settings
    response = request("GET", settings_url(gateway, pipeline.pipeline_key), headers=headers)

    # Then they send its events to the gateway's /v1 on that host, over the scheme the page used,
    # and switch off its metrics to Segment's cloud
    assert response.status == 200, response.body
    assert response.header("Content-Type") == "application/json"
    document = response.json()
    assert document["integrations"] == {
        "Segment.io": {
            "apiKey": pipeline.pipeline_key,
            "apiHost": "collect.shop.example.com/v1",
            "protocol": "http",
        }
    }
    assert document["metrics"] == {"sampleRate": 0}


def test_analytics_next_settings_say_https_behind_a_trusted_proxy_that_terminated_tls(
    gateway_factory: Callable[..., Gateway], pipeline: PipelineCreated
) -> None:
    # Given a gateway behind a TLS-terminating proxy it trusts
    behind_proxy = gateway_factory(TRUSTED_PROXIES="127.0.0.1/32")

    # When the SDK's request arrives through it
    response = request(
        "GET",
        settings_url(behind_proxy, pipeline.pipeline_key),
        headers={"Host": "collect.shop.example.com", "X-Forwarded-Proto": "https"},
    )

    # Then the SDK is told to post over https
    assert response.status == 200, response.body
    assert response.json()["integrations"]["Segment.io"]["protocol"] == "https"


def test_a_forwarded_proto_from_an_untrusted_peer_is_ignored(gateway: Gateway, pipeline: PipelineCreated) -> None:
    # Given a gateway that trusts no proxy

    # When a client claims the page used https
    response = request("GET", settings_url(gateway, pipeline.pipeline_key), headers={"X-Forwarded-Proto": "https"})

    # Then the scheme is the connection's own
    assert response.json()["integrations"]["Segment.io"]["protocol"] == "http"


@pytest.mark.parametrize("key", ["dk_" + "A" * 32, "not-a-key"], ids=["unknown", "garbage"])
def test_analytics_next_settings_for_an_unknown_key_are_refused_in_the_error_shape(gateway: Gateway, key: str) -> None:
    # Given a key no pipeline holds

    # When the SDK fetches its settings from a page
    response = request("GET", settings_url(gateway, key), headers={"Origin": SHOP})

    # Then it gets 401 in the error shape, readable by the page but without credentials
    assert_error(response, 401, "INVALID_PIPELINE_KEY")
    assert response.header("Access-Control-Allow-Origin") == SHOP
    assert response.header("Access-Control-Allow-Credentials") is None


def test_settings_are_readable_by_an_allowed_origin(
    gateway: Gateway, make_pipeline: Callable[..., PipelineCreated]
) -> None:
    # Given a pipeline that allows the shop
    created = make_pipeline(origins=[SHOP])

    # When the shop's page fetches each SDK's settings
    segment = request("GET", settings_url(gateway, created.pipeline_key), headers={"Origin": SHOP})
    rudder = request("GET", source_config_url(gateway, created.pipeline_key), headers={"Origin": SHOP})

    # Then both are readable by it
    for response in (segment, rudder):
        assert response.status == 200, response.body
        assert response.header("Access-Control-Allow-Origin") == SHOP
        assert response.header("Vary") == "Origin"


def test_settings_are_refused_to_an_origin_the_pipeline_does_not_allow(
    gateway: Gateway, make_pipeline: Callable[..., PipelineCreated]
) -> None:
    # Given a pipeline that allows only the shop
    created = make_pipeline(origins=[SHOP])

    # When a page elsewhere fetches the settings with the shop's key
    response = request("GET", settings_url(gateway, created.pipeline_key), headers={"Origin": ELSEWHERE})

    # Then it is refused without CORS headers, as its events would be
    assert_error(response, 403, "ORIGIN_NOT_ALLOWED")
    assert response.cors_headers == {}


# -- RudderStack -----------------------------------------------------------------------------------------


def test_rudderstack_source_config_answers_with_the_key_on_the_url(gateway: Gateway, pipeline: PipelineCreated) -> None:
    # Given RudderStack's SDK loading with the gateway as its config URL

    # When it fetches its source config with the key on the URL
    response = request("GET", source_config_url(gateway, pipeline.pipeline_key))

    # Then it gets a source with no destinations, and no error or metrics reporting to RudderStack
    assert response.status == 200, response.body
    source = response.json()["source"]
    assert source["id"] == pipeline.pipeline.id
    assert source["enabled"] is True
    assert source["destinations"] == []
    assert source["config"]["statsCollection"] == {"errors": {"enabled": False}, "metrics": {"enabled": False}}


def test_rudderstack_source_config_answers_with_the_key_as_basic_auth(
    gateway: Gateway, pipeline: PipelineCreated
) -> None:
    # Given the SDK's request with the key only in its Authorization header
    headers = {"Authorization": basic(pipeline.pipeline_key)}

    # When it fetches its source config
    response = request("GET", source_config_url(gateway), headers=headers)

    # Then it gets its source
    assert response.status == 200, response.body
    assert response.json()["source"]["id"] == pipeline.pipeline.id


def test_rudderstack_source_config_without_a_key_is_refused(gateway: Gateway) -> None:
    # Given a request with no key anywhere

    # When it asks for a source config
    response = request("GET", source_config_url(gateway))

    # Then it is refused in the error shape
    assert_error(response, 401, "INVALID_PIPELINE_KEY")


def test_the_preflight_of_rudderstacks_config_request_allows_its_authorization_header(
    gateway: Gateway, pipeline: PipelineCreated
) -> None:
    # Given RudderStack's config request, which carries Basic auth and so is preflighted
    headers = {
        "Origin": SHOP,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }

    # When the browser sends the preflight
    response = options(source_config_url(gateway, pipeline.pipeline_key), headers=headers)

    # Then the GET with Authorization is allowed
    assert response.status == 204
    assert response.header("Access-Control-Allow-Origin") == SHOP
    assert response.header("Access-Control-Allow-Methods") == "GET, OPTIONS"
    assert response.header("Access-Control-Allow-Headers") == "Authorization"


# -- no database query per request ----------------------------------------------------------------------


@pytest.fixture
def fresh_singletons(kafka_bootstrap: str) -> Iterator[None]:
    """This process's publisher and key store, torn down after."""
    with override_settings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap):
        publisher_module._default = None
        keystore_module._default = None
        yield
        if publisher_module._default is not None:
            publisher_module._default.close(timeout=5)
        publisher_module._default = None
        keystore_module._default = None


def get_scope(path: str, query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"collect.shop.example.com")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }


async def get(app: IngestionHandler, path: str, query: bytes = b"") -> tuple[int, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(get_scope(path, query), receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_settings_are_served_from_the_key_store_with_no_database_query_per_request(
    pipeline: PipelineCreated, fresh_singletons: None
) -> None:
    # Given a gateway that has seen the key once
    app = IngestionHandler()
    key = pipeline.pipeline_key
    segment_path, rudder_query = f"/v1/projects/{key}/settings", f"writeKey={key}".encode()

    async def scenario() -> tuple[int, int, list[int]]:
        with count_queries() as first:
            first_status, _ = await get(app, segment_path)
        with count_queries() as later:
            statuses = []
            for _ in range(10):
                statuses.append((await get(app, segment_path))[0])
                statuses.append((await get(app, "/sourceConfig/", rudder_query))[0])
        await keystore_module.get_keystore().aclose()
        await sync_to_async(connections.close_all)()
        return first.count, later.count, [first_status, *statuses]

    # When both SDKs fetch their settings again and again
    first_queries, later_queries, statuses = asyncio.run(scenario())

    # Then only the first lookup touched the database
    assert statuses == [200] * 21
    assert first_queries > 0  # the counter does see a miss
    assert later_queries == 0
