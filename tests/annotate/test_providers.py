"""annotate reads predictions only through annotate.providers: without a model side
registered, the queue, the documents list and the review pages work with no round."""

from __future__ import annotations

import pytest

from annotate import providers, selectors
from learner.predictions import LearnerPredictions


@pytest.fixture
def no_learner(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(providers, "_source", providers.NoPredictions())


def test_the_learner_registers_its_prediction_source() -> None:
    assert isinstance(providers.prediction_source(), LearnerPredictions)


def test_queue_without_a_learner_hands_out_in_random_order(no_learner, annotator, project,
                                                            documents) -> None:
    plan = selectors.queue_plan(project)
    assert plan.round_id is None and plan.random_share == 0.0 and not plan.show_suggestions
    first = min(documents, key=lambda d: d.rand)
    assert selectors.next_item_for(annotator, project) == first


def test_pages_without_a_learner_show_no_model_columns(no_learner, project, documents) -> None:
    rows = list(selectors.document_list(project=project, sort="confidence"))
    assert len(rows) == len(documents)
    assert {(r.predicted_labels, r.confidence, r.score) for r in rows} == {(None, None, None)}
    assert selectors.document_list(project=project, min_confidence=0.5).count() == 0
    assert list(selectors.review_uncertain(project=project)) == []
    assert selectors.review_label_errors(project=project) == []
    assert selectors.suggestion_for(project, documents[0]) is None
    history = selectors.document_history(project=project, document_id=documents[0].pk)
    assert history.predictions == []
