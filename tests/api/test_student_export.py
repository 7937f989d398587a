"""The distilled-student export: a done round's model is distilled on the project's pool
into a smaller student by the export worker and written as int8 ONNX; the job, the API
and the round page carry what it costs and how good it is, measured at export time. A
real round with the tiny BERT, the real distillation and onnxruntime."""

from __future__ import annotations

import json

import numpy as np

from learner.export import export_jobs_run_once
from learner.models import ExportJob
from tests.api.test_model_export import TEXTS, export_and_download, url

FIGURES = ("macro_f1", "agreement", "size_bytes", "texts_per_s", "p50_ms")


def assert_plausible(metrics: dict, n_holdout: int) -> None:  # type: ignore[type-arg]
    assert set(FIGURES) <= set(metrics), metrics
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert 0.0 <= metrics["agreement"] <= 1.0
    assert metrics["size_bytes"] > 0 and metrics["texts_per_s"] > 0 and metrics["p50_ms"] > 0
    assert metrics["batch_size"] == 64 and metrics["n_holdout"] == n_holdout


def test_student_int8_export_is_a_smaller_onnx_model_measured_at_export(
    trained_round, clients, client, lead, settings, tmp_path
):
    import onnxruntime
    from transformers import AutoTokenizer

    settings.LABELWISE_DISTILL_MAX_STEPS = 4
    project, api = trained_round.project, clients["lead"]
    folder = export_and_download(api, project, trained_round, "student-int8",
                                 tmp_path / "student")
    assert not list(folder.glob("*.safetensors"))
    session = onnxruntime.InferenceSession(str(folder / "model_quantized.onnx"),
                                           providers=["CPUExecutionProvider"])
    batch = AutoTokenizer.from_pretrained(str(folder))(TEXTS, truncation=True, padding=True,
                                                      return_tensors="np")
    probs = session.run(["probabilities"], {k: batch[k] for k in
                                            ("input_ids", "attention_mask")})[0]
    assert probs.shape == (len(TEXTS), 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)

    job = ExportJob.objects.get(format="student-int8")
    assert_plausible(job.metrics, trained_round.n_holdout)
    assert job.metrics["size_bytes"] == (folder / "model_quantized.onnx").stat().st_size
    distillation = job.metrics["distillation"]
    # The tiny BERT has two layers; the student keeps the top one.
    assert distillation["teacher_layers"] == 2 and distillation["layers"] == [1]
    assert distillation["steps"] == 4 and distillation["n_pool"] > 0
    assert distillation["n_labelled"] > 0
    card = json.loads((folder / "model_card.json").read_text())
    assert card["training_mode"] == "distilled" and card["measured"]["p50_ms"] > 0
    assert card["onnx"]["n"] == trained_round.n_holdout
    assert "Measured at export" in (folder / "README.md").read_text()
    assert api.get(url(project, f"exports/{job.pk}/")).json()["metrics"] == job.metrics

    # The round's own int8 export is measured the same way, next to it; the student is
    # the smaller file.
    queued = api.post(url(project, f"rounds/{trained_round.number}/exports/"),
                      {"format": "onnx-int8"}, format="json")
    assert queued.status_code == 202 and export_jobs_run_once(worker="test") is True
    int8 = ExportJob.objects.get(format="onnx-int8")
    assert int8.status == "done", int8.error
    assert_plausible(int8.metrics, trained_round.n_holdout)
    assert job.metrics["size_bytes"] < int8.metrics["size_bytes"]

    client.force_login(lead)
    page = client.get(f"/p/{project.pk}/learner/rounds/{trained_round.number}/").content
    page = page.decode()
    assert "Distilled student, ONNX int8" in page and "Holdout macro-F1" in page
    assert f"{job.metrics['macro_f1']:.3f}" in page
    assert f"{job.metrics['agreement']:.3f}" in page
    assert f"{job.metrics['p50_ms']:.1f} ms" in page
    assert '<option value="student-int8">' in page
