"""Before any model exists, the queue follows an embedding k-means cold start."""

from __future__ import annotations

import random

from annotate import services as queue
from annotate.models import Document, text_hash
from learner.models import LearnerSettings, Prediction, Round
from learner.refresh import refresh_project
from learner.worker import Worker

TOPICS = [
    ["market", "shares", "profit", "bank"],
    ["match", "goal", "team", "coach"],
    ["software", "chip", "internet", "phone"],
]


def test_cold_start_orders_the_first_queue_and_feeds_the_refresh(
    project, annotator, tiny_model_name
):
    rng = random.Random(5)
    Document.objects.bulk_create(
        Document(project=project, text=(text := f"{i} " + " ".join(
            rng.choice(TOPICS[i % 3]) for _ in range(6))), text_hash=text_hash(text),
            rand=rng.random())
        for i in range(60)
    )
    LearnerSettings.objects.create(project=project, model_name=tiny_model_name,
                                   max_length=32, train_every_labels=0, random_share=0.0)

    assert Worker(name="test").run_once() is True
    cold = Round.objects.get(project=project)
    assert cold.trigger == "cold_start" and cold.status == "done", cold.traceback
    assert cold.metrics is None  # no model, nothing to evaluate: no point on the curve
    predictions = Prediction.objects.filter(round=cold)
    assert predictions.count() == 60
    assert all(p.labels == [] and p.probs == [] for p in predictions)
    picks = list(predictions.filter(rank__isnull=False).order_by("rank"))
    assert 1 <= len(picks) <= 60 and cold.timings["picked"] == len(picks)
    assert [p.rank for p in picks] == list(range(len(picks)))
    # Behind the picks every document has a distinct random score: no tied group for the
    # queue's index walk to sort.
    scores = list(predictions.values_list("score", flat=True))
    assert len(set(scores)) == 60 and all(-1 < score <= 0 for score in scores)

    # The first documents handed out are the k-means picks, in pick order.
    first = queue.assignment_next(user=annotator, project=project)
    assert first.pk == picks[0].document_id
    assert Worker(name="test").run_once() is False  # no second cold start

    # Labels arrive: the refresh re-scores the pool from the cold start's embeddings.
    labels = list(project.labels.all())
    for i in range(6):
        document = queue.assignment_next(user=annotator, project=project)
        queue.annotation_submit(user=annotator, project=project, document_id=document.pk,
                                label_ids=[labels[i % 3].pk])
    assert refresh_project(project) > 0
    refreshed = Prediction.objects.filter(round=cold, document__final_labels__isnull=True)
    assert all(len(p.probs) == 3 and p.labels for p in refreshed)
    # ... and selects the next batch with the project's strategy: only open documents.
    batch = list(refreshed.filter(rank__isnull=False).order_by("rank"))
    assert batch and [p.rank for p in batch] == list(range(len(batch)))
    assert not Prediction.objects.filter(round=cold, rank__isnull=False,
                                         document__final_labels__isnull=False).exists()
