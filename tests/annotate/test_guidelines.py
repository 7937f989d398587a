"""Guidelines: each version is rendered once, when it is saved, and every page shows the
stored HTML (rendering a long guideline per annotator page took seconds); a version
longer than LABELWISE_GUIDELINE_MAX_CHARS is refused by the service, the pages and the
API with a message naming the limit."""

from __future__ import annotations

import importlib

import markdown
import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotate import services
from annotate.models import GuidelineVersion, Project
from api.authentication import token_create


@pytest.fixture
def render_calls(monkeypatch):  # type: ignore[no-untyped-def]
    """The texts markdown.markdown was asked to render, in order."""
    calls: list[str] = []
    real = markdown.markdown

    def counting(text: str, **kwargs: object) -> str:
        calls.append(text)
        return real(text, **kwargs)

    monkeypatch.setattr(markdown, "markdown", counting)
    return calls


def test_guidelines_are_rendered_once_per_version_not_per_page(
    client, project, annotator, lead, documents, render_calls
):
    version = services.guideline_update(project=project, text="# Rules\n\n**Be** brief.",
                                        user=lead)
    assert render_calls == ["# Rules\n\n**Be** brief."]
    client.force_login(annotator)
    pages = [reverse("annotate:annotate", args=[project.pk])] * 2 + [
        reverse("annotate:guidelines", args=[project.pk]),
        reverse("annotate:guideline_version", args=[project.pk, version.version]),
    ]
    for page in pages:
        html = client.get(page).content.decode()
        assert "<strong>Be</strong>" in html, page
    assert len(render_calls) == 1


def test_the_stored_html_is_sanitised(project, lead):
    version = services.guideline_update(
        project=project, text="Hi <script>alert(1)</script> **bold**", user=lead)
    stored = GuidelineVersion.objects.get(pk=version.pk).html
    assert "<script>" not in stored and "<strong>bold</strong>" in stored


def test_the_annotator_page_shows_the_stored_html(client, project, annotator, documents):
    # What the page shows is the column, whatever the Markdown would render to today.
    GuidelineVersion.objects.filter(project=project).update(html="<p>stored copy</p>")
    client.force_login(annotator)
    html = client.get(reverse("annotate:annotate", args=[project.pk])).content.decode()
    assert "<p>stored copy</p>" in html


def test_the_migration_renders_existing_versions(project):
    GuidelineVersion.objects.filter(project=project).update(html="")
    migration = importlib.import_module("annotate.migrations.0003_guidelineversion_html")
    migration.render_existing(apps, None)
    assert "<strong>main</strong>" in project.guidelines.get().html


# --- size ----------------------------------------------------------------------------------


@pytest.fixture
def limit_50(settings):  # type: ignore[no-untyped-def]
    settings.LABELWISE_GUIDELINE_MAX_CHARS = 50


def test_the_default_guideline_limit(settings):
    assert settings.LABELWISE_GUIDELINE_MAX_CHARS == 200_000


def test_the_service_refuses_guidelines_over_the_limit(project, lead, limit_50):
    with pytest.raises(ValidationError) as refused:
        services.guideline_update(project=project, text="x" * 51, user=lead)
    message = refused.value.message_dict["text"][0]
    assert "51" in message and "50" in message and "LABELWISE_GUIDELINE_MAX_CHARS" in message
    assert project.guidelines.count() == 1
    assert services.guideline_update(project=project, text="x" * 50, user=lead).version == 2


def test_the_edit_page_shows_the_limit_and_saves_nothing(client, project, lead, limit_50):
    client.force_login(lead)
    response = client.post(reverse("annotate:guideline_edit", args=[project.pk]),
                           {"text": "x" * 51})
    assert response.status_code == 200
    assert "LABELWISE_GUIDELINE_MAX_CHARS" in response.content.decode()
    assert project.guidelines.count() == 1


def test_project_create_refuses_guidelines_over_the_limit(client, stranger, limit_50):
    client.force_login(stranger)
    response = client.post(reverse("annotate:project_create"), {
        "name": "Long rules", "task_type": "single_label", "overlap": "1",
        "guidelines": "x" * 51,
    })
    assert response.status_code == 200
    assert "LABELWISE_GUIDELINE_MAX_CHARS" in response.content.decode()
    assert not Project.objects.filter(name="Long rules").exists()


def test_the_api_refuses_guidelines_over_the_limit(client, project, lead, limit_50):
    _token, key = token_create(user=lead, name="rules")
    response = client.post(f"/api/projects/{project.pk}/guidelines/", {"text": "x" * 51},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 400
    body = response.json()
    assert "LABELWISE_GUIDELINE_MAX_CHARS" in body["errors"]["text"][0]
    assert project.guidelines.count() == 1
