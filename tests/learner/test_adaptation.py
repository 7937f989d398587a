"""Domain adaptation of the encoder as a project job, warm starts from the previous round,
and what the round page shows of the ladder and calibration. The tiny BERT throughout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learner import services
from learner.adaptation import adaptation_request, adapted_encoder
from learner.ml.config import TrainConfig
from learner.ml.pooling import Pooling
from learner.ml.train import plan_epochs
from learner.models import LearnerSettings, Prediction, Round
from learner.worker import Worker
from tests.learner.dashboard_data import label_more, trainable_project


@pytest.fixture
def trainable(project, tiny_model_name, settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.LABELWISE_ARTIFACT_DIR = tmp_path / "artifacts"
    return trainable_project(project, tiny_model_name)


def test_an_adaptation_job_trains_the_encoder_on_the_pool_and_rounds_can_use_it(
    trainable, lead, client
):
    project = trainable
    job = adaptation_request(project=project, steps=12, requested_by=lead)
    assert job.trigger == Round.Trigger.ADAPT and job.config["adapt"]["max_steps"] == 12
    with pytest.raises(services.RoundBusy):  # one job at a time per project
        services.round_request(project=project)
    assert Worker(name="test").run_once() is True
    job.refresh_from_db()
    assert job.status == "done", job.traceback
    report = job.fit["adapt"]
    assert report["steps"] == 12 and report["texts"] > 0
    assert report["mlm_loss_before"] > 0 and report["mlm_loss_after"] > 0
    folder = Path(job.artifact_path)
    assert (folder / "model.safetensors").exists()
    assert Pooling.of_checkpoint(folder).modes == ("mean",)
    # An adaptation is no model: no predictions, no point on the learning curve, and the
    # queue still follows the random order.
    assert not Prediction.objects.filter(round=job).exists() and job.metrics is None

    settings = LearnerSettings.objects.get(project=project)
    assert adapted_encoder(project, settings) is None  # not used until the lead says so
    settings.use_adapted_encoder = True
    settings.save()
    assert adapted_encoder(project, settings) == str(folder)
    round = services.round_request(project=project)
    assert round.config["train"]["model_name_or_path"] == str(folder)
    Worker(name="test").run_once()
    round.refresh_from_db()
    assert round.status == "done", round.traceback
    assert round.trigger != Round.Trigger.ADAPT and round.metrics is not None

    client.force_login(lead)
    page = client.get(f"/p/{project.pk}/learner/").content.decode()
    assert 'id="adaptation"' in page and "start from it" in page


def test_an_adaptation_of_another_base_model_is_not_used(trainable, lead):
    project = trainable
    adaptation_request(project=project, steps=5)
    Worker(name="test").run_once()
    settings = LearnerSettings.objects.get(project=project)
    settings.use_adapted_encoder = True
    settings.model_name = "/some/other/model"
    settings.save()
    assert adapted_encoder(project, settings) is None


def test_the_adapt_button_bounds_the_steps_one_request_may_ask_for(trainable, lead, client):
    client.force_login(lead)
    url = f"/p/{trainable.pk}/learner/adapt/"
    assert client.post(url, {"steps": "100000"}).status_code == 302
    assert not Round.objects.filter(project=trainable).exists()
    assert client.post(url, {"steps": "abc"}).status_code == 302
    assert not Round.objects.filter(project=trainable).exists()
    client.post(url, {"steps": "40"})
    assert Round.objects.get(project=trainable).config["adapt"]["max_steps"] == 40


def test_a_warm_started_round_starts_from_the_previous_rounds_encoder(trainable, lead):
    project = trainable
    LearnerSettings.objects.filter(project=project).update(
        mode="full", warm_start=True, epochs=None)
    services.round_request(project=project)
    Worker(name="test").run_once()
    first = Round.objects.get(project=project, number=1)
    assert first.status == "done", first.traceback
    assert first.fit["ladder"]["candidates"]["full"]["warm"] is False
    label_more(project, 10)
    services.round_request(project=project)
    Worker(name="test").run_once()
    second = Round.objects.get(project=project, number=2)
    assert second.status == "done", second.traceback
    assert second.fit["ladder"]["candidates"]["full"]["warm"] is True
    meta = json.loads((Path(second.artifact_path) / "labelwise.json").read_text())
    config = TrainConfig.from_dict(meta["config"])
    steps = max(h.get("steps", 0) for h in meta["metrics"]["history"])
    # The warm plan: a fraction of a cold start's steps for the same labels.
    assert steps == plan_epochs(second.n_train, config, warm=True)[2]
    assert steps < plan_epochs(second.n_train, config)[2]


def test_the_round_page_shows_every_rung_the_ladder_fitted_and_the_calibration(
    trainable, lead, client
):
    project = trainable
    LearnerSettings.objects.filter(project=project).update(mode="auto")
    services.round_request(project=project)
    Worker(name="test").run_once()
    done = Round.objects.get(project=project)
    assert done.status == "done", done.traceback
    calibration = done.fit["calibration"]
    assert {"temperature", "holdout_ece_before", "holdout_ece_after"} <= set(calibration)
    assert calibration["holdout_ece_after"] == pytest.approx(
        done.metrics["expected_calibration_error"], abs=1e-4)
    client.force_login(lead)
    page = client.get(f"/p/{project.pk}/learner/rounds/1/").content.decode()
    assert 'id="ladder"' in page and "Linear head (frozen encoder)" in page
    assert "kept" in page and "temperature" in page
    assert "Calibration error on the holdout" in page
    assert "Model ladder" in page and "labelwise.json" not in page
    # The frozen-embedding baseline on the same labels is recorded and drawn beside the
    # round's own point on the learning curve.
    assert 0.0 <= done.fit["baseline"]["macro_f1"] <= 1.0
    dashboard = client.get(f"/p/{project.pk}/learner/").content.decode()
    assert 'data-series="baseline"' in dashboard and 'stroke-dasharray' in dashboard
