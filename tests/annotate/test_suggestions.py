"""Model suggestions on the annotator page: shown only when the lead turns them on, never
for holdout documents, and free when off."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate import selectors
from annotate.models import Assignment, Document
from learner.models import LearnerSettings, Prediction, Round


@pytest.fixture
def predicted(project, documents):  # type: ignore[no-untyped-def]
    """A finished round that predicts "tech" at 83% for every document."""
    round = Round.objects.create(project=project, number=1, status=Round.Status.DONE)
    tech = project.labels.get(name="tech").pk
    Prediction.objects.bulk_create(
        Prediction(round=round, document=document, labels=[tech], probs=[0.1, 0.07, 0.83],
                   confidence=0.83, score=i / 100)
        for i, document in enumerate(documents)
    )
    return project


def suggestions(project, on: bool, threshold: float = 0.6) -> None:  # type: ignore[no-untyped-def]
    LearnerSettings.objects.update_or_create(project=project, defaults={
        "show_suggestions": on, "random_share": 0, "suggestion_threshold": threshold})
    selectors.queue_plan_forget(project.pk)


def page(client, project, user) -> str:  # type: ignore[no-untyped-def]
    client.force_login(user)
    client.post(reverse("annotate:annotate_next", args=[project.pk]))  # Start
    response = client.get(reverse("annotate:annotate", args=[project.pk]))
    assert response.status_code == 200
    return response.content.decode()


def suggested_button(html: str, project) -> bool:  # type: ignore[no-untyped-def]
    tech = project.labels.get(name="tech").pk
    return f'value="{tech}" class="label-button suggested"' in html


def test_no_suggestion_by_default(client, predicted, annotator):
    html = page(client, predicted, annotator)
    assert "Model suggests" not in html and not suggested_button(html, predicted)


def test_no_suggestion_when_turned_off(client, predicted, annotator):
    suggestions(predicted, on=False)
    html = page(client, predicted, annotator)
    assert "Model suggests" not in html and not suggested_button(html, predicted)


def test_no_suggestion_below_the_leads_confidence_threshold(client, predicted, annotator):
    """The round's confidences are calibrated: below the threshold the model is right too
    rarely for its suggestion to help."""
    suggestions(predicted, on=True, threshold=0.9)
    html = page(client, predicted, annotator)
    assert "Model suggests" not in html and not suggested_button(html, predicted)
    suggestions(predicted, on=True, threshold=0.83)
    assert "Model suggests: <strong>tech</strong> (83%)" in page(client, predicted, annotator)


def test_suggestion_shows_the_latest_rounds_label_and_confidence(client, predicted, annotator):
    suggestions(predicted, on=True)
    html = page(client, predicted, annotator)
    assert "Model suggests: <strong>tech</strong> (83%)" in html
    assert suggested_button(html, predicted)


def test_the_next_document_after_a_submit_has_its_suggestion_too(client, predicted, annotator):
    suggestions(predicted, on=True)
    page(client, predicted, annotator)
    held = Assignment.objects.get(user=annotator, status="active").document
    response = client.post(
        reverse("annotate:annotate_submit", args=[predicted.pk]),
        {"document": held.pk, "label": predicted.labels.get(name="sport").pk},
        HTTP_HX_REQUEST="true",
    )
    assert "Model suggests: <strong>tech</strong> (83%)" in response.content.decode()


def test_never_a_suggestion_for_a_holdout_document(client, predicted, annotator):
    suggestions(predicted, on=True)
    Document.objects.filter(project=predicted).update(split=Document.Split.HOLDOUT)
    html = page(client, predicted, annotator)
    assert Assignment.objects.filter(user=annotator, status="active").exists()
    assert "Model suggests" not in html and not suggested_button(html, predicted)


def test_no_suggestion_before_any_round(client, project, documents, annotator):
    suggestions(project, on=True)
    html = page(client, project, annotator)
    assert "Model suggests" not in html


def test_suggestions_cost_no_query_when_off(predicted, django_assert_num_queries):
    suggestions(predicted, on=False)
    document = Document.objects.filter(project=predicted).first()
    labels = selectors.labels_of(predicted)
    selectors.queue_plan(predicted)  # the annotator page has it cached already
    with django_assert_num_queries(0):
        assert selectors.suggestion_for(predicted, document, labels) is None
    suggestions(predicted, on=True)
    selectors.queue_plan(predicted)
    with django_assert_num_queries(1):
        assert selectors.suggestion_for(predicted, document, labels).percent == 83
