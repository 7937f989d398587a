"""Personal API keys: created on the user's page (shown once), used as a Token or Bearer
header, revoked from the page or the API; only a digest is stored."""

from __future__ import annotations

import re

from rest_framework.test import APIClient

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
