"""What the API does: bulk import (all or nothing), filters, the annotator's loop, who
sees whose labels, rounds, data exports and JSON errors."""

from __future__ import annotations

import io
import json

import pytest

from annotate.models import Annotation, Document, Membership
from learner.models import Round
from tests.api.conftest import fill_labelled
from tests.conftest import hand_out


def url(project, rest: str = "") -> str:  # type: ignore[no-untyped-def]
    return f"/api/projects/{project.pk}/{rest}"


# --- bulk import ---------------------------------------------------------------------------


def test_json_import_creates_documents_with_labels_and_meta(clients, project):
    response = clients["lead"].post(url(project, "documents/"), {"documents": [
        {"text": "The striker scored twice", "label": "sport", "meta": {"source": "wire"}},
        {"text": "Chip makers rally", "external_id": "r-2"},
    ]}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["created"] == 2 and response.json()["labelled"] == 1
    scored = Document.objects.get(project=project, text="The striker scored twice")
    assert scored.final_labels == [project.labels.get(name="sport").pk]
    assert scored.meta == {"source": "wire"}
    assert Document.objects.get(project=project, external_id="r-2").final_labels is None


def test_json_import_with_one_bad_row_writes_nothing(clients, project):
    response = clients["lead"].post(url(project, "documents/"), {"documents": [
        {"text": "fine text one", "label": "sport"},
        {"text": "fine text two"},
        {"text": "bad row", "label": "cooking"},
    ]}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "import_error" and body["line"] == 3
    assert "cooking" in body["detail"]
    assert not Document.objects.filter(project=project).exists()


def test_file_import_is_all_or_nothing_and_reports_the_line(clients, project):
    good = b'{"text": "one"}\n{"text": "two", "label": "tech"}\n'
    upload = io.BytesIO(good + b'{"text": 3}\n')
    upload.name = "docs.jsonl"
    response = clients["lead"].post(url(project, "documents/"), {"file": upload},
                                    format="multipart")
    assert response.status_code == 400 and response.json()["line"] == 3
    assert not Document.objects.filter(project=project).exists()
    upload = io.BytesIO(good)
    upload.name = "docs.jsonl"
    response = clients["lead"].post(url(project, "documents/"), {"file": upload},
                                    format="multipart")
    assert response.status_code == 201 and response.json()["created"] == 2


def test_csv_upload_with_an_explicit_format(clients, project):
    upload = io.BytesIO(b"text,label\nMarkets fell,business\nA late goal,sport\n")
    upload.name = "x.txt"
    response = clients["lead"].post(url(project, "documents/"),
                                    {"file": upload, "format": "csv"}, format="multipart")
    assert response.status_code == 201 and response.json()["labelled"] == 2


def test_an_empty_document_list_is_a_validation_error(clients, project):
    response = clients["lead"].post(url(project, "documents/"), {"documents": []},
                                    format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid" and "documents" in response.json()["errors"]


# --- listing and filters -------------------------------------------------------------------


def test_document_filters_by_label_status_meta_and_round_score(clients, project):
    fill_labelled(project)
    lead = clients["lead"]
    sport = project.labels.get(name="sport")
    rows = lead.get(url(project, "documents/"), {"label": "sport", "page_size": 500}).json()
    assert rows["count"] == Document.objects.filter(final_labels=[sport.pk]).count() > 0
    assert all(r["final_labels"] == ["sport"] for r in rows["results"])
    unlabelled = lead.get(url(project, "documents/"), {"status": "unlabelled"}).json()
    assert unlabelled["count"] == 18
    meta = lead.get(url(project, "documents/"), {"meta": "source=s1"}).json()
    assert meta["count"] == 30
    numeric = lead.get(url(project, "documents/"), {"meta": "n=7"}).json()
    assert numeric["count"] == 1
    # Round scores: a filter and an ordering.
    from learner.models import Prediction

    round = Round.objects.create(project=project, number=1, status="done")
    open_docs = list(Document.objects.filter(project=project, final_labels__isnull=True))
    Prediction.objects.bulk_create(
        Prediction(round=round, document=d, labels=[sport.pk], probs=[0.2, 0.5, 0.3],
                   confidence=0.5, score=i / 100) for i, d in enumerate(open_docs)
    )
    ranked = lead.get(url(project, "documents/"),
                      {"round": 1, "ordering": "-score", "score_min": 0.1}).json()
    assert ranked["count"] == len(open_docs) - 10
    assert ranked["results"][0]["id"] == open_docs[-1].pk
    bad = lead.get(url(project, "documents/"), {"ordering": "score"})
    assert bad.status_code == 400 and "round" in bad.json()["errors"]
    assert lead.get(url(project, "documents/"), {"label": "nope"}).status_code == 400
    assert lead.get(url(project, "documents/"), {"meta": "a b=1"}).status_code == 400
    # Key names are literal: a lookup name in one is not a lookup.
    assert lead.get(url(project, "documents/"), {"meta": "contains=1"}).json()["count"] == 0


def test_lists_are_paginated(clients, project, documents):
    page = clients["lead"].get(url(project, "documents/"), {"page_size": 5}).json()
    assert page["count"] == 12 and len(page["results"]) == 5 and page["next"]


# --- the annotator's loop and who sees what ------------------------------------------------


def test_annotator_gets_next_item_submits_and_gets_the_next(clients, project, documents):
    annotator = clients["annotator"]
    first = annotator.post(url(project, "next/")).json()
    assert first["done"] is False and first["document"]["final_labels"] is None
    again = annotator.post(url(project, "next/")).json()
    assert again["document"]["id"] == first["document"]["id"]
    response = annotator.post(url(project, "submit/"), {
        "document": first["document"]["id"], "labels": ["sport"], "duration_ms": 1200,
    }, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["annotation"]["labels"] == ["sport"]
    assert body["annotation"]["guideline_version"] == 1
    assert body["next"]["id"] != first["document"]["id"]
    # Submitting the same document twice is a conflict, with nothing written.
    twice = annotator.post(url(project, "submit/"), {
        "document": first["document"]["id"], "labels": ["tech"]}, format="json")
    assert twice.status_code == 409 and twice.json()["code"] == "conflict"
    assert Annotation.objects.count() == 1


def test_submit_with_an_unknown_label_is_400_and_writes_nothing(clients, project, documents):
    annotator = clients["annotator"]
    handed = annotator.post(url(project, "next/")).json()["document"]
    response = annotator.post(url(project, "annotations/"), {
        "document": handed["id"], "labels": ["cooking"]}, format="json")
    assert response.status_code == 400 and "labels" in response.json()["errors"]
    two = annotator.post(url(project, "annotations/"), {
        "document": handed["id"], "labels": ["sport", "tech"]}, format="json")
    assert two.status_code == 400
    assert not Annotation.objects.exists()
    assert Document.objects.get(pk=handed["id"]).n_annotations == 0


def test_annotators_see_only_their_own_annotations(clients, project, documents, lead):
    from annotate import services

    for user, label in ((lead, "sport"), (project.memberships.get(role="annotator").user,
                                          "tech")):
        doc = services.assignment_next(user=user, project=project)
        services.annotation_submit(user=user, project=project, document_id=doc.pk,
                                   label_ids=[project.labels.get(name=label).pk])
    mine = clients["annotator"].get(url(project, "annotations/")).json()
    assert [a["annotator"] for a in mine["results"]] == ["annotator"]
    others = clients["annotator"].get(url(project, "annotations/"), {"annotator": "lead"})
    assert others.json()["count"] == 0
    assert clients["lead"].get(url(project, "annotations/")).json()["count"] == 2
    assert clients["viewer"].get(url(project, "annotations/"),
                                 {"annotator": "lead"}).json()["count"] == 1
    # Documents carry final labels (others' answers): closed to annotators by default.
    assert clients["annotator"].get(url(project, "documents/")).status_code == 403
    project.annotators_see_others = True
    project.save()
    assert clients["annotator"].get(url(project, "annotations/")).json()["count"] == 2
    assert clients["annotator"].get(url(project, "documents/")).status_code == 200


def test_viewers_are_read_only(clients, project):
    viewer = clients["viewer"]
    assert viewer.get(url(project, "labels/")).status_code == 200
    assert viewer.post(url(project, "labels/"), {"name": "x"}, format="json").status_code == 403
    assert viewer.post(url(project, "next/")).status_code == 403


# --- schema writes -------------------------------------------------------------------------


def test_lead_manages_labels_and_guidelines(clients, project):
    lead = clients["lead"]
    created = lead.post(url(project, "labels/"), {"name": "politics", "colour": "#112233"},
                        format="json")
    assert created.status_code == 201 and created.json()["colour"] == "#112233"
    clash = lead.post(url(project, "labels/"), {"name": "politics"}, format="json")
    assert clash.status_code == 400 and "name" in clash.json()["errors"]
    label_id = created.json()["id"]
    renamed = lead.patch(url(project, f"labels/{label_id}/"), {"name": "policy"}, format="json")
    assert renamed.json()["name"] == "policy" and renamed.json()["colour"] == "#112233"
    assert lead.delete(url(project, f"labels/{label_id}/")).status_code == 204
    v2 = lead.post(url(project, "guidelines/"), {"text": "# New", "note": "clearer"},
                   format="json")
    assert v2.status_code == 201 and v2.json()["version"] == 2
    versions = lead.get(url(project, "guidelines/")).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert lead.get(url(project, "guidelines/1/")).json()["text"].startswith("# Topics")


def test_project_create_and_update(clients, project):
    created = clients["stranger"].post("/api/projects/", {
        "name": "Mine", "labels": ["a", "b"], "task_type": "multi_label"}, format="json")
    assert created.status_code == 201 and created.json()["role"] == "lead"
    mine = clients["stranger"].get("/api/projects/").json()
    assert [p["name"] for p in mine] == ["Mine"]
    patched = clients["lead"].patch(url(project), {"overlap": 2}, format="json")
    assert patched.json()["overlap"] == 2 and patched.json()["name"] == "News topics"
    bad = clients["lead"].patch(url(project), {"overlap": 0}, format="json")
    assert bad.status_code == 400


# --- rounds --------------------------------------------------------------------------------


def test_lead_triggers_and_cancels_a_round(clients, project):
    lead = clients["lead"]
    queued = lead.post(url(project, "rounds/"))
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    busy = lead.post(url(project, "rounds/"))
    assert busy.status_code == 409 and busy.json()["code"] == "round_busy"
    listed = lead.get(url(project, "rounds/")).json()
    assert [r["number"] for r in listed["results"]] == [1]
    cancelled = lead.post(url(project, "rounds/1/cancel/"))
    assert cancelled.json()["status"] == "cancelled"
    again = lead.post(url(project, "rounds/1/cancel/"))
    assert again.status_code == 409
    assert lead.get(url(project, "rounds/7/")).status_code == 404


def test_round_detail_has_metrics(clients, project, done_round):
    detail = clients["viewer"].get(url(project, "rounds/1/")).json()
    assert detail["metrics"] == {"accuracy": 0.5} and detail["status"] == "done"


def test_predict_without_a_finished_round_is_a_conflict(clients, project):
    response = clients["lead"].post(url(project, "predict/"), {"texts": ["x"]}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "no_model"


# --- data exports and review ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_data_export_streams_the_labelled_documents(clients, project, fmt):
    fill_labelled(project, n=9, labelled=6)
    response = clients["lead"].get(url(project, f"export/{fmt}/"))
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8")
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
        assert len(rows) == 6 and {r["label"] for r in rows} <= {"business", "sport", "tech"}
    else:
        assert len(text.strip().splitlines()) == 7


def test_review_queue_lists_disagreements(clients, project, documents, lead):
    from annotate import services

    project = services.project_update(project=project, name=project.name, description="",
                                      overlap=2, annotators_see_others=False,
                                      text_direction="ltr")
    annotator = Membership.objects.get(project=project, role="annotator").user
    doc = documents[3]
    hand_out(lead, doc)
    hand_out(annotator, doc)
    services.annotation_submit(user=lead, project=project, document_id=doc.pk,
                               label_ids=[project.labels.get(name="sport").pk])
    services.annotation_submit(user=annotator, project=project, document_id=doc.pk,
                               label_ids=[project.labels.get(name="tech").pk])
    items = clients["lead"].get(url(project, "review/disagreements/")).json()
    assert [i["document"]["id"] for i in items] == [doc.pk]
    assert sorted(a["labels"][0] for a in items[0]["answers"]) == ["sport", "tech"]
    assert clients["lead"].get(url(project, "review/nope/")).status_code == 404


# --- errors --------------------------------------------------------------------------------


def test_malformed_json_is_a_json_400(clients, project):
    response = clients["lead"].post(url(project, "labels/"), data="{nope",
                                    content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "parse_error"


def test_an_unexpected_error_is_a_json_500(clients, project, done_round, monkeypatch):
    from learner import inference

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    monkeypatch.setattr(inference, "predict", broken)
    response = clients["lead"].post(url(project, "predict/"), {"texts": ["x"]}, format="json")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error.", "code": "server_error"}
