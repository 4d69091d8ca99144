"""The files for the people running the gateway (issue 10): Prometheus' scrape config and alert
rules, the Grafana dashboard, and the compose profile that runs both.

promtool and prometheus come from Debian's ``prometheus`` package (.ci/run installs it). Docker is not
here, so the compose file is checked against the Compose Specification's schema and for what the
profile needs; a real Prometheus scrapes a real gateway with the shipped rules and runs every query
of the dashboard.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.gateway import ROOT, Gateway
from tests.fixtures.net import free_port

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "signal-gateway.json"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
COMPOSE = ROOT / "docker-compose.yml"

# The gateway's metrics (README, "Metrics"), plus Prometheus' own `up`.
METRICS = {
    "gateway_requests_total",
    "gateway_request_duration_seconds",
    "gateway_events_total",
    "gateway_errors_total",
    "gateway_kafka_ack_seconds",
    "gateway_kafka_queue_depth",
    "gateway_keystore_lookups_total",
    "gateway_spool_depth_events",
    "gateway_spool_bytes",
    "gateway_spool_oldest_age_seconds",
    "gateway_rejected_published_total",
    "gateway_rejected_dropped_total",
    "gateway_ready",
    "up",
}
ALERTS = {
    "GatewayKafkaAckSlow",
    "GatewayServerErrors",
    "GatewaySpoolGrowing",
    "GatewaySpoolStale",
    "GatewayNotReady",
    "GatewayDown",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run `apt-get install --no-install-recommends prometheus` (CI installs it)")
    return path


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (histogram suffixes folded into their family)."""
    names = set(re.findall(r"\b(gateway_[a-z_]+|up)\b(?=\s*[{\[])", expr))
    return {
        re.sub(r"_(bucket|count|sum)$", "", name) if name.endswith(("_bucket", "_count", "_sum")) else name
        for name in names
    }


def test_promtool_accepts_the_scrape_config_and_the_alert_rules() -> None:
    result = subprocess.run(
        [tool("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout + result.stderr


def test_each_alert_fires_on_what_it_watches_and_not_otherwise() -> None:
    # alerts_test.yml feeds each rule series that must fire it beside series that must not
    result = subprocess.run(
        [tool("promtool"), "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS_DIR, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS_DIR / "alerts_test.yml").read_text()))
    assert tested == ALERTS == {rule["alert"] for rule in alert_rules()}


def test_the_dashboard_and_the_alerts_read_only_metrics_the_gateway_exports() -> None:
    read = set().union(*(metric_names(expr) for expr in dashboard_queries()))
    read |= set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    assert read <= METRICS, read - METRICS
    # And the dashboard covers what issue 10 asks of it
    for wanted in (
        "gateway_requests_total",
        "gateway_request_duration_seconds",
        "gateway_kafka_ack_seconds",
        "gateway_spool_depth_events",
        "gateway_errors_total",
    ):
        assert wanted in read, wanted
    assert any('outcome="rate_limited"' in expr for expr in dashboard_queries())


def test_the_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_monitoring_profile_runs_prometheus_and_grafana_with_both_loaded() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]

    # Only the two monitoring services are behind the profile; plain `docker compose up` is unchanged
    profiled = {name for name, service in services.items() if "profiles" in service}
    assert profiled == {"prometheus", "grafana"}
    assert all(services[name]["profiles"] == ["monitoring"] for name in profiled)

    # Every file they mount is in the repository, and mounted where their configuration looks
    mounts = {name: dict(volume.split(":")[:2] for volume in services[name]["volumes"]) for name in profiled}
    for name, volumes in mounts.items():
        for source in volumes:
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
    assert mounts["prometheus"]["./deploy/prometheus"] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    dashboards_at = mounts["grafana"]["./deploy/grafana/dashboards"]
    assert mounts["grafana"]["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "signal-gateway.yml").read_text())
    assert [p["options"]["path"] for p in provider["providers"]] == [dashboards_at]

    # Grafana's data source is the compose Prometheus; Prometheus scrapes the compose gateway
    datasource = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text())
    [source] = datasource["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    scrape = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    [gateway_job] = [job for job in scrape["scrape_configs"] if job["job_name"] == "signal-gateway"]
    [discovery] = gateway_job["dns_sd_configs"]
    assert discovery["names"] == ["gateway"] and "gateway" in services
    assert str(discovery["port"]) == services["gateway"]["environment"]["PORT"]
    # The dashboard's panels use the data source variable Grafana fills with that source
    dashboard = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p} == {"${datasource}"}


# -- a real Prometheus ------------------------------------------------------------------------------


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:  # a bad query is a 400 with a JSON body saying why
        with exc:
            return json.load(exc)


@pytest.fixture
def prometheus_scraping(gateway: Gateway, tmp_path: Path) -> Iterator[str]:
    """Prometheus with the shipped config and rules, its gateway job pointed at the test's gateway."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / path) for path in config["rule_files"]]
    for job in config["scrape_configs"]:
        if job["job_name"] == "signal-gateway":
            del job["dns_sd_configs"]
            job["static_configs"] = [{"targets": [f"127.0.0.1:{gateway.port}"]}]
    config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] == "signal-gateway"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(15)


def test_a_real_prometheus_scrapes_the_gateway_loads_every_alert_and_runs_every_dashboard_query(
    prometheus_scraping: str, gateway: Gateway
) -> None:
    api = prometheus_scraping + "/api/v1"

    # Given Prometheus with the shipped rules, scraping a running gateway
    deadline = time.monotonic() + 30
    targets: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            targets = get_json(api + "/targets")["data"]["activeTargets"]
        except OSError:
            targets = []
        if targets and targets[0]["health"] == "up":
            break
        time.sleep(0.2)

    # Then the gateway's /metrics is scraped as Prometheus' text format
    assert [(t["labels"]["job"], t["health"], t["lastError"]) for t in targets] == [("signal-gateway", "up", "")]
    # And every alert rule is loaded
    groups = get_json(api + "/rules")["data"]["groups"]
    assert {rule["name"] for group in groups for rule in group["rules"]} == ALERTS
    # And the dashboard's instance picker finds the gateway
    picker = get_json(api + "/label/instance/values?" + urllib.parse.urlencode({"match[]": 'up{job="signal-gateway"}'}))
    assert picker["data"] == [f"127.0.0.1:{gateway.port}"]
    # And every panel's query is one Prometheus accepts (with Grafana's variables as Grafana sends them)
    for expr in dashboard_queries():
        query = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        answer = get_json(api + "/query?" + urllib.parse.urlencode({"query": query}))
        assert answer["status"] == "success", (expr, answer)
