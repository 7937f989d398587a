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
    # The page rounds as Django's floatformat does (half up), not as Python's format.
    from django.template.defaultfilters import floatformat
    assert f"{floatformat(job.metrics['p50_ms'], 1)} ms" in page
    assert '<option value="student-int8">' in page


def test_a_student_export_reports_each_phase_with_steps_and_a_falling_eta(
    trained_round, settings, tmp_path
):
    from learner.export import export_build

    settings.LABELWISE_DISTILL_MAX_STEPS = 4
    seen: list[tuple[str, int, int, float | None]] = []
    export_build(trained_round, "student-int8", tmp_path / "round-1-student-int8.zip",
                 progress=lambda *report: seen.append(report))
    phases = list(dict.fromkeys(phase for phase, *_ in seen))
    epochs = [p for p in phases if p.startswith("distilling epoch")]
    assert phases == ["distilling: the teacher's labels", *epochs, "distilling: calibrating",
                      "exporting", "quantizing", "measuring"], phases
    assert epochs and epochs[-1].endswith(f"{len(epochs)}/{len(epochs)}")
    train = [(step, total) for phase, step, total, _ in seen if phase in epochs]
    assert [step for step, _ in train] == list(range(1, 5))
    assert {total for _, total in train} == {4}
    measuring = [(step, total) for phase, step, total, _ in seen if phase == "measuring"]
    assert measuring[0][0] == 0 and measuring[-1][0] == measuring[-1][1] > 0
    assert [step for step, _ in measuring] == sorted(step for step, _ in measuring)
    # Once the teacher's pass has been timed there is an estimate, and it falls as the
    # distillation and the measuring advance.
    etas = [eta for phase, _, _, eta in seen if phase in epochs or phase == "measuring"]
    assert all(eta is not None and eta >= 0 for eta in etas)
    assert etas[-1] < etas[0] and etas[-1] == 0


def test_an_export_job_shows_its_progress_and_stops_polling_when_done(
    trained_round, clients, client, lead, settings
):
    from learner.export import export_jobs_run_once

    settings.LABELWISE_DISTILL_MAX_STEPS = 4
    project, api = trained_round.project, clients["lead"]
    client.force_login(lead)
    page_url = f"/p/{project.pk}/learner/rounds/{trained_round.number}/"
    poll_url = f"{page_url}exports/"
    queued = api.post(url(project, f"rounds/{trained_round.number}/exports/"),
                      {"format": "student-int8"}, format="json").json()
    assert queued["phase"] == "" and queued["eta_seconds"] is None

    # While a job is queued or running, the panel polls itself.
    page = client.get(page_url).content.decode()
    assert f'hx-get="{poll_url}"' in page and 'hx-trigger="every 2s"' in page
    job = ExportJob.objects.get(pk=queued["id"])
    ExportJob.objects.filter(pk=job.pk).update(
        status="running", phase="distilling epoch 1/2", step=3, total_steps=8,
        eta_seconds=75)
    panel = client.get(poll_url, HTTP_HX_REQUEST="true")
    assert panel.status_code == 200
    text = panel.content.decode()
    assert "distilling epoch 1/2" in text and "step 3 of 8" in text
    assert "1 min 15 s left" in text and "<html" not in text
    body = api.get(url(project, f"exports/{job.pk}/")).json()
    assert (body["phase"], body["step"], body["total_steps"], body["percent"],
            body["eta_seconds"]) == ("distilling epoch 1/2", 3, 8, 37.5, 75)

    # The worker runs it for real: every phase is recorded with its seconds, and the row
    # ends at "done".
    ExportJob.objects.filter(pk=job.pk).update(status="queued", phase="", step=0,
                                               total_steps=0, eta_seconds=None)
    assert export_jobs_run_once(worker="test") is True
    job.refresh_from_db()
    assert job.status == "done", job.error
    assert job.phase == "done" and job.step == job.total_steps > 0 and job.eta_seconds is None
    names = [p["phase"] for p in job.phases]
    assert names[0] == "distilling: the teacher's labels"
    assert any(name.startswith("distilling epoch") for name in names)
    assert names[-3:] == ["exporting", "quantizing", "measuring"]
    assert all(p["seconds"] >= 0 for p in job.phases)
    body = api.get(url(project, f"exports/{job.pk}/")).json()
    assert body["phase"] == "done" and body["phases"] == job.phases

    # Done: the poll is answered 286 (htmx stops) with the finished row; the page no
    # longer polls.
    panel = client.get(poll_url, HTTP_HX_REQUEST="true")
    assert panel.status_code == 286 and "Download zip" in panel.content.decode()
    page = client.get(page_url).content.decode()
    assert f'hx-get="{poll_url}"' not in page
    assert "measuring" in page  # the phases it took, with their seconds


def test_the_export_panel_is_the_round_watchers_only(done_round, client, stranger, annotator,
                                                     viewer):
    project = done_round.project
    poll_url = f"/p/{project.pk}/learner/rounds/{done_round.number}/exports/"
    client.force_login(stranger)
    assert client.get(poll_url).status_code == 404
    client.force_login(annotator)
    assert client.get(poll_url).status_code == 403
    client.force_login(viewer)
    assert client.get(poll_url).status_code == 286


def test_a_student_export_may_be_named_student(trained_round, settings, tmp_path):
    """The zip's stem names the folder inside it; a stem of "student" once collided with
    the folder the student was distilled into."""
    import zipfile

    from learner.export import export_build

    settings.LABELWISE_DISTILL_MAX_STEPS = 2
    export_build(trained_round, "student-int8", tmp_path / "student.zip")
    with zipfile.ZipFile(tmp_path / "student.zip") as archive:
        names = archive.namelist()
    assert "student/model_quantized.onnx" in names
    assert not any(name.startswith("student/student/") for name in names)
    assert not list(tmp_path.glob("export-*"))  # the working folder is gone
