"""The fast refresh between rounds: a round caches embeddings, new labels re-score the pool
from them, and the queue follows the new scores."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from annotate import selectors
from annotate import services as annotate_services
from annotate.models import Document, Project, text_hash
from learner import services
from learner.embeddings import EMBEDDING_IDS_FILE, EMBEDDINGS_FILE
from learner.ml.tasks import task_for
from learner.models import LearnerSettings, Prediction, Round
from learner.pipeline import artifact_dir, score_pool
from learner.refresh import refresh_due, refresh_project
from learner.worker import Worker
from tests.conftest import hand_out
from tests.learner.test_pipeline import labelled_project  # noqa: F401 - shared fixture

VOCAB = {
    "business": ["market", "shares", "profit"],
    "sport": ["match", "goal", "team"],
    "tech": ["software", "chip", "phone"],
}
WORDS = [w for words in VOCAB.values() for w in words]


class WordCountClassifier:
    """Stands in for TextClassifier in score_pool: embeddings count the topic words (so a
    linear head can learn topics from them), probabilities are uniform (a model that
    knows nothing yet)."""

    def __init__(self, task_type: str = "single_label") -> None:
        self.config = SimpleNamespace(task=task_for(task_type))
        self.thresholds_ = None

    def proba_and_embed(self, texts: list[str], **_: object) -> tuple[np.ndarray, np.ndarray]:
        embeddings = np.array(
            [[t.split().count(w) for w in WORDS] + [1.0] for t in texts], dtype=np.float32
        )
        return np.full((len(texts), 3), 1 / 3, dtype=np.float32), embeddings


def stub_runner(round: Round, progress) -> dict:  # type: ignore[no-untyped-def]
    label_ids = [label.pk for label in selectors.labels_of(round.project)]
    score_pool(round, WordCountClassifier(), label_ids=label_ids, progress=progress)
    return {"n_train": services.training_label_count(round.project_id),
            "artifact_path": str(artifact_dir(round))}


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.LABELWISE_ARTIFACT_DIR = tmp_path / "artifacts"


def add(project: Project, text: str, label: str | None = None) -> Document:
    final = [project.labels.get(name=label).pk] if label else None
    return Document.objects.create(
        project=project, text=text, text_hash=text_hash(text), rand=len(text) / 1000,
        final_labels=final, n_annotations=int(bool(label)), slots_taken=int(bool(label)),
    )


@pytest.fixture
def topic_project(project):  # type: ignore[no-untyped-def]
    """Business and sport labelled; tech documents all unlabelled, a few ambiguous ones."""
    for i in range(4):
        add(project, f"market shares profit {i}", "business")
        add(project, f"match goal team {i}", "sport")
    for i in range(8):
        add(project, f"software chip phone {i}")
    for i in range(3):
        add(project, f"market goal {i}")
    LearnerSettings.objects.create(project=project, train_every_labels=0)
    return project


def run_stub_round(project: Project) -> Round:
    services.round_request(project=project)
    assert Worker(name="test", runner=stub_runner).run_once() is True
    done = Round.objects.get(project=project, status="done")
    return done


def scores_by_doc(round: Round) -> dict[int, float]:
    return dict(
        Prediction.objects.filter(round=round, score__isnull=False)
        .values_list("document_id", "score")
    )


def test_a_round_caches_an_embedding_for_every_training_side_document(topic_project):
    done = run_stub_round(topic_project)
    ids = np.load(artifact_dir(done) / EMBEDDING_IDS_FILE)
    embeddings = np.load(artifact_dir(done) / EMBEDDINGS_FILE)
    expected = list(Document.objects.filter(project=topic_project, split="pool")
                    .order_by("id").values_list("id", flat=True))
    assert ids.tolist() == expected
    assert embeddings.shape == (len(expected), len(WORDS) + 1)
    assert embeddings.dtype == np.float16


def test_refresh_rescores_the_pool_and_new_labels_make_a_document_certain(
    topic_project, annotator
):
    project = topic_project
    done = run_stub_round(project)
    assert len(set(scores_by_doc(done).values())) == 1  # uniform probabilities: no signal
    tech_docs = list(Document.objects.filter(project=project, text__startswith="software"))

    assert refresh_project(project) == 11
    before = scores_by_doc(done)
    # The head knows no tech label yet: a tech document is as unsure as an ambiguous one.
    watched = tech_docs[-1]
    ambiguous = set(Document.objects.filter(project=project, text__startswith="market goal")
                    .values_list("id", flat=True))
    assert before[watched.pk] == pytest.approx(max(before.values()))

    for document in tech_docs[:4]:
        hand_out(annotator, document)
        annotate_services.annotation_submit(
            user=annotator, project=project, document_id=document.pk,
            label_ids=[project.labels.get(name="tech").pk],
        )
    Worker(name="test", runner=stub_runner).run_once()  # no round due: refreshes only
    assert Round.objects.filter(project=project).count() == 1
    after = scores_by_doc(done)
    assert after[watched.pk] < before[watched.pk] - 0.1
    open_scores = {doc: s for doc, s in after.items()
                   if Document.objects.get(pk=doc).final_labels is None}
    assert set(sorted(open_scores, key=open_scores.get, reverse=True)[:3]) == ambiguous
    prediction = Prediction.objects.get(round=done, document=watched)
    tech = project.labels.get(name="tech").pk
    assert prediction.labels == [tech] and prediction.confidence > 0.5
    assert abs(sum(prediction.probs) - 1) < 1e-3

    # The queue hands out the refreshed ranking's top document.
    LearnerSettings.objects.filter(project=project).update(random_share=0)
    selectors.queue_plan_forget(project.pk)
    handed = annotate_services.assignment_next(user=annotator, project=project)
    assert handed.pk in ambiguous


def test_refresh_leaves_documents_added_after_the_round(topic_project):
    done = run_stub_round(topic_project)
    late = add(topic_project, "software market 99")
    assert refresh_project(topic_project) == 11
    assert not Prediction.objects.filter(document=late).exists()
    assert Prediction.objects.filter(round=done, score__isnull=False).count() == 11


def test_refresh_without_a_done_round_does_nothing(topic_project):
    assert refresh_project(topic_project) == 0
    assert refresh_due() == []
    assert not Prediction.objects.exists()


def test_the_worker_refreshes_only_when_labels_changed_and_no_round_is_queued(
    topic_project, annotator, lead
):
    project = topic_project
    run_stub_round(project)
    assert refresh_due() == []  # nothing new since the round read its labels
    doc = Document.objects.filter(project=project, text__startswith="software").first()
    hand_out(annotator, doc)
    annotate_services.annotation_submit(user=annotator, project=project, document_id=doc.pk,
                                        label_ids=[project.labels.get(name="tech").pk])
    services.round_request(project=project, requested_by=lead)
    assert refresh_due() == []  # a queued round goes first
    Round.objects.filter(project=project, status="queued").update(status="cancelled")
    assert refresh_due() == [(project.pk, 10)]
    assert refresh_due() == []  # and only once per change


def test_an_adjudication_counts_as_a_label_change(topic_project, lead):
    project = topic_project
    run_stub_round(project)
    doc = Document.objects.filter(project=project, text__startswith="market shares").first()
    annotate_services.document_adjudicate(
        document=doc, user=lead, label_ids=[project.labels.get(name="tech").pk],
        reason="It is about a chip maker's shares.",
    )
    assert [pk for pk, _n in refresh_due()] == [project.pk]


def test_a_real_round_caches_embeddings_that_the_refresh_uses(labelled_project, annotator):  # noqa: F811
    project = labelled_project
    services.round_request(project=project)
    Worker(name="test").run_once()
    done = Round.objects.get(project=project)
    assert done.status == "done", done.traceback
    ids = np.load(artifact_dir(done) / EMBEDDING_IDS_FILE)
    assert len(ids) == Document.objects.filter(project=project, split="pool").count()
    before = dict(Prediction.objects.filter(round=done, score__isnull=False)
                  .values_list("document_id", "probs"))
    assert refresh_project(project) == len(before)
    after = dict(Prediction.objects.filter(round=done, score__isnull=False)
                 .values_list("document_id", "probs"))
    assert after.keys() == before.keys() and after != before


def test_refresh_handles_a_multi_label_project(topic_project, annotator):
    project = topic_project
    Project.objects.filter(pk=project.pk).update(task_type=Project.TaskType.MULTI_LABEL)
    project.refresh_from_db()
    done = run_stub_round(project)
    tech = project.labels.get(name="tech").pk
    for document in Document.objects.filter(project=project, text__startswith="software")[:4]:
        hand_out(annotator, document)
        annotate_services.annotation_submit(user=annotator, project=project,
                                            document_id=document.pk, label_ids=[tech])
    assert refresh_project(project) == 7
    watched = Document.objects.filter(project=project, text__startswith="software").last()
    prediction = Prediction.objects.get(round=done, document=watched)
    assert tech in prediction.labels and len(prediction.probs) == 3
    assert prediction.labels == sorted(prediction.labels)


def test_refresh_scores_with_every_strategy(topic_project):
    from learner.ml.strategies import STRATEGIES

    done = run_stub_round(topic_project)
    for name in STRATEGIES:
        LearnerSettings.objects.filter(project=topic_project).update(strategy=name)
        assert refresh_project(topic_project) == 11, name
        scores = Prediction.objects.filter(round=done, score__isnull=False).values_list(
            "score", flat=True)
        assert all(np.isfinite(score) for score in scores), name


def test_an_idle_worker_looks_for_new_labels_between_polls(db, monkeypatch):
    import threading

    stop = threading.Event()
    worker = Worker(name="test", refresh_poll_seconds=0.01)
    looks: list[str] = []
    monkeypatch.setattr(worker, "run_once", lambda: looks.append("poll") or False)

    def refresh() -> None:
        looks.append("refresh")
        if looks.count("refresh") >= 5:
            stop.set()

    monkeypatch.setattr(worker, "refresh_scores", refresh)
    worker.run_forever(poll_seconds=0.2, stop=stop)
    assert looks[0] == "poll" and looks.count("refresh") == 5


def test_refresh_in_small_chunks_gives_the_same_scores_as_in_one(topic_project, monkeypatch):
    from learner import refresh

    done = run_stub_round(topic_project)
    assert refresh_project(topic_project) == 11
    whole = scores_by_doc(done)
    Prediction.objects.filter(round=done, score__isnull=False).update(score=0.0, confidence=0.0)
    monkeypatch.setattr(refresh, "POOL_CHUNK", 2)  # 11 pool documents: six chunks
    assert refresh_project(topic_project) == 11
    assert scores_by_doc(done) == pytest.approx(whole)
