"""The admin on the ingestion port: failed logins are throttled per client address (django-axes,
adapted in signal_gateway/login_throttle.py), and a malformed Host is one WARNING line, not a
traceback at ERROR."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.parse
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings

from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, request

PASSWORD = "correct horse battery staple"
ATTACKER, OPERATOR = "203.0.113.9", "198.51.100.7"


@pytest.fixture
def operator(db: None) -> User:
    return User.objects.create_superuser("ops", "ops@example.com", PASSWORD)


def log_in(password: str, *, remote_addr: str, forwarded_for: str = "") -> int:
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    response = Client().post(
        "/admin/login/?next=/admin/", {"username": "ops", "password": password}, secure=True, **extra
    )
    return response.status_code


def fail_up_to_the_limit(**client: str) -> None:
    """The failures before the limit get the form again; the one that reaches it is already a 429."""
    statuses = [log_in(f"wrong guess {attempt}", **client) for attempt in range(settings.AXES_FAILURE_LIMIT)]
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]


def test_an_address_past_the_failure_limit_is_refused_even_with_the_right_password(operator: User) -> None:
    # Given five failed logins from one address
    fail_up_to_the_limit(remote_addr=ATTACKER)

    # When it tries the right password
    response = Client().post(
        "/admin/login/?next=/admin/", {"username": "ops", "password": PASSWORD}, secure=True, REMOTE_ADDR=ATTACKER
    )

    # Then it is refused for the cool-off, and told when to come back
    assert response.status_code == 429
    assert response["Retry-After"] == str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    assert "Too many failed logins" in response.content.decode()
    # And the operator, from elsewhere, still gets in
    assert log_in(PASSWORD, remote_addr=OPERATOR) == 302


def test_a_locked_address_can_log_in_again_after_the_cool_off(operator: User) -> None:
    with override_settings(AXES_COOLOFF_TIME=timedelta(seconds=1)):
        fail_up_to_the_limit(remote_addr=ATTACKER)
        assert log_in(PASSWORD, remote_addr=ATTACKER) == 429

        time.sleep(1.5)

        assert log_in(PASSWORD, remote_addr=ATTACKER) == 302


def test_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_throttle(operator: User) -> None:
    # Given failures from one peer that claims a new X-Forwarded-For each time
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        log_in("wrong", remote_addr=ATTACKER, forwarded_for=f"192.0.2.{attempt}")

    # Then the peer is locked whatever it claims next
    assert log_in(PASSWORD, remote_addr=ATTACKER, forwarded_for="192.0.2.200") == 429


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
def test_behind_a_trusted_proxy_only_the_failing_client_is_locked_out(operator: User) -> None:
    # Given five failures from one client behind our proxy
    fail_up_to_the_limit(remote_addr="10.0.0.2", forwarded_for=ATTACKER)

    # Then that client is refused, and another client behind the same proxy is not
    assert log_in(PASSWORD, remote_addr="10.0.0.2", forwarded_for=ATTACKER) == 429
    assert log_in(PASSWORD, remote_addr="10.0.0.2", forwarded_for=OPERATOR) == 302


def test_the_gateway_process_throttles_admin_logins(gateway: Gateway, transactional_db: None) -> None:
    # Given a staff user, and the login form of a real gateway (daphne, Django's async handler)
    User.objects.create_superuser("ops", "ops@example.com", PASSWORD)
    form = request("GET", f"{gateway.url}/admin/login/")
    csrf_cookie = form.cookies["csrftoken"].value
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.body)
    assert match is not None

    def post(password: str) -> Response:
        body = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": match.group(1).decode(), "username": "ops", "password": password}
        ).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf_cookie}"}
        return request("POST", f"{gateway.url}/admin/login/", body=body, headers=headers)

    # When the limit of wrong passwords is used up
    statuses = [post(f"wrong {n}").status for n in range(settings.AXES_FAILURE_LIMIT)]

    # Then the attempt that reaches it and the next one, right password or not, are 429s
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    refused = post(PASSWORD)
    assert refused.status == 429
    assert refused.header("Retry-After") == str(int(settings.AXES_COOLOFF_TIME.total_seconds()))


def test_a_malformed_host_is_one_warning_line_not_a_traceback(gateway: Gateway) -> None:
    # Given the gateway's log so far
    offset = len(gateway.log())

    # When a client asks for the admin with a Host that is not a host name
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /admin/login/ HTTP/1.1\r\nHost: bad_host!name\r\nConnection: close\r\n\r\n")
        answer = sock.recv(100)

    # Then it gets a 400, and the log has one WARNING line about it and no traceback
    assert answer.startswith(b"HTTP/1.1 400")
    deadline = time.monotonic() + 5
    while "bad_host!name" not in gateway.log()[offset:] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    new = gateway.log()[offset:]
    lines = [json.loads(line) for line in new.splitlines() if "bad_host!name" in line]
    assert len(lines) == 1, new
    assert (lines[0]["level"], lines[0]["logger"]) == ("WARNING", "django.security.DisallowedHost")
    assert "exc_info" not in lines[0]
    assert "Traceback" not in new and '"level": "ERROR"' not in new and '"level":"ERROR"' not in new
