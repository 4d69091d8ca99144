"""Bad secret settings are refused at start, in one line naming the variable: by `manage.py check`,
by every configuration command, and by the gateway itself, which exits instead of answering 500."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from pipelines.models import Pipeline
from tests.fixtures.net import free_port

ROOT = Path(__file__).resolve().parents[1]
GOOD_KEY = Fernet.generate_key().decode()
HEX_KEY = "0123456789abcdef" * 4  # 64 hex characters: what the probe set

BAD_SETTINGS = [
    pytest.param({"ENCRYPTION_KEY": HEX_KEY}, "ENCRYPTION_KEY", "pipelines.E002", id="encryption-key-hex"),
    pytest.param({"ENCRYPTION_KEY": "not-a-key"}, "ENCRYPTION_KEY", "pipelines.E002", id="encryption-key-short"),
    pytest.param(
        {"ENCRYPTION_KEY": GOOD_KEY, "ENCRYPTION_KEY_PREVIOUS": HEX_KEY},
        "ENCRYPTION_KEY_PREVIOUS",
        "pipelines.E003",
        id="previous-key",
    ),
    pytest.param({"SECRET_KEY": "changeme"}, "SECRET_KEY", "pipelines.E001", id="secret-key-short"),
    pytest.param({"SECRET_KEY": "a" * 60}, "SECRET_KEY", "pipelines.E001", id="secret-key-one-character"),
]


def environment(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"ENCRYPTION_KEY_PREVIOUS"}}
    env.update(overrides)
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def lines_naming(output: str, variable: str) -> list[str]:
    return [line for line in output.splitlines() if f"{variable} " in line]


@pytest.mark.parametrize(("overrides", "variable", "check_id"), BAD_SETTINGS)
def test_manage_py_check_reports_a_bad_secret_setting_in_one_line_naming_it(
    overrides: dict[str, str], variable: str, check_id: str
) -> None:
    result = run([sys.executable, "manage.py", "check"], environment(**overrides))

    assert result.returncode != 0
    output = result.stdout + result.stderr
    [line] = lines_naming(output, variable)
    assert check_id in line
    assert "Traceback" not in output


def test_manage_py_check_passes_with_the_demo_default_derived_encryption_key() -> None:
    env = {k: v for k, v in environment().items() if k not in {"ENCRYPTION_KEY", "SECRET_KEY"}}

    result = run([sys.executable, "manage.py", "check"], env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_manage_py_check_passes_with_a_generated_fernet_key() -> None:
    result = run(
        [sys.executable, "manage.py", "check"], environment(ENCRYPTION_KEY=GOOD_KEY, ENCRYPTION_KEY_PREVIOUS=GOOD_KEY)
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_create_pipeline_with_a_bad_encryption_key_says_so_in_one_line_and_creates_nothing(
    database_url: str, transactional_db: None
) -> None:
    result = run(
        [sys.executable, "manage.py", "create_pipeline", "--name", "Never", "--json"],
        environment(DATABASE_URL=database_url, ENCRYPTION_KEY=HEX_KEY),
    )

    assert result.returncode != 0
    assert result.stdout == ""
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "ENCRYPTION_KEY is not a Fernet key" in line and "Traceback" not in result.stderr
    assert not Pipeline.objects.filter(name="Never").exists()


@pytest.mark.parametrize(("overrides", "variable", "check_id"), BAD_SETTINGS[:1] + BAD_SETTINGS[2:4])
def test_the_gateway_refuses_to_start_with_a_bad_secret_setting(
    gateway_env: dict[str, str], overrides: dict[str, str], variable: str, check_id: str
) -> None:
    # Given the gateway's environment with one bad secret setting
    env = environment(**{**gateway_env, "PYTHONUNBUFFERED": "1", **overrides})
    port = free_port()

    # When daphne is started on it
    result = run(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "signal_gateway.asgi:application"],
        env,
        timeout=60,
    )

    # Then it exits non-zero, with one line naming the variable and no traceback
    assert result.returncode != 0
    output = result.stdout + result.stderr
    [line] = lines_naming(output, variable)
    assert "refuses to start" in line and check_id in line
    assert "Traceback" not in output
