"""A whole round on the real database with a tiny real BERT: train, evaluate, save, score."""

from __future__ import annotations

import random

import numpy as np
import pytest

from annotate import services as annotate_services
from annotate.models import Document, text_hash
from learner import services
from learner.ml.train import TextClassifier
from learner.models import LearnerSettings, Prediction, Round
from learner.worker import Worker

WORDS = {
    "business": ["market", "shares", "profit", "bank", "economy", "trade"],
    "sport": ["match", "goal", "team", "coach", "league", "cup"],
    "tech": ["software", "chip", "internet", "phone", "computer", "data"],
}


@pytest.fixture
def labelled_project(project, tiny_model_name):  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    label_ids = {label.name: label.pk for label in project.labels.all()}
    docs = []
    for i in range(90):
        name = list(WORDS)[i % 3]
        text = f"{i} " + " ".join(rng.choice(WORDS[name]) for _ in range(rng.randint(3, 12)))
        labelled = i < 45
        docs.append(Document(
            project=project, text=text, text_hash=text_hash(text), rand=rng.random(),
            final_labels=[label_ids[name]] if labelled else None,
            n_annotations=int(labelled), slots_taken=int(labelled),
        ))
    Document.objects.bulk_create(docs)
    annotate_services.holdout_reserve(project=project, fraction=0.33)
    LearnerSettings.objects.create(project=project, model_name=tiny_model_name, epochs=2,
                                   max_length=32, batch_size=8)
    return project


def test_a_round_trains_evaluates_saves_and_scores_the_pool(labelled_project, lead):
    project = labelled_project
    services.round_request(project=project, requested_by=lead)
    assert Worker(name="test").run_once() is True
    done = Round.objects.get(project=project)
    assert done.status == "done", done.traceback
    holdout = Document.objects.filter(project=project, split="holdout").count()
    assert done.n_holdout == holdout and done.n_train == 45 - holdout
    assert 0.0 <= done.metrics["macro_f1"] <= 1.0 and done.metrics["n"] == holdout
    assert len(done.metrics["confusion_matrix"]) == 3
    assert done.guideline_version.version == 1 and len(done.data_fingerprint) == 64
    assert set(done.timings) >= {"train_s", "score_s"}

    pool = Document.objects.filter(project=project, split="pool", final_labels__isnull=True)
    predictions = Prediction.objects.filter(round=done, score__isnull=False)
    assert predictions.count() == pool.count() == 45
    # Labelled training-side documents get a prediction too, without a queue score.
    labelled = Prediction.objects.filter(round=done, score__isnull=True)
    assert labelled.count() == done.n_train == done.timings["scored_labelled"]
    label_ids = set(project.labels.values_list("id", flat=True))
    for prediction in predictions:
        assert abs(sum(prediction.probs) - 1) < 1e-3
        assert prediction.labels[0] in label_ids
        assert prediction.confidence == pytest.approx(max(prediction.probs), abs=1e-4)

    # The artifact is the model that made these predictions.
    model = TextClassifier.load(done.artifact_path)
    sample = list(predictions.select_related("document")[:5])
    probs = model.predict_proba([p.document.text for p in sample])
    assert np.allclose(probs, [p.probs for p in sample], atol=1e-3)


def test_margin_scores_rank_the_least_certain_first(labelled_project):
    services.round_request(project=labelled_project)
    Worker(name="test").run_once()
    predictions = list(Prediction.objects.filter(round__project=labelled_project,
                                                 score__isnull=False))
    top = max(predictions, key=lambda p: p.score)
    margin = lambda p: sorted(p.probs)[-1] - sorted(p.probs)[-2]  # noqa: E731
    assert margin(top) == pytest.approx(min(margin(p) for p in predictions), abs=1e-4)


def test_a_round_with_one_class_fails_with_a_clear_error(project, lead, tiny_model_name):
    sport = project.labels.get(name="sport").pk
    Document.objects.bulk_create(
        Document(project=project, text=f"goal {i}", text_hash=text_hash(f"goal {i}"),
                 rand=i / 10, final_labels=[sport], n_annotations=1, slots_taken=1)
        for i in range(6)
    )
    LearnerSettings.objects.create(project=project, model_name=tiny_model_name)
    services.round_request(project=project)
    Worker(name="test").run_once()
    failed = Round.objects.get(project=project)
    assert failed.status == "failed" and "two classes" in failed.error


