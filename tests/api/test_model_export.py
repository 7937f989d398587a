"""Predictions through the API, and model exports that other programs load: the zips are
downloaded through the API, unzipped, and loaded with SetFit (one call), sentence-
transformers and onnxruntime, which must give the API's own predictions. A real round with
the tiny BERT."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from annotate import services as annotate_services
from learner import inference
from learner.export import export_jobs_run_once
from learner.ml.train import TextClassifier
from learner.models import ExportJob, Round
from tests.api.conftest import fill_labelled, train_round

TEXTS = [
    "goal goal team league cup",
    "bank profit shares economy",
    "software chip phone internet data computer",
    "a text about nothing in particular that is longer than the others, much longer",
]


def url(project, rest: str = "") -> str:  # type: ignore[no-untyped-def]
    return f"/api/projects/{project.pk}/{rest}"


def predict(client, project, texts, **extra):  # type: ignore[no-untyped-def]
    response = client.post(url(project, "predict/"), {"texts": texts, **extra}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def export_and_download(client, project, round, fmt: str, into: Path) -> Path:  # type: ignore[no-untyped-def]
    queued = client.post(url(project, f"rounds/{round.number}/exports/"), {"format": fmt},
                         format="json")
    assert queued.status_code == 202, queued.content
    job = queued.json()
    assert job["status"] == "queued" and job["download_url"] is None
    early = client.get(url(project, f"exports/{job['id']}/download/"))
    assert early.status_code == 409 and early.json()["code"] == "not_ready"
    assert export_jobs_run_once(worker="test") is True
    status = client.get(url(project, f"exports/{job['id']}/")).json()
    assert status["status"] == "done", ExportJob.objects.get(pk=job["id"]).error
    assert status["download_url"].endswith(f"/exports/{job['id']}/download/")
    response = client.get(status["download_url"])
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    archive.extractall(into)
    (folder,) = [p for p in into.iterdir() if p.is_dir()]
    return folder


def test_predictions_come_from_the_rounds_model_and_it_is_loaded_once(trained_round, clients):
    project = trained_round.project
    body = predict(clients["viewer"], project, TEXTS)
    assert body["round"] == trained_round.number and body["task_type"] == "single_label"
    model = TextClassifier.load(trained_round.artifact_path)
    expected = model.predict_proba(TEXTS)
    got = np.array([[p["probabilities"][name] for name in body["labels"]]
                    for p in body["predictions"]])
    assert np.allclose(got, expected, atol=1e-5)
    assert [p["labels"][0] for p in body["predictions"]] == [
        body["labels"][j] for j in expected.argmax(axis=1)]
    predict(clients["lead"], project, TEXTS[:1], round=trained_round.number)
    assert inference.models.loads == 1
    # A round that is not done has no model to ask.
    Round.objects.create(project=project, number=9, status=Round.Status.FAILED)
    failed = clients["lead"].post(url(project, "predict/"), {"texts": ["x"], "round": 9},
                                  format="json")
    assert failed.status_code == 409


def test_model_cache_keeps_only_a_few_models(trained_round, settings):
    cache = inference.ModelCache(size=1)
    cache.get(trained_round)
    cache.get(trained_round)
    assert cache.loads == 1
    other = Round(pk=trained_round.pk + 100, artifact_path=trained_round.artifact_path)
    cache.get(other)
    cache.get(trained_round)
    assert cache.loads == 3 and len(cache._models) == 1


def test_hf_and_onnx_exports_load_elsewhere_and_predict_as_the_api(
    trained_round, clients, tmp_path
):
    import onnxruntime
    from transformers import AutoTokenizer

    project, lead = trained_round.project, clients["lead"]
    api = predict(lead, project, TEXTS)
    api_labels = [p["labels"][0] for p in api["predictions"]]
    api_probs = np.array([[p["probabilities"][n] for n in api["labels"]]
                          for p in api["predictions"]])

    not_yet = lead.post(url(project, "predict/"), {"texts": TEXTS, "runtime": "onnx"},
                        format="json")
    assert not_yet.status_code == 409 and "no finished onnx export" in not_yet.json()["detail"]

    folder = export_and_download(lead, project, trained_round, "hf", tmp_path / "hf")
    assert (folder / "model.safetensors").exists()
    assert not list(folder.glob("*.npy")), "pool embeddings are no part of the model"
    # One documented call loads the whole model, and it predicts as the API does.
    from setfit import SetFitModel

    model = SetFitModel.from_pretrained(str(folder))
    setfit_probs = np.asarray(model.predict_proba(TEXTS, as_numpy=True))
    assert np.allclose(setfit_probs, api_probs, atol=1e-4)
    assert list(model.predict(TEXTS)) == api_labels
    # The folder is a sentence-transformers model: the vectors the head reads.
    from sentence_transformers import SentenceTransformer

    vectors = SentenceTransformer(str(folder), device="cpu").encode(TEXTS)
    reference = TextClassifier.load(trained_round.artifact_path).embed(TEXTS)
    assert np.allclose(vectors, reference, atol=1e-5)
    card = json.loads((folder / "model_card.json").read_text())
    assert card["data_fingerprint"] == trained_round.data_fingerprint
    assert card["label_counts_are_the_rounds"] is True
    assert sum(card["label_counts"].values()) == trained_round.n_train
    assert card["guideline_version"] == 1
    assert card["training_mode"] == trained_round.fit["rung"]
    assert card["ladder"]["pick"] == trained_round.fit["rung"]
    assert card["calibration"]["temperature"] > 0
    assert card["pooling"]["modes"] == ["mean"]
    assert card["hyperparameters"]["epochs"] == 2
    assert card["holdout_metrics"]["accuracy"] == trained_round.metrics["accuracy"]
    readme = (folder / "README.md").read_text()
    assert "library_name: setfit" in readme and "## Limitations" in readme
    assert "SetFitModel.from_pretrained" in readme

    onnx_folder = export_and_download(lead, project, trained_round, "onnx", tmp_path / "onnx")
    assert not list(onnx_folder.glob("*.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(str(onnx_folder))
    session = onnxruntime.InferenceSession(str(onnx_folder / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    batch = tokenizer(TEXTS, truncation=True, padding=True, return_tensors="np")
    onnx_probs = session.run(["probabilities"], {k: batch[k] for k in
                                                 ("input_ids", "attention_mask")})[0]
    assert [api["labels"][j] for j in onnx_probs.argmax(axis=1)] == api_labels
    assert np.allclose(onnx_probs, api_probs, atol=1e-4)
    onnx_card = json.loads((onnx_folder / "model_card.json").read_text())
    figures = onnx_card["onnx"]
    assert figures["n"] == trained_round.n_holdout
    assert figures["accuracy_change"] == pytest.approx(0.0, abs=1e-9)
    assert figures["file_size_bytes"] == (onnx_folder / "model.onnx").stat().st_size

    int8 = export_and_download(lead, project, trained_round, "onnx-int8", tmp_path / "int8")
    quantized = int8 / "model_quantized.onnx"
    assert quantized.stat().st_size < (onnx_folder / "model.onnx").stat().st_size
    int8_figures = json.loads((int8 / "model_card.json").read_text())["onnx"]
    assert {"accuracy_pytorch", "accuracy_export", "accuracy_change",
            "file_size_bytes"} <= set(int8_figures)
    assert "accuracy_change" in (int8 / "README.md").read_text()
    # The API serves the exports too, from the same files.
    via_onnx = predict(lead, project, TEXTS, runtime="onnx")
    assert [p["labels"][0] for p in via_onnx["predictions"]] == api_labels
    assert via_onnx["runtime"] == "onnx"
    via_int8 = predict(lead, project, TEXTS, runtime="onnx-int8")
    int8_probs = np.array([[p["probabilities"][n] for n in api["labels"]]
                           for p in via_int8["predictions"]])
    assert np.allclose(int8_probs.sum(axis=1), 1.0, atol=1e-4)
    # The same export asked again is the same job, not a second build.
    again = lead.post(url(project, f"rounds/{trained_round.number}/exports/"),
                      {"format": "hf"}, format="json").json()
    assert again["status"] == "done" and ExportJob.objects.filter(format="hf").count() == 1


def test_multi_label_export_matches_with_the_card_thresholds(
    lead, annotator, clients, tiny_model_name, settings, tmp_path
):
    from setfit import SetFitModel

    settings.LABELWISE_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.DATA_DIR = tmp_path
    project = annotate_services.project_create(
        name="Tags", created_by=lead, task_type="multi_label",
        labels=["business", "sport", "tech"],
    )
    fill_labelled(project, multi=True)
    round = train_round(project, tiny_model_name)
    api = predict(clients["lead"], project, TEXTS)
    assert api["task_type"] == "multi_label"
    folder = export_and_download(clients["lead"], project, round, "hf", tmp_path / "hf")
    card = json.loads((folder / "model_card.json").read_text())
    assert card["task"] == "multi_label_classification" and len(card["thresholds"]) == 3
    probs = np.asarray(SetFitModel.from_pretrained(str(folder)).predict_proba(
        TEXTS, as_numpy=True))
    api_probs = np.array([[p["probabilities"][n] for n in api["labels"]]
                          for p in api["predictions"]])
    assert np.allclose(probs, api_probs, atol=1e-4)
    cut = np.asarray(card["thresholds"])
    chosen = [sorted(card["labels"][j] for j in np.flatnonzero(row >= cut)) for row in probs]
    assert chosen == [sorted(p["labels"]) for p in api["predictions"]]


def test_only_done_rounds_export_and_formats_are_checked(clients, project, done_round):
    lead = clients["lead"]
    unknown = lead.post(url(project, "rounds/1/exports/"), {"format": "pickle"},
                        format="json")
    assert unknown.status_code == 400 and "format" in unknown.json()["errors"]
    no_model = lead.post(url(project, "rounds/1/exports/"), {"format": "hf"}, format="json")
    assert no_model.status_code == 400 and "no saved model" in no_model.json()["detail"]
    Round.objects.create(project=project, number=2, status=Round.Status.QUEUED)
    queued = lead.post(url(project, "rounds/2/exports/"), {"format": "hf"}, format="json")
    assert queued.status_code == 409
    assert not ExportJob.objects.exists()
    assert export_jobs_run_once(worker="test") is False


def test_a_failed_export_records_its_error(clients, trained_round):
    project = trained_round.project
    job = clients["lead"].post(url(project, f"rounds/{trained_round.number}/exports/"),
                               {"format": "hf"}, format="json").json()
    Round.objects.filter(pk=trained_round.pk).update(artifact_path="/nonexistent")
    export_jobs_run_once(worker="test")
    status = clients["lead"].get(url(project, f"exports/{job['id']}/")).json()
    assert status["status"] == "failed" and "no saved model" in status["error"]


def test_rounds_and_exports_take_turns_so_a_busy_project_never_starves_its_exports(
    clients, trained_round
):
    """The demo's pace: a round is queued every few dozen labels. An export asked for
    meanwhile runs right after the current round, before the next one."""
    from learner import services
    from learner.worker import Worker

    project = trained_round.project
    job = clients["lead"].post(url(project, f"rounds/{trained_round.number}/exports/"),
                               {"format": "hf"}, format="json").json()

    def quick_round(round, progress):  # type: ignore[no-untyped-def]
        # The scheduling is under test here, not training: a round that trains nothing.
        return {"n_train": 0}

    worker = Worker(name="test", runner=quick_round, refresh=False)
    services.round_request(project=project)
    assert worker.run_once() is True  # the round queued first goes first
    services.round_request(project=project)  # ... and the next is queued straight away
    assert worker.run_once() is True
    assert ExportJob.objects.get(pk=job["id"]).status == "done"
    assert Round.objects.filter(project=project, status="queued").count() == 1
    assert worker.run_once() is True  # then the queued round
    assert not Round.objects.filter(project=project, status="queued").exists()
