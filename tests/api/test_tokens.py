"""Personal API keys: created on the user's page (shown once), used as a Token or Bearer
header, revoked from the page or the API; only a digest is stored."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from annotate.models import Assignment
from api.authentication import token_create
from api.models import ApiToken, token_digest
from tests.conftest import PASSWORD


def test_a_key_created_on_the_page_is_shown_once_and_authenticates(client, lead, project):
    assert client.get("/api/tokens/").status_code == 302  # login first
    client.login(username="lead", password=PASSWORD)
    page = client.post("/api/tokens/", {"name": "notebook"})
    assert page.status_code == 200
    key = re.search(r"<pre><code>(lw_[\w-]+)</code></pre>", page.content.decode()).group(1)
    token = ApiToken.objects.get(user=lead)
    assert token.digest == token_digest(key) and key not in token.digest
    assert token.prefix == key[:10] and token.last_used_at is None
    # The key is not shown again.
    assert key not in client.get("/api/tokens/").content.decode()

    for scheme in ("Token", "Bearer"):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"{scheme} {key}")
        response = api.get(f"/api/projects/{project.pk}/")
        assert response.status_code == 200 and response.json()["role"] == "lead"
    token.refresh_from_db()
    assert token.last_used_at is not None

    client.post(f"/api/tokens/{token.pk}/revoke/")
    revoked = api.get(f"/api/projects/{project.pk}/")
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


def test_tokens_through_the_api(lead, stranger):
    api = APIClient()
    api.force_authenticate(None)
    api.login(username="lead", password=PASSWORD)
    created = api.post("/api/me/tokens/", {"name": "ci"}, format="json")
    assert created.status_code == 201
    key, token_id = created.json()["key"], created.json()["id"]
    listed = api.get("/api/me/tokens/").json()
    assert [t["id"] for t in listed] == [token_id] and "key" not in listed[0]
    # Someone else cannot revoke it.
    other = APIClient()
    other.login(username="stranger", password=PASSWORD)
    assert other.delete(f"/api/me/tokens/{token_id}/").status_code == 404
    with_key = APIClient()
    with_key.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert with_key.get("/api/projects/").status_code == 200
    assert api.delete(f"/api/me/tokens/{token_id}/").status_code == 204
    assert with_key.get("/api/projects/").status_code == 401


def test_a_wrong_or_malformed_key_is_401(db):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token lw_not-a-key")
    response = api.get("/api/projects/")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    api.credentials(HTTP_AUTHORIZATION="Token two parts")
    assert api.get("/api/projects/").status_code == 401


def test_session_auth_needs_csrf_for_writes(lead, project):
    api = APIClient(enforce_csrf_checks=True)
    api.login(username="lead", password=PASSWORD)
    assert api.get(f"/api/projects/{project.pk}/labels/").status_code == 200
    response = api.post(f"/api/projects/{project.pk}/labels/", {"name": "x"}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


# --- scope, expiry, last use, who may mint -------------------------------------------------


def key_client(key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


def test_a_read_only_key_reads_and_gets_403_on_every_unsafe_method(lead, project, documents):
    _token, key = token_create(user=lead, name="dashboard", read_only=True)
    api = key_client(key)
    assert api.get(f"/api/projects/{project.pk}/").status_code == 200
    assert api.get(f"/api/projects/{project.pk}/labels/").status_code == 200
    label = project.labels.first()
    for method, path, body in (
        ("post", f"/api/projects/{project.pk}/labels/", {"name": "politics"}),
        ("patch", f"/api/projects/{project.pk}/", {"name": "renamed"}),
        ("patch", f"/api/projects/{project.pk}/labels/{label.pk}/", {"name": "renamed"}),
        ("delete", f"/api/projects/{project.pk}/labels/{label.pk}/", None),
        ("post", f"/api/projects/{project.pk}/next/", None),
        ("post", f"/api/projects/{project.pk}/rounds/", None),
        ("post", "/api/projects/", {"name": "mine now"}),
    ):
        response = getattr(api, method)(path, body, format="json")
        assert response.status_code == 403, (method, path)
        assert "read-only" in response.json()["detail"]
    project.refresh_from_db()
    assert project.name == "News topics" and project.labels.count() == 3
    assert not Assignment.objects.exists()


def test_an_expired_key_is_refused(lead, project):
    token, key = token_create(user=lead, name="old", days=1)
    assert key_client(key).get("/api/projects/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = key_client(key).get("/api/projects/")
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_a_key_expires_after_the_days_asked_for(lead):
    token, _key = token_create(user=lead, name="ci", days=30)
    expected = timezone.now() + timedelta(days=30)
    assert abs((token.expires_at - expected).total_seconds()) < 60
    assert token_create(user=lead, name="forever")[0].expires_at is None


def test_a_key_can_neither_mint_nor_revoke_keys(lead):
    token, key = token_create(user=lead, name="ci")
    api = key_client(key)
    minted = api.post("/api/me/tokens/", {"name": "another"}, format="json")
    assert minted.status_code == 403 and "session" in minted.json()["detail"]
    assert api.delete(f"/api/me/tokens/{token.pk}/").status_code == 403
    assert ApiToken.objects.filter(user=lead).count() == 1
    token.refresh_from_db()
    assert token.revoked_at is None
    # Listing its owner's keys is a read: allowed.
    assert api.get("/api/me/tokens/").status_code == 200


def test_a_session_mints_read_only_and_expiring_keys_through_the_api(lead):
    api = APIClient()
    api.login(username="lead", password=PASSWORD)
    created = api.post("/api/me/tokens/", {"name": "ro", "read_only": True,
                                           "expires_in_days": 7}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["read_only"] is True and body["expires_at"]
    token = ApiToken.objects.get(pk=body["id"])
    assert token.read_only and token.expires_at > timezone.now() + timedelta(days=6)
    bad = api.post("/api/me/tokens/", {"name": "x", "expires_in_days": 0}, format="json")
    assert bad.status_code == 400


def test_last_use_is_recorded_at_most_once_a_minute_and_shown_on_the_page(client, lead):
    token, key = token_create(user=lead, name="notebook")
    key_client(key).get("/api/projects/")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    # Within the minute: no second write.
    key_client(key).get("/api/projects/")
    token.refresh_from_db()
    assert token.last_used_at == first
    # Past it: recorded again.
    earlier = timezone.now() - timedelta(minutes=2)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=earlier)
    key_client(key).get("/api/projects/")
    token.refresh_from_db()
    assert token.last_used_at > earlier + timedelta(minutes=1)
    client.force_login(lead)
    page = client.get("/api/tokens/").content.decode()
    row = re.search(rf'<tr id="token-{token.pk}">(.*?)</tr>', page, re.S).group(1)
    assert timezone.localtime(token.last_used_at).strftime("%Y-%m-%d %H:%M") in row


def test_the_page_creates_read_only_and_expiring_keys(client, lead):
    client.force_login(lead)
    page = client.post("/api/tokens/", {"name": "grafana", "read_only": "on", "days": "90"})
    assert page.status_code == 200
    token = ApiToken.objects.get(user=lead)
    assert token.read_only and token.expires_at is not None
    html = page.content.decode()
    row = re.search(rf'<tr id="token-{token.pk}">(.*?)</tr>', html, re.S).group(1)
    assert "read-only" in row
    assert timezone.localtime(token.expires_at).strftime("%Y-%m-%d") in row
    refused = client.post("/api/tokens/", {"name": "x", "days": "-3"})
    assert refused.status_code == 200 and ApiToken.objects.filter(user=lead).count() == 1


def test_token_create_command_prints_a_working_key(lead, project):
    out, err = io.StringIO(), io.StringIO()
    call_command("token_create", "lead", "--read-only", "--days", "7", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert key.startswith("lw_") and len(key.splitlines()) == 1
    token = ApiToken.objects.get(digest=token_digest(key))
    assert token.user == lead and token.read_only and token.expires_at is not None
    assert key_client(key).get(f"/api/projects/{project.pk}/").status_code == 200
    with pytest.raises(CommandError, match="No active user"):
        call_command("token_create", "nobody", stdout=out, stderr=err)
    with pytest.raises(CommandError):
        call_command("token_create", "lead", "--days", "0", stdout=out, stderr=err)