def test_after_a_round_the_queue_hands_out_the_strategys_batch_then_the_scores(
    labelled_project, annotator
):
    from annotate import services as queue

    # No exploration picks: this test is about the selected order (10% random made it flaky).
    # A round every 10 labels: the batch is the next 10.
    LearnerSettings.objects.filter(project=labelled_project).update(
        random_share=0, train_every_labels=10)
    before = queue.assignment_next(user=annotator, project=labelled_project)
    queue.assignment_skip(user=annotator, project=labelled_project, document_id=before.pk)
    services.round_request(project=labelled_project)
    Worker(name="test", refresh=False).run_once()
    done = Round.objects.get(project=labelled_project)
    assert done.status == "done", done.traceback
    batch = list(Prediction.objects.filter(round=done, rank__isnull=False).order_by("rank")
                 .values_list("document_id", flat=True))
    assert done.timings["selected"] == len(batch) > 0
    handed = []
    for _ in range(len(batch) + 2):
        document = queue.assignment_next(user=annotator, project=labelled_project)
        handed.append(document.pk)
        queue.annotation_submit(user=annotator, project=labelled_project,
                                document_id=document.pk,
                                label_ids=[document.predictions.first().labels[0]])
    expected = [d for d in batch if d != before.pk]
    assert handed[:len(expected)] == expected
    # After the batch, the per-document scores decide.
    rest = list(
        Prediction.objects.filter(round=done, score__isnull=False)
        .exclude(document_id__in=[*batch, before.pk])
        .order_by("-score", "-document_id").values_list("document_id", flat=True)[:2]
    )
    assert handed[len(expected):len(expected) + 2] == rest


def test_every_strategy_a_lead_can_pick_selects_a_batch_in_the_live_queue(labelled_project):
    from learner.views import LearnerSettingsForm

    offered = [value for value, _ in LearnerSettingsForm.base_fields["strategy"].choices]
    assert {"least_confidence", "margin", "entropy", "bald", "badge", "cal", "kmeans",
            "random"} == set(offered)
    for number, name in enumerate(offered, start=1):
        LearnerSettings.objects.filter(project=labelled_project).update(strategy=name)
        services.round_request(project=labelled_project)
        Worker(name="test").run_once()
        done = Round.objects.get(project=labelled_project, number=number)
        assert done.status == "done", (name, done.traceback)
        ranks = list(Prediction.objects.filter(round=done, rank__isnull=False)
                     .order_by("rank").values_list("rank", "document__final_labels"))
        assert ranks and [r for r, _ in ranks] == list(range(len(ranks))), name
        assert all(final is None for _, final in ranks), name


def test_every_phase_reports_steps_and_the_eta_comes_from_measured_rates(labelled_project):
    """Evaluation and scoring report every batch (not once per 2,000-text chunk), and the
    remaining time is known from the first timed forward pass on."""
    from learner.pipeline import run_round

    LearnerSettings.objects.filter(project=labelled_project).update(mode="full")
    round = services.round_request(project=labelled_project)
    calls: list[tuple[str, int, int, float | None]] = []

    def progress(phase, step=0, total=0, eta=None):  # type: ignore[no-untyped-def]
        calls.append((phase, step, total, eta))

    run_round(round, progress)
    phases = [c[0] for c in calls]
    for phase in ("features", "train", "evaluating", "scoring"):
        reports = [c for c in calls if c[0] == phase]
        assert reports and reports[-1][1] == reports[-1][2] > 0, phase  # each ends complete
    scoring = [c for c in calls if c[0] == "scoring"]
    assert scoring[-1][1] == 90 - Document.objects.filter(
        project=labelled_project, split="holdout").count()
    assert len({c[1] for c in scoring}) >= 2  # its start, then progress within the chunk
    etas = [c[3] for c in calls if c[3] is not None]
    first_timed = phases.index("train")
    assert all(c[3] is not None for c in calls[first_timed:] if c[0] in {"train", "scoring"})
    assert etas[-1] <= max(etas)
