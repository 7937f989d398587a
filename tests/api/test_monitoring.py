"""Monitoring through the predictions endpoint: what each call records, and the drift flag
that texts unlike the holdout raise (a real round of the tiny BERT, real requests, the
worker's own check)."""

from __future__ import annotations

import random

import pytest

from annotate.models import Document
from learner.models import DriftAlert, LearnerSettings, Round, ServedPrediction
from learner.worker import Worker
from tests.api.conftest import WORDS, train_round

# Words the project never saw: texts from another domain altogether.
ELSEWHERE = ["flour", "oven", "sugar", "butter", "recipe", "bake", "garlic", "simmer",
             "onion", "pepper", "whisk", "dough"]


def url(project, tail: str) -> str:  # type: ignore[no-untyped-def]
    return f"/api/projects/{project.pk}/{tail}"


def topic_texts(seed: int, n: int) -> list[str]:
    """Texts like the project's: words of one topic each, topics in turn."""
    rng = random.Random(seed)
    names = list(WORDS)
    return [f"{seed}-{i} " + " ".join(rng.choice(WORDS[names[i % 3]])
                                      for _ in range(rng.randint(3, 12))) for i in range(n)]


def other_texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(ELSEWHERE) for _ in range(rng.randint(3, 12)))
            for _ in range(n)]


@pytest.fixture
def monitored_round(project, tiny_model_name, settings, tmp_path):  # type: ignore[no-untyped-def]
    """A round trained and evaluated on topic texts, with a holdout of 60."""
    from annotate import services

    settings.LABELWISE_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.DATA_DIR = tmp_path
    ids = {label.name: label.pk for label in project.labels.all()}
    rng = random.Random(5)
    texts = topic_texts(0, 150)
    Document.objects.bulk_create(
        Document(project=project, text=t, text_hash=f"h{i}", rand=rng.random(),
                 final_labels=[ids[list(WORDS)[i % 3]]], n_annotations=1, slots_taken=1)
        for i, t in enumerate(texts))
    services.holdout_reserve(project=project, fraction=0.4)
    return train_round(project, tiny_model_name)


