"""Limits on what one request may cost the server.

A request body over the upload limit (DATA_UPLOAD_MAX_MEMORY_SIZE) is answered 413 with a
message saying so, by the API (JSON, like every API error) and by the web pages; never a
500 or a bare 400. A predictions request holds at most LABELWISE_PREDICT_MAX_TEXTS texts of
LABELWISE_PREDICT_MAX_CHARS characters in all (400 naming the limit), and predictions and
key creation are throttled per user (429 with Retry-After).
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from annotate.models import Label
from api.authentication import token_create
from api.models import ApiToken
from tests.api.conftest import token_client
from tests.conftest import PASSWORD

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


# --- predictions: texts per request, characters per request, calls per user ---------------


def predict(client, project, texts: list[str]):  # type: ignore[no-untyped-def]
    return client.post(f"/api/projects/{project.pk}/predict/", {"texts": texts},
                       format="json")


def test_predict_refuses_more_texts_than_the_limit_naming_it(project, viewer, done_round):
    viewer_client = token_client(viewer)
    response = predict(viewer_client, project, ["a short text"] * 257)
    assert response.status_code == 400
    body = response.json()
    assert "256" in body["detail"] and "LABELWISE_PREDICT_MAX_TEXTS" in body["detail"]
    assert "texts" in body["errors"]
    # At the limit the request goes on to the model (here: a round without one on disk).
    assert predict(viewer_client, project, ["a short text"] * 256).status_code == 409


def test_predict_limits_follow_the_settings(project, viewer, done_round, settings):
    settings.LABELWISE_PREDICT_MAX_TEXTS = 3
    viewer_client = token_client(viewer)
    assert predict(viewer_client, project, ["x"] * 4).status_code == 400
    assert predict(viewer_client, project, ["x"] * 3).status_code == 409


def test_predict_refuses_more_characters_in_all_than_the_limit(project, viewer, done_round,
                                                               settings):
    settings.LABELWISE_PREDICT_MAX_CHARS = 100
    viewer_client = token_client(viewer)
    response = predict(viewer_client, project, ["x" * 60, "y" * 41])
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "101" in detail and "100" in detail and "LABELWISE_PREDICT_MAX_CHARS" in detail
    assert predict(viewer_client, project, ["x" * 60, "y" * 40]).status_code == 409


def test_the_default_predict_limits(settings):
    assert settings.LABELWISE_PREDICT_MAX_TEXTS == 256
    assert settings.LABELWISE_PREDICT_MAX_CHARS == 1_000_000
    assert settings.LABELWISE_PREDICT_RATE == "120/min"
    assert settings.LABELWISE_TOKEN_RATE == "20/hour"


def test_predict_is_throttled_per_user_with_retry_after(project, viewer, lead, done_round,
                                                        settings):
    settings.LABELWISE_PREDICT_RATE = "2/min"
    viewer_client = token_client(viewer)
    for _ in range(2):
        assert predict(viewer_client, project, ["x"]).status_code == 409
    refused = predict(viewer_client, project, ["x"])
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert 0 < int(refused["Retry-After"]) <= 60
    # Per user: another member is not held back by the viewer's calls.
    assert predict(token_client(lead), project, ["x"]).status_code == 409


def test_token_creation_is_throttled_across_the_api_and_the_keys_page(client, lead, settings):
    settings.LABELWISE_TOKEN_RATE = "2/hour"
    client.login(username="lead", password=PASSWORD)
    assert client.post("/api/me/tokens/", {"name": "one"},
                       content_type="application/json").status_code == 201
    page = reverse("api:tokens-page")
    assert client.post(page, {"name": "two"}).status_code == 200
    refused = client.post("/api/me/tokens/", {"name": "three"},
                          content_type="application/json")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    refused_page = client.post(page, {"name": "four"})
    assert refused_page.status_code == 429 and int(refused_page["Retry-After"]) > 0
    assert "too many keys" in refused_page.content.decode()
    assert sorted(ApiToken.objects.filter(user=lead).values_list("name", flat=True)) == [
        "one", "two"]
    # Listing one's keys is not limited.
    assert client.get("/api/me/tokens/").status_code == 200
    assert client.get(page).status_code == 200


def test_the_schema_declares_429_where_requests_are_throttled(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    predict_op = schema["paths"]["/api/projects/{pk}/predict/"]["post"]
    token_op = schema["paths"]["/api/me/tokens/"]["post"]
    for operation in (predict_op, token_op):
        assert "#/components/schemas/Error" in json.dumps(operation["responses"]["429"])
    texts = schema["components"]["schemas"]["PredictRequestRequest"]["properties"]["texts"]
    assert texts["maxItems"] == 256


@pytest.mark.parametrize("raw", ["lots", "0/min", "10/fortnight", "-1/s", "10"])
def test_a_bad_throttle_rate_in_the_environment_fails_loudly(raw, monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from config.settings import env_rate

    monkeypatch.setenv("LABELWISE_PREDICT_RATE", raw)
    with pytest.raises(ImproperlyConfigured, match="LABELWISE_PREDICT_RATE"):
        env_rate("LABELWISE_PREDICT_RATE", "120/min")
    monkeypatch.setenv("LABELWISE_PREDICT_RATE", "5/hour")
    assert env_rate("LABELWISE_PREDICT_RATE", "120/min") == "5/hour"
