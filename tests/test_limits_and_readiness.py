"""Rate limits as a client sees them, and what /readyz says when dependencies fail (issue 9)."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings

from pipelines.services import PipelineCreated
from tests.conftest import KafkaBehindProxy
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import assert_error, post, request
from tests.fixtures.kafka import read_records
from tests.fixtures.net import TcpProxy


def test_a_pipeline_limited_to_one_event_per_second_refuses_a_rapid_burst_with_429(
    gateway: Gateway, make_pipeline: Callable[..., PipelineCreated], kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pipeline created with --rate-limit 1
    created = make_pipeline(rate_limit_rps=1)

    # When twenty events arrive at once
    answers = [
        post(gateway.url + "/v1/t", {"event": "E", "anonymousId": f"v{n}"}, key=created.pipeline_key) for n in range(20)
    ]

    # Then what fits one second's burst is accepted and the rest are 429 with a Retry-After in seconds
    accepted = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status != 200]
    assert 1 <= len(accepted) <= 2, [a.status for a in answers]
    for answer in refused:
        assert_error(answer, 429, "RATE_LIMITED")
        assert (answer.header("Retry-After") or "").isdigit() and int(answer.header("Retry-After") or 0) >= 1
    published = read_records(
        kafka_bootstrap, kafka_topic, pipeline_id=created.pipeline.id, expect=len(accepted), settle=1
    )
    assert len(published) == len(accepted)


def test_a_batch_that_does_not_fit_the_limit_is_refused_whole(
    gateway: Gateway, make_pipeline: Callable[..., PipelineCreated], kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pipeline of 10 events/s whose bucket a first batch has emptied
    created = make_pipeline(rate_limit_rps=10)
    first = post(gateway.url + "/v1/batch", {"batch": [{"event": "E", "userId": "u"}] * 10}, key=created.pipeline_key)
    assert first.status == 200

    # When another batch arrives at once
    second = post(gateway.url + "/v1/batch", {"batch": [{"event": "E", "userId": "u"}] * 10}, key=created.pipeline_key)

    # Then it is refused whole: none of its events is published
    assert_error(second, 429, "RATE_LIMITED")
    assert len(read_records(kafka_bootstrap, kafka_topic, pipeline_id=created.pipeline.id, expect=10, settle=1)) == 10


def test_readiness_stays_200_with_redis_down_and_says_it_is_degraded(
    tcp_proxy: Callable[[int], TcpProxy], gateway_factory: Callable[..., Gateway], pipeline: PipelineCreated
) -> None:
    # Given a gateway that reaches Redis through a proxy, with its key known
    proxy = tcp_proxy(int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0]))
    gateway = gateway_factory(REDIS_URL=f"redis://127.0.0.1:{proxy.port}/{settings.REDIS_URL.rsplit('/', 1)[1]}")
    assert post(gateway.url + "/v1/t", {"event": "Warm", "anonymousId": "a"}, key=pipeline.pipeline_key).status == 200

    # When Redis goes away
    proxy.cut()
    ready = request("GET", gateway.url + "/readyz")
    event = post(gateway.url + "/v1/t", {"event": "During", "anonymousId": "a"}, key=pipeline.pipeline_key)

    # Then the gateway still takes events, and readiness says so, with Redis marked degraded
    assert ready.status == 200, ready.body
    assert ready.json()["checks"]["redis"]["status"] == "degraded"
    assert event.status == 200


def test_with_kafka_down_and_the_spool_full_events_get_503_and_readiness_503(
    kafka_behind_proxy: KafkaBehindProxy, gateway_factory: Callable[..., Gateway], pipeline: PipelineCreated
) -> None:
    # Given a gateway with a tiny spool, cut off from Kafka
    gateway = gateway_factory(
        KAFKA_BOOTSTRAP_SERVERS=kafka_behind_proxy.bootstrap, KAFKA_ACK_TIMEOUT="1", SPOOL_MAX_BYTES="20000"
    )
    kafka_behind_proxy.proxy.cut()

    # When events keep coming until the spool is full
    statuses = []
    for n in range(200):
        answer = post(
            gateway.url + "/v1/t", {"event": "E", "anonymousId": "a", "properties": {"n": n}}, key=pipeline.pipeline_key
        )
        statuses.append(answer.status)
        if answer.status == 503:
            break
    time.sleep(1.1)  # the spool's size is summed at most once a second
    ready = request("GET", gateway.url + "/readyz")

    # Then the spool took what fit, the next event is 503 with Retry-After, and readiness is 503
    assert statuses[0] == 200 and statuses[-1] == 503, statuses
    assert_error(answer, 503, "UNAVAILABLE")
    assert answer.header("Retry-After")
    assert ready.status == 503
    assert ready.json()["checks"]["spool"]["status"] == "full"
    kafka_behind_proxy.proxy.restore()