def post(client, project, texts):  # type: ignore[no-untyped-def]
    response = client.post(url(project, "predict/"), {"texts": texts}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def check(project) -> list[DriftAlert]:  # type: ignore[no-untyped-def]
    Worker(name="test", drift_check_seconds=0).check_drift()
    return list(DriftAlert.objects.filter(project=project))


def test_each_prediction_is_recorded_without_its_text_unless_asked(monitored_round, clients):
    project = monitored_round.project
    body = post(clients["viewer"], project, ["market shares", "goal"])
    rows = list(ServedPrediction.objects.order_by("id"))
    assert [(r.round_id, r.label, r.text) for r in rows] == [
        (monitored_round.pk, p["labels"][0], "") for p in body["predictions"]]
    assert [round(r.confidence, 5) for r in rows] == [
        round(max(p["probabilities"].values()), 5) for p in body["predictions"]]

    LearnerSettings.objects.filter(project=project).update(record_texts=True)
    post(clients["viewer"], project, ["market shares"])
    assert ServedPrediction.objects.order_by("-id").first().text == "market shares"
    LearnerSettings.objects.filter(project=project).update(record_predictions=False)
    post(clients["viewer"], project, ["goal"])
    assert ServedPrediction.objects.count() == 3


def test_texts_from_another_domain_raise_the_drift_flag_and_topic_texts_do_not(
    monitored_round, clients, client, lead
):
    project = monitored_round.project
    assert monitored_round.holdout_profile["n"] == monitored_round.n_holdout == 60
    for seed in (1, 2):
        post(clients["lead"], project, topic_texts(seed, 100))
    assert check(project) == []

    for seed in (3, 4, 5, 6):
        post(clients["lead"], project, other_texts(seed, 100))
    (alert,) = check(project)
    assert alert.round == monitored_round and alert.cleared_at is None
    assert alert.drift["drifted"] and alert.drift["score"] >= 0.25
    assert alert.queued_documents == 0 and alert.queued_round is None  # not asked for

    client.force_login(lead)
    page = client.get(f"/p/{project.pk}/learner/").content.decode()
    assert 'id="drift-alert"' in page and 'id="monitoring"' in page
    # Cleared, the project is no longer marked, and the same day does not raise it again.
    response = client.post(f"/p/{project.pk}/learner/drift/{alert.pk}/clear/")
    assert response.status_code == 302
    assert check(project) == [alert]
    page = client.get(f"/p/{project.pk}/learner/").content.decode()
    assert 'id="drift-alert"' not in page


def test_on_drift_the_least_confident_texts_join_the_pool_and_a_round_is_queued(
    monitored_round, clients
):
    project = monitored_round.project
    LearnerSettings.objects.filter(project=project).update(
        record_texts=True, drift_queue=True, drift_queue_size=10)
    post(clients["lead"], project, topic_texts(1, 50))
    texts = other_texts(3, 250)
    post(clients["lead"], project, texts)
    pool_before = Document.objects.filter(project=project).count()

    (alert,) = check(project)
    added = Document.objects.filter(project=project, meta__source="production")
    assert alert.queued_documents == added.count() == 10
    assert Document.objects.filter(project=project).count() == pool_before + 10
    assert set(added.values_list("split", flat=True)) == {Document.Split.POOL}
    assert added.filter(final_labels__isnull=True).count() == 10
    # The least confident of the day's recorded texts, and only those.
    served = sorted(ServedPrediction.objects.exclude(text="").values_list("confidence", "text"))
    assert set(added.values_list("text", flat=True)) <= {t for _, t in served}
    assert max(d.meta["confidence"] for d in added) <= sorted(c for c, _ in served)[15]
    assert alert.queued_round.trigger == Round.Trigger.DRIFT
    assert alert.queued_round.status == Round.Status.QUEUED


def predict_queries(client, project, texts) -> list[str]:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        post(client, project, texts)
    return [query["sql"] for query in captured.captured_queries]


def test_recording_adds_one_statement_to_a_predictions_call_and_no_settings_read(
    monitored_round, clients
):
    """What recording costs a request in queries, on this database: the settings come
    with the round's own read, and the rows go in one statement however many texts."""
    project, client = monitored_round.project, clients["viewer"]
    texts = topic_texts(7, 20)
    post(client, project, texts)  # the model into the cache; the token's first use
    settings = LearnerSettings.objects.filter(project=project)

    settings.update(record_predictions=False)
    off = predict_queries(client, project, texts)
    settings.update(record_predictions=True)
    on = predict_queries(client, project, texts)

    def touching(queries: list[str], table: str) -> list[str]:
        return [sql for sql in queries if table in sql]

    assert len(on) - len(off) == 1, on
    assert len(touching(on, "learner_servedprediction")) == 1
    assert touching(on + off, 'FROM "learner_learnersettings"') == []
    assert ServedPrediction.objects.filter(round=monitored_round).count() == 2 * len(texts)

    # Texts recorded or not, the count is the same; a project with no settings row records
    # its predictions (the default) without reading for one.
    settings.update(record_texts=True)
    assert len(predict_queries(client, project, texts)) == len(on)
    settings.delete()
    assert len(predict_queries(client, project, texts)) == len(on)
    assert ServedPrediction.objects.filter(round=monitored_round).count() == 4 * len(texts)
    assert ServedPrediction.objects.exclude(text="").count() == len(texts)


@pytest.mark.django_db(transaction=True)
def test_recording_outside_a_transaction_is_one_statement_too(monitored_round, clients):
    """Outside the test's transaction, as in production: on PostgreSQL the statement
    carries its own synchronous_commit setting and still counts once."""
    from django.db import connection

    project, client = monitored_round.project, clients["viewer"]
    post(client, project, ["market shares"])
    settings = LearnerSettings.objects.filter(project=project)
    settings.update(record_predictions=False)
    off = predict_queries(client, project, ["goal", "chip"])
    settings.update(record_predictions=True)
    on = predict_queries(client, project, ["goal", "chip"])
    assert len(on) - len(off) == 1
    (insert,) = [sql for sql in on if "learner_servedprediction" in sql]
    assert ("synchronous_commit" in insert) == (connection.vendor == "postgresql")
    assert list(ServedPrediction.objects.order_by("-id").values_list("label", flat=True)[:2])
