"""`make demo` serves the web app under gunicorn, the production server, not runserver:
the command rundemo starts serves pages and static files, and does not log each request."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

import pytest

from learner.management.commands.rundemo import bind_address, web_command
from tests.conftest import REPO_ROOT, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 60.0) -> tuple[int, str, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_bind_address_accepts_a_bare_port() -> None:
    assert bind_address("8020") == "127.0.0.1:8020"
    assert bind_address("0.0.0.0:8000") == "0.0.0.0:8000"


def test_demo_web_server_is_gunicorn_serving_pages_and_static_files() -> None:
    port = free_port()
    command = web_command(f"127.0.0.1:{port}")
    assert "gunicorn" in command and "runserver" not in command
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status, _, body = get(f"http://127.0.0.1:{port}/healthz")
        assert (status, body) == (200, b'{"status": "ok"}')
        status, content_type, body = get(f"http://127.0.0.1:{port}/static/vendor/htmx.min.js")
        assert status == 200 and "javascript" in content_type and b"htmx" in body
        status, _, _ = get(f"http://127.0.0.1:{port}/static/labelwise/app.css")
        assert status == 200
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    # Quiet by default: no line per request (the dashboard polls every two seconds).
    assert "GET /healthz" not in output
    assert "htmx.min.js" not in output


def test_verbose_demo_web_server_logs_requests() -> None:
    command = web_command("127.0.0.1:8000", verbose=True)
    assert command[command.index("--access-logfile") + 1] == "-"
