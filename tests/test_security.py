"""Production hardening: the deployment check passes once the TLS variables are set, every
page carries a Content-Security-Policy that its own markup satisfies, and logins are
throttled per username and per address."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.urls import reverse

from tests.conftest import PASSWORD

REPO = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "a-production-secret-key-that-is-long-and-random-enough-0123456789abcdef",
    "ALLOWED_HOSTS": "labelwise.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://labelwise.example.org",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
}
TLS_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")


def check_deploy(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # DJANGO_ALLOW_ASYNC_UNSAFE is the browser tests' own (their live server), never production's.
    keep = {k: v for k, v in os.environ.items()
            if k not in PRODUCTION and not k.startswith("SECURE_")
            and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**keep, "LABELWISE_DATA_DIR": str(tmp_path), **env},
    )


def test_check_deploy_reports_nothing_with_the_production_variables(tmp_path):
    result = check_deploy(tmp_path, **PRODUCTION)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "no issues" in output and "WARNINGS" not in output


def test_check_deploy_names_what_is_missing_without_them(tmp_path):
    result = check_deploy(tmp_path, **{k: v for k, v in PRODUCTION.items()
                                       if not k.startswith(("SECURE_", "SESSION_", "CSRF_C"))})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for warning in TLS_WARNINGS:
        assert warning in output, warning


def test_a_malformed_proxy_header_fails_loudly(tmp_path):
    result = check_deploy(tmp_path, SECURE_PROXY_SSL_HEADER="https")
    assert result.returncode != 0 and "SECURE_PROXY_SSL_HEADER" in result.stderr


# --- Content-Security-Policy ---------------------------------------------------------------


def policy_of(response) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in
            (part.split() for part in header.split(";") if part.strip())}


class InlineCode(HTMLParser):
    """Collects what a strict policy blocks: inline <script> and <style> elements, on*
    handler attributes, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{name}= handler on <{tag}>")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"javascript: URL on <{tag}>")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def test_every_page_carries_a_strict_policy(client, project, lead):
    client.force_login(lead)
    response = client.get(reverse("annotate:home"))
    policy = policy_of(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no inline script, no eval
    assert policy["style-src"] == ["'self'"]
    # Inline SVG charts and a few bars are drawn with style attributes: those alone.
    assert policy["style-src-attr"] == ["'unsafe-inline'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert "Content-Security-Policy" in client.get("/api/projects/")
    assert "Content-Security-Policy" in client.get(reverse("login"))


def test_no_template_holds_code_the_policy_would_block():
    """Every template, rendered or not: no inline script, handler attribute or <style>
    element (the API docs pages, which bring their own, have their own policy)."""
    offenders = {}
    for template in sorted((REPO / "templates").rglob("*.html")):
        if template.parent.name == "drf_spectacular":
            continue
        text = template.read_text()
        found = inline_code(re.sub(r"{[%{#].*?[%}#]}", "x", text, flags=re.S))
        if found:
            offenders[str(template.relative_to(REPO))] = found
    assert not offenders


def test_the_pages_render_nothing_the_policy_blocks(client, project, lead, documents):
    from learner import services as learner_services

    learner_services.round_request(project=project)
    client.force_login(lead)
    client.post(reverse("annotate:annotate_next", args=[project.pk]))
    pages = [
        reverse("annotate:home"),
        reverse("annotate:project", args=[project.pk]),
        reverse("annotate:annotate", args=[project.pk]),
        reverse("annotate:labels", args=[project.pk]),
        reverse("annotate:members", args=[project.pk]),
        reverse("annotate:documents", args=[project.pk]),
        reverse("annotate:document", args=[project.pk, documents[0].pk]),
        reverse("annotate:review", args=[project.pk]),
        reverse("password_change"),
        reverse("learner:dashboard", args=[project.pk]),
        reverse("learner:settings", args=[project.pk]),
        reverse("learner:rounds", args=[project.pk]),
        reverse("learner:round", args=[project.pk, 1]),
        reverse("api:tokens-page"),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert not inline_code(response.content.decode()), url
        assert "Content-Security-Policy" in response, url


def test_the_api_docs_pages_load_under_their_policy(client, db):
    for url in ("/api/docs/", "/api/redoc/"):
        response = client.get(url)
        assert response.status_code == 200
        policy = policy_of(response)
        assert policy["script-src"] == ["'self'"], url
        html = response.content.decode()
        scripts = [f for f in inline_code(html) if "script" in f or "handler" in f]
        assert not scripts, (url, scripts)
        for src in re.findall(r'<script src="([^"]+)"', html):
            assert client.get(src).status_code == 200, src


# --- login throttling ----------------------------------------------------------------------


@pytest.fixture
def throttle(settings):  # type: ignore[no-untyped-def]
    settings.LABELWISE_LOGIN_MAX_FAILURES = 3
    settings.LABELWISE_LOGIN_MAX_FAILURES_PER_IP = 5
    settings.LABELWISE_LOGIN_WINDOW_MINUTES = 15


def log_in(client, username: str, password: str, ip: str = "203.0.113.7"):  # type: ignore[no-untyped-def]
    return client.post(reverse("login"), {"username": username, "password": password},
                       REMOTE_ADDR=ip)


def logged_in(client) -> bool:  # type: ignore[no-untyped-def]
    return "_auth_user_id" in client.session


def test_after_too_many_failures_a_username_is_refused_even_with_its_password(
    client, lead, throttle
):
    for _ in range(3):
        response = log_in(client, "lead", "wrong password")
        assert response.status_code == 200 and not logged_in(client)
    response = log_in(client, "lead", PASSWORD)
    assert response.status_code == 200 and not logged_in(client)
    assert "Too many failed logins" in response.content.decode()
    # From another address too: the username is what is guessed at.
    other = log_in(client, "lead", PASSWORD, ip="198.51.100.1")
    assert other.status_code == 200 and not logged_in(client)


def test_the_lock_lifts_after_the_window(client, lead, throttle):
    from django.core.cache import cache

    for _ in range(3):
        log_in(client, "lead", "wrong password")
    assert log_in(client, "lead", PASSWORD).status_code == 200
    cache.clear()  # as if the window had passed
    assert log_in(client, "lead", PASSWORD).status_code == 302 and logged_in(client)


def test_one_address_trying_many_usernames_is_refused(client, lead, annotator, throttle):
    for name in ("alice", "bob", "carol", "dave", "erin"):
        log_in(client, name, "guess")
    response = log_in(client, "annotator", PASSWORD)
    assert response.status_code == 200 and not logged_in(client)
    assert "Too many failed logins" in response.content.decode()
    # Someone else, elsewhere, logs in as usual.
    assert log_in(client, "lead", PASSWORD, ip="198.51.100.1").status_code == 302


def test_a_success_before_the_limit_clears_the_usernames_count(client, lead, throttle):
    for _ in range(2):
        log_in(client, "lead", "wrong password")
    assert log_in(client, "lead", PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        log_in(client, "lead", "wrong password")
    assert log_in(client, "lead", PASSWORD).status_code == 302


def test_the_admin_login_is_throttled_too(client, lead, throttle):
    lead.is_staff = True
    lead.save()
    for _ in range(3):
        client.post("/admin/login/", {"username": "lead", "password": "nope"},
                    REMOTE_ADDR="203.0.113.9")
    response = client.post("/admin/login/", {"username": "lead", "password": PASSWORD},
                           REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 200 and not logged_in(client)
    assert "Too many failed logins" in response.content.decode()
