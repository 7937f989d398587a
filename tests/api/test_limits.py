"""A request body over the upload limit (DATA_UPLOAD_MAX_MEMORY_SIZE) is answered 413 with a
message saying so, by the API (JSON, like every API error) and by the web pages; never a
500 or a bare 400."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from annotate.models import Label
from api.authentication import token_create

LIMIT = 2_000


@pytest.fixture
def small_limit(settings):  # type: ignore[no-untyped-def]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT


BODIES = {
    "json": ("application/json", json.dumps({"name": "x" * 3 * LIMIT})),
    "form": ("application/x-www-form-urlencoded", "name=" + "x" * 3 * LIMIT),
}


@pytest.mark.parametrize("kind", list(BODIES))
def test_api_answers_413_to_a_body_over_the_limit_with_a_token(
    client, project, lead, small_limit, kind
):
    _token, key = token_create(user=lead, name="big")
    content_type, body = BODIES[kind]
    response = client.post(f"/api/projects/{project.pk}/labels/", body,
                           content_type=content_type, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")
    error = response.json()
    assert error["code"] == "request_too_large" and "too large" in error["detail"]
    assert not Label.objects.filter(name__startswith="xxx").exists()


def test_api_answers_413_to_a_multipart_body_over_the_limit(client, project, lead,
                                                            small_limit):
    _token, key = token_create(user=lead, name="big")
    response = client.post(f"/api/projects/{project.pk}/labels/", {"name": "x" * 3 * LIMIT},
                           HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


def test_api_answers_413_in_a_browser_session_too(client, project, lead, small_limit):
    client.force_login(lead)
    content_type, body = BODIES["json"]
    response = client.post(f"/api/projects/{project.pk}/labels/", body,
                           content_type=content_type)
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"


@pytest.mark.parametrize("kind", ["multipart", "form"])
def test_a_web_page_answers_413_with_a_clear_message(client, project, lead, small_limit,
                                                     kind):
    client.force_login(lead)
    url = reverse("annotate:labels", kwargs={"pk": project.pk})
    if kind == "multipart":
        response = client.post(url, {"name": "x" * 3 * LIMIT})
    else:
        response = client.post(url, BODIES["form"][1], content_type=BODIES["form"][0])
    assert response.status_code == 413
    html = response.content.decode()
    assert "too large" in html and "<html" in html


def test_a_body_under_the_limit_is_served_as_before(client, project, lead, small_limit):
    _token, key = token_create(user=lead, name="small")
    response = client.post(f"/api/projects/{project.pk}/labels/", {"name": "politics"},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 201
