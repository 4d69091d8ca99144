"""Redis or PostgreSQL cut while the gateway works: known keys keep working, nothing is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.conf import settings

from pipelines.services import PipelineCreated
from tests.faults.conftest import FAULT_EVENTS, report, topic_message_ids
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import assert_error, post
from tests.fixtures.load import Answers, send_events
from tests.fixtures.net import TcpProxy


def redis_behind(proxy: TcpProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}/{settings.REDIS_URL.rsplit('/', 1)[1]}"


def test_a_redis_cut_mid_load_keeps_known_keys_working_loses_nothing_and_dedup_resumes(
    tcp_proxy: Callable[[int], TcpProxy], gateway_factory: Callable[..., Gateway], busy_pipeline: PipelineCreated,
    kafka_bootstrap: str, kafka_topic: str,
) -> None:  # fmt: skip
    # Given a gateway that reaches Redis only through a proxy, its key known, under steady load
    proxy = tcp_proxy(int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0]))
    gateway = gateway_factory(REDIS_URL=redis_behind(proxy))
    events = FAULT_EVENTS // 3
    answers: list[Answers] = []
    sender = threading.Thread(
        target=lambda: answers.append(
            send_events(gateway.url, busy_pipeline.pipeline_key, events, prefix="redis", rate=events / 12)
        )
    )
    sender.start()

    # When Redis is cut for five seconds in the middle of it
    time.sleep(3.0)
    proxy.cut()
    time.sleep(5.0)
    proxy.restore()
    sender.join(60)

    # Then every request was answered 200 and every event is in the topic
    accepted = answers[0].accepted()
    found = topic_message_ids(kafka_bootstrap, kafka_topic, busy_pipeline.pipeline.id, expect=len(accepted))
    assert answers[0].by_status() == {200: events}
    assert not accepted - set(found)

    # ...and once Redis is back, duplicates are caught again
    time.sleep(1.5)  # the gateway leaves Redis alone for a second after a failure
    event = {"event": "After Redis", "messageId": "redis-after-1", "anonymousId": "a"}
    statuses = [post(gateway.url + "/v1/t", event, key=busy_pipeline.pipeline_key).status for _ in range(2)]
    after = topic_message_ids(kafka_bootstrap, kafka_topic, busy_pipeline.pipeline.id, expect=len(accepted) + 1)
    report(
        "Redis cut mid-load (5 s)", sent=events, answered_200=len(accepted), found=len(found),
        missing=len(accepted - set(found)), duplicates=sum(n - 1 for n in found.values()),
        dedup_after_return=after["redis-after-1"],
    )  # fmt: skip
    assert statuses == [200, 200]
    assert after["redis-after-1"] == 1


def test_a_postgresql_cut_keeps_known_keys_working_and_a_never_seen_key_gets_503(
    tcp_proxy: Callable[[int], TcpProxy], gateway_factory: Callable[..., Gateway],
    make_pipeline: Callable[..., PipelineCreated], database_url: str, kafka_bootstrap: str, kafka_topic: str,
) -> None:  # fmt: skip
    # Given a gateway that reaches PostgreSQL only through a proxy, with one key it has used and one it never saw
    known, unseen = make_pipeline(), make_pipeline()
    proxy = tcp_proxy(int(database_url.rsplit(":", 1)[1].split("/")[0]))
    gateway = gateway_factory(
        DATABASE_URL=database_url.replace(database_url.rsplit(":", 1)[1].split("/")[0], str(proxy.port), 1)
    )
    assert post(gateway.url + "/v1/t", {"event": "Warm"}, key=known.pipeline_key).status == 200

    # When PostgreSQL is cut
    proxy.cut()
    started = time.monotonic()
    during = [
        post(gateway.url + "/v1/t", {"event": "During", "messageId": f"pg-{n}"}, key=known.pipeline_key).status
        for n in range(20)
    ]
    unseen_answer = post(gateway.url + "/v1/t", {"event": "Unseen"}, key=unseen.pipeline_key)
    waited = time.monotonic() - started
    proxy.restore()

    # Then the known key keeps working, and a key it cannot check is 503 (retry), not 401 (drop)
    assert during == [200] * 20
    assert_error(unseen_answer, 503, "UNAVAILABLE")
    assert waited < 15, waited
    found = topic_message_ids(kafka_bootstrap, kafka_topic, known.pipeline.id, expect=21)
    report(
        "PostgreSQL cut",
        sent=20,
        answered_200=during.count(200),
        found=len(found) - 1,
        never_seen_key=unseen_answer.status,
    )
    assert {f"pg-{n}" for n in range(20)} <= set(found)
