"""A final model: a lead asks for a hyperparameter search on a finished round, the
learner worker runs it as a round of its own, and the result is an ordinary round (holdout
metrics, artifact, predictions) with every trial recorded, shown on the round page and in
the model card. The holdout never reaches the search. The tiny BERT throughout."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from annotate.models import Document
from learner import services
from learner.export import export_jobs_run_once
from learner.finalmodel import FinalModelRefused, final_model_request
from learner.ml.artifact import data_fingerprint
from learner.models import ExportJob, Prediction, Round
from learner.worker import Worker
from tests.api.conftest import token_client
from tests.learner.dashboard_data import trainable_project


@pytest.fixture
def finished(project, tiny_model_name, settings, tmp_path):  # type: ignore[no-untyped-def]
    """The project with round 1 trained and done."""
    settings.LABELWISE_ARTIFACT_DIR = tmp_path / "artifacts"
    trainable_project(project, tiny_model_name)
    services.round_request(project=project)
    assert Worker(name="test").run_once() is True
    round = Round.objects.get(project=project, number=1)
    assert round.status == Round.Status.DONE, round.traceback
    return round


def test_a_final_model_is_an_ordinary_round_with_every_trial_recorded(
    finished, lead, client, tmp_path
):
    project = finished.project
    client.force_login(lead)
    # The dashboard offers it for the latest finished round.
    dashboard = client.get(f"/p/{project.pk}/learner/").content.decode()
    assert f'/learner/rounds/{finished.number}/final/' in dashboard
    assert "Search hyperparameters for a final model" in dashboard

    response = client.post(f"/p/{project.pk}/learner/rounds/1/final/",
                           {"trials": "2", "budget_minutes": "30", "from": "round"})
    assert response.status_code == 302
    final = Round.objects.get(project=project, number=2)
    assert final.trigger == Round.Trigger.FINAL and final.status == Round.Status.QUEUED
    assert final.config["final"]["source_round"] == 1
    assert final.config["train"] == finished.config["train"]

    phases: list[str] = []
    worker = Worker(name="test", progress_interval=0.0)
    runner = worker.runner

    def watching(round, progress):  # type: ignore[no-untyped-def]
        def recorded(phase, *args):  # type: ignore[no-untyped-def]
            phases.append(phase)
            progress(phase, *args)
        return runner(round, recorded)

    worker.runner = watching
    assert worker.run_once() is True
    final.refresh_from_db()
    assert final.status == Round.Status.DONE, final.traceback
    assert any(p.startswith("trial 1/2, fold") for p in phases)
    assert "final fit" in phases and "scoring" in phases

    # Trained on the training side only: the labelled pool, never the holdout.
    pool = list(Document.objects.filter(project=project, split=Document.Split.POOL,
                                        final_labels__isnull=False).order_by("id")
                .values_list("id", "final_labels"))
    holdout = Document.objects.filter(project=project, split=Document.Split.HOLDOUT,
                                      final_labels__isnull=False).count()
    assert holdout > 0
    search = final.fit["search"]
    assert search["n_labels"] == final.n_train == len(pool)
    names = dict(project.labels.values_list("id", "name"))
    meta = json.loads((Path(final.artifact_path) / "labelwise.json").read_text())
    assert meta["data_fingerprint"] == data_fingerprint(
        [doc_id for doc_id, _ in pool], [[names[i] for i in final_labels]
                                         for _, final_labels in pool])
    # ... and evaluated on the holdout like any round, with predictions for the queue.
    assert final.n_holdout == holdout and final.metrics["n"] == holdout
    assert 0.0 <= final.metrics["macro_f1"] <= 1.0
    assert Prediction.objects.filter(round=final).exists()
    assert len(search["trials"]) == search["trials_run"] == 2
    assert search["trials"][0]["default"]
    for trial in search["trials"]:
        assert trial["pruned"] or len(trial["fold_scores"]) == search["folds"]
    assert final.fit["rung"] == search["rung"] == "full"
    assert meta["metrics"]["search"]["best"] == search["best"]

    page = client.get(f"/p/{project.pk}/learner/rounds/2/").content.decode()
    assert 'id="search"' in page and 'id="search-space"' in page
    assert page.count('class="trial') == 2 and "picked" in page
    assert "learning_rate" in page and "max_length" in page

    # The model card lists the search space and every trial's score.
    job = ExportJob.objects.create(round=final, format="hf")
    assert export_jobs_run_once(worker="test") is True
    job.refresh_from_db()
    assert job.status == "done", job.error
    with zipfile.ZipFile(job.path) as archive:
        readme = next(archive.read(n) for n in archive.namelist()
                      if n.endswith("README.md")).decode()
        card = json.loads(next(archive.read(n) for n in archive.namelist()
                               if n.endswith("model_card.json")))
    assert "## Hyperparameter search" in readme
    assert card["search"]["space"] == search["space"]
    for trial in search["trials"]:
        shown = "pruned" if trial["mean"] is None else f"{trial['mean']:.4f}"
        assert f"| {trial['number']} |" in readme and shown in readme


def test_only_leads_may_ask_for_a_final_model(finished, annotator, viewer, stranger, client):
    project = finished.project
    url = f"/p/{project.pk}/learner/rounds/1/final/"
    for user, code in ((annotator, 403), (viewer, 403), (stranger, 404)):
        client.force_login(user)
        assert client.post(url, {"trials": "2"}).status_code == code
    api = f"/api/projects/{project.pk}/rounds/1/final/"
    assert token_client(annotator).post(api, {"trials": 2}, format="json").status_code == 403
    assert token_client(stranger).post(api, {"trials": 2}, format="json").status_code == 404
    assert not Round.objects.filter(project=project, trigger=Round.Trigger.FINAL).exists()


def test_the_final_model_form_bounds_trials_and_budget(finished, lead, client):
    project = finished.project
    client.force_login(lead)
    url = f"/p/{project.pk}/learner/rounds/1/final/"
    for asked in ({"trials": "1000"}, {"trials": "1"}, {"budget_minutes": "0"},
                  {"trials": "many"}):
        client.post(url, asked)
    assert not Round.objects.filter(project=project, trigger=Round.Trigger.FINAL).exists()
    api = token_client(lead)
    bad = api.post(f"/api/projects/{project.pk}/rounds/1/final/", {"trials": 1000},
                   format="json")
    assert bad.status_code == 400


def test_a_final_model_starts_only_from_a_round_that_trained_one(finished, lead):
    project = finished.project
    cold = Round.objects.create(project=project, number=5, status=Round.Status.DONE,
                                trigger=Round.Trigger.COLD_START,
                                config={"train": finished.config["train"]})
    failed = Round.objects.create(project=project, number=6, status=Round.Status.FAILED,
                                  config={"train": finished.config["train"]})
    for round in (cold, failed):
        with pytest.raises(FinalModelRefused):
            final_model_request(round=round, trials=2)
    api = token_client(lead)
    refused = api.post(f"/api/projects/{project.pk}/rounds/6/final/", {}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "no_model"
    queued = api.post(f"/api/projects/{project.pk}/rounds/1/final/",
                      {"trials": 3, "budget_minutes": 10}, format="json")
    assert queued.status_code == 202, queued.content
    body = queued.json()
    assert body["trigger"] == "final" and body["config"]["final"]["trials"] == 3
    assert body["config"]["final"]["budget_seconds"] == 600
    busy = api.post(f"/api/projects/{project.pk}/rounds/1/final/", {}, format="json")
    assert busy.status_code == 409 and busy.json()["code"] == "round_busy"
