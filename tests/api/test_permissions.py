"""Every API endpoint, for every kind of caller: anonymous (401), a stranger (404 on every
project endpoint: the project's existence is not revealed), an annotator, a viewer and a
lead (403 where the role may not, anything but 401/403/404 where it may).

The table is checked against the URL patterns, so a new endpoint without a row fails."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, reverse

from api import urls as api_urls

ANON, STRANGER, ANNOTATOR, VIEWER, LEAD = "anonymous", "stranger", "annotator", "viewer", "lead"
EVERYONE = (STRANGER, ANNOTATOR, VIEWER, LEAD)
MEMBERS = (ANNOTATOR, VIEWER, LEAD)
WATCHERS = (VIEWER, LEAD)
ANNOTATORS = (ANNOTATOR, LEAD)

# url name -> [(method, roles allowed, body)]; `None` roles = public (no login needed).
ENDPOINTS: dict[str, list[tuple[str, tuple[str, ...] | None, dict | None]]] = {
    "schema": [("get", None, None)],
    "docs": [("get", None, None)],
    "redoc": [("get", None, None)],
    # These clients authenticate with keys, and no key mints or revokes keys (a signed-in
    # session does: test_tokens.py).
    "tokens": [("get", EVERYONE, None), ("post", (), {"name": "ci"})],
    "token": [("delete", (), None)],
    "projects": [("get", EVERYONE, None), ("post", EVERYONE, {"name": "Mine"})],
    "project": [("get", MEMBERS, None), ("patch", (LEAD,), {"name": "Renamed"})],
    "labels": [("get", MEMBERS, None), ("post", (LEAD,), {"name": "politics"})],
    "label": [("get", MEMBERS, None), ("patch", (LEAD,), {"name": "markets"}),
              ("delete", (LEAD,), None)],
    "guidelines": [("get", MEMBERS, None), ("post", (LEAD,), {"text": "New rules"})],
    "guideline": [("get", MEMBERS, None)],
    "documents": [("get", WATCHERS, None),
                  ("post", (LEAD,), {"documents": [{"text": "a fresh text"}]})],
    "document": [("get", WATCHERS, None)],
    "annotations": [("get", MEMBERS, None),
                    ("post", ANNOTATORS, {"document": 1, "labels": ["sport"]})],
    "next": [("post", ANNOTATORS, None)],
    "submit": [("post", ANNOTATORS, {"document": 1, "labels": ["sport"]})],
    "review": [("get", (LEAD,), None)],
    "rounds": [("get", WATCHERS, None), ("post", (LEAD,), None)],
    "round": [("get", WATCHERS, None)],
    "round-cancel": [("post", (LEAD,), None)],
    "round-final": [("post", (LEAD,), {"trials": 2})],
    "round-exports": [("get", WATCHERS, None), ("post", (LEAD,), {"format": "hf"})],
    "export": [("get", WATCHERS, None)],
    "export-download": [("get", WATCHERS, None)],
    "predict": [("post", WATCHERS, {"texts": ["a goal in the cup"]})],
    "data-export": [("get", (LEAD,), None)],
}
# Plain Django pages under /api/ (session login, HTML), tested in test_tokens.py.
PAGES = {"tokens-page", "tokens-page-revoke", "round-export-page"}


def test_every_api_url_has_a_permission_row():
    names = {p.name for p in api_urls.urlpatterns if isinstance(p, URLPattern) and p.name}
    assert names - PAGES == set(ENDPOINTS), "add the new endpoint to ENDPOINTS"


CASES = [
    pytest.param(name, method, roles, body, who, id=f"{method.upper()} {name} as {who}")
    for name, rows in ENDPOINTS.items()
    for method, roles, body in rows
    for who in (ANON, *EVERYONE)
]


@pytest.fixture
def objects(project, documents, done_round, lead):  # type: ignore[no-untyped-def]
    from learner.models import ExportJob

    job = ExportJob.objects.create(round=done_round, format="hf")
    return {
        "pk": project.pk,
        "label_id": project.labels.first().pk,
        "version": 1,
        "document_id": documents[0].pk,
        "number": done_round.number,
        "job_id": job.pk,
        "kind": "disagreements",
        "fmt": "jsonl",
        "token_id": 999_999,
    }


def _kwargs(name: str, objects: dict) -> dict:
    pattern = next(p for p in api_urls.urlpatterns if p.name == name)
    return {key: objects[key] for key in pattern.pattern.converters}


@pytest.mark.parametrize(("name", "method", "roles", "body", "who"), CASES)
def test_endpoint_permissions(name, method, roles, body, who, clients, objects, documents):
    body = dict(body) if body else None
    if body and "document" in body:
        body["document"] = objects["document_id"]
    response = getattr(clients[who], method)(
        reverse(f"api:{name}", kwargs=_kwargs(name, objects)), body, format="json"
    )
    code = response.status_code
    if roles is None:
        assert code == 200
        return
    if who == ANON:
        assert code == 401, response.content
        assert response.json()["code"] == "not_authenticated"
    elif who == STRANGER and "pk" in _kwargs(name, objects):
        assert code == 404, response.content
        assert response.json()["detail"] == "No such project"
    elif who in roles:
        assert code not in (401, 403, 404) or name in {"token"}, response.content
        assert code < 500
    else:
        assert code == 403, response.content
        assert response.json()["code"] == "permission_denied"
