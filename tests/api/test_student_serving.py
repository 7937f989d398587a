"""The predictions endpoint serving a finished export instead of the round's model: the
distilled student, loaded by onnxruntime from the export's zip, answers as the round's
model does, and each text it answered is recorded with the export that served it."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from annotate import services as annotate_services
from learner.models import ExportJob, Round, ServedPrediction
from tests.api.test_model_export import TEXTS, export_and_download, predict, url


@pytest.fixture
def student(trained_round, clients, settings, tmp_path):  # type: ignore[no-untyped-def]
    """A finished student-int8 export of the trained round, and its unpacked folder as
    the download gives it."""
    settings.LABELWISE_DISTILL_MAX_STEPS = 4
    folder = export_and_download(clients["lead"], trained_round.project, trained_round,
                                 "student-int8", tmp_path / "student")
    return ExportJob.objects.get(format="student-int8"), folder


def onnx_probabilities(folder, texts) -> np.ndarray:  # type: ignore[no-untyped-def]
    import onnxruntime
    from transformers import AutoTokenizer

    session = onnxruntime.InferenceSession(str(folder / "model_quantized.onnx"),
                                           providers=["CPUExecutionProvider"])
    batch = AutoTokenizer.from_pretrained(str(folder))(texts, truncation=True, padding=True,
                                                      return_tensors="np")
    return session.run(["probabilities"], {k: batch[k] for k in
                                           ("input_ids", "attention_mask")})[0]


def test_a_student_export_serves_predictions_as_its_zip_does_in_onnxruntime(
    student, trained_round, clients
):
    job, folder = student
    project = trained_round.project
    body = predict(clients["viewer"], project, TEXTS, export=job.pk)
    assert body["export"] == job.pk and body["runtime"] == "student-int8"
    assert body["round"] == trained_round.number and body["task_type"] == "single_label"

    expected = onnx_probabilities(folder, TEXTS)
    served = np.array([[p["probabilities"][name] for name in body["labels"]]
                       for p in body["predictions"]])
    assert served.shape == expected.shape == (len(TEXTS), 3)
    assert np.allclose(served, expected, atol=1e-5)
    assert [p["labels"] for p in body["predictions"]] == [
        [body["labels"][i]] for i in expected.argmax(axis=1)]

    # Each text is recorded with the export that served it; the round's own model's
    # predictions are recorded without one.
    rows = list(ServedPrediction.objects.order_by("id"))
    assert [(r.round_id, r.export_id, r.label) for r in rows] == [
        (trained_round.pk, job.pk, p["labels"][0]) for p in body["predictions"]]
    own = predict(clients["viewer"], project, TEXTS[:1])
    assert own["export"] is None and own["runtime"] == "pytorch"
    assert ServedPrediction.objects.order_by("-id").first().export_id is None


def test_an_export_that_cannot_serve_is_a_clear_400(student, trained_round, clients, lead):
    job, _folder = student
    project, viewer = trained_round.project, clients["viewer"]

    def refused(export_id, **extra) -> str:  # type: ignore[no-untyped-def]
        response = viewer.post(url(project, "predict/"),
                               {"texts": TEXTS[:1], "export": export_id, **extra}, format="json")
        assert response.status_code == 400, response.content
        return str(response.json())

    assert "has no export 999999" in refused(999999)
    # Another project's export reads as missing, whatever it is.
    other = annotate_services.project_create(name="Other", created_by=lead, labels=["a", "b"])
    other_round = Round.objects.create(project=other, number=1, status=Round.Status.DONE,
                                       finished_at=timezone.now())
    theirs = ExportJob.objects.create(round=other_round, format=job.format, path=job.path,
                                      status=ExportJob.Status.DONE)
    assert f"has no export {theirs.pk}" in refused(theirs.pk)
    queued = ExportJob.objects.create(round=trained_round, format="onnx")
    assert "is queued, not done" in refused(queued.pk)
    folder = ExportJob.objects.create(round=trained_round, format="hf", path=job.path,
                                      status=ExportJob.Status.DONE)
    assert "does not serve" in refused(folder.pk)
    assert "without round and runtime" in refused(job.pk, round=trained_round.number)
    assert "without round and runtime" in refused(job.pk, runtime="onnx")
    assert not ServedPrediction.objects.exists()

    # The stranger cannot even tell the project exists.
    stranger = clients["stranger"].post(url(project, "predict/"),
                                        {"texts": TEXTS[:1], "export": job.pk}, format="json")
    assert stranger.status_code == 404
