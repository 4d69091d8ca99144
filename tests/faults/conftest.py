"""The fault suite (issue 9): real gateway processes, faults made for real with TCP proxies the tests
cut, stall and restore, and the topic read back to check that every event answered 200 is there.

Sizes: FAULT_EVENTS events per run (default 6,000; 20,000 for the full run) and FAULT_CUT_SECONDS
for the broker cut (default 30). Each test appends a line of results (sent, answered 200, found in
the topic, duplicates) to FAULT_RESULTS (default bench/results/faults-latest.jsonl) for the README.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipelines import services
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import request

FAULT_EVENTS = int(os.environ.get("FAULT_EVENTS", "6000"))
FAULT_CUT_SECONDS = float(os.environ.get("FAULT_CUT_SECONDS", "30"))
RESULTS = Path(
    os.environ.get("FAULT_RESULTS", Path(__file__).resolve().parents[2] / "bench" / "results" / "faults-latest.jsonl")
)


def topic_message_ids(
    bootstrap: str, topic: str, pipeline_id: str, *, expect: int, timeout: float = 60.0
) -> Counter[str]:
    """How many times each messageId of the pipeline is in the topic, once ``expect`` distinct ones
    are there (or ``timeout`` passed), then 2 s more for stragglers and duplicates."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "faults-unused", "enable.auto.commit": False})
    found: Counter[str] = Counter()
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions])
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while True:
            now = time.monotonic()
            if settle_until is None and (len(found) >= expect or now >= deadline):
                settle_until = now + 2.0
            if settle_until is not None and now >= settle_until:
                return found
            for message in consumer.consume(1000, 0.2):
                if message.error():
                    continue
                headers = dict(message.headers() or [])
                if headers.get("pipeline_id", b"").decode() == pipeline_id:
                    found[headers["message_id"].decode()] += 1
    finally:
        consumer.close()


def wait_until_drained(gateway: Gateway, timeout: float = 90.0) -> dict[str, Any]:
    """Until /readyz says the spool is empty and events go straight to Kafka again."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = request("GET", gateway.url + "/readyz")
        if response.status == 200:
            last = response.json()["checks"]
            if last["spool"]["depth"] == 0 and last["spool"]["mode"] == "direct":
                return last
        time.sleep(0.5)
    raise AssertionError(f"the spool was not drained within {timeout} s: {last}")


def report(name: str, **figures: Any) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(
            json.dumps({"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}) + "\n"
        )
    print(name, figures)


@pytest.fixture
def busy_pipeline(make_pipeline: Callable[..., services.PipelineCreated]) -> services.PipelineCreated:
    """A pipeline whose rate limit the fault suite's load never reaches."""
    return make_pipeline(rate_limit_rps=1_000_000)


@pytest.fixture
def var_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
