"""The API against its own OpenAPI schema: schemathesis generates requests for every
operation (in process, through the WSGI app) as a lead of a real project, and every
response must be free of server errors and match the schema. Few examples per operation
keep it to seconds; the point is coverage of every operation, not a long fuzz."""

from __future__ import annotations

import json
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from api.authentication import token_create

MAX_EXAMPLES = 6
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def test_the_schema_is_served_and_valid(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "tokenAuth" in schema["components"]["securitySchemes"]
    # The docs pages load nothing from outside the server: vendored static files only.
    for page in ("/api/docs/", "/api/redoc/"):
        html = client.get(page).content.decode()
        assert "/static/drf_spectacular_sidecar/" in html
        assert not re.findall(r"https?://", html), page
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
            assert client.get(asset).status_code == 200, asset


def served_schema(client) -> dict:  # type: ignore[no-untyped-def]
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict):  # type: ignore[no-untyped-def]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_path_parameters_are_the_ones_in_the_path(client, db):
    """Each operation declares exactly the parameters its path names, all required: a
    client generated from the schema must be able to build every URL."""
    for path, method, operation in operations(served_schema(client)):
        named = set(re.findall(r"{(\w+)}", path))
        declared = [p for p in operation.get("parameters", []) if p["in"] == "path"]
        assert {p["name"] for p in declared} == named, (method, path)
        assert all(p.get("required") for p in declared), (method, path)


def test_every_operation_has_a_summary(client, db):
    summaries = {}
    for path, method, operation in operations(served_schema(client)):
        summary = operation.get("summary", "")
        assert summary.strip(), (method, path)
        summaries.setdefault(summary, []).append(f"{method} {path}")
    assert all(len(ops) == 1 for ops in summaries.values()), summaries


def _is_list(schema: dict, response: dict) -> bool:
    body = next(iter(response.get("content", {}).values()), {}).get("schema", {})
    if "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    return body.get("type") == "array" or "results" in body.get("properties", {})


def test_list_endpoints_document_bad_requests_and_missing_credentials(client, db):
    schema = served_schema(client)
    lists = [(path, operation) for path, method, operation in operations(schema)
             if method == "get" and _is_list(schema, operation["responses"].get("200", {}))]
    assert len(lists) >= 8
    for path, operation in lists:
        for code in ("400", "401"):
            assert code in operation["responses"], (path, code)
            assert "#/components/schemas/Error" in json.dumps(operation["responses"][code])


@pytest.fixture
def wsgi_app():  # type: ignore[no-untyped-def]
    """The real WSGI application, minus what Django's test client also switches off: closing
    the database connection after each request would close the test's transaction."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from config.wsgi import application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield application
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_every_operation_matches_the_schema(project, documents, lead, wsgi_app):
    _token, key = token_create(user=lead, name="schemathesis")
    headers = {"Authorization": f"Token {key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    for operation in operations:
        fixed = {"pk": project.pk} if "{pk}" in operation.path else None
        strategy = operation.as_strategy(path_parameters=fixed)

        @given(case=strategy)
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def call(case):  # type: ignore[no-untyped-def]
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS)

        try:
            call()
        except Exception as exc:
            pytest.fail(f"{operation.method.upper()} {operation.path}: {exc}")
