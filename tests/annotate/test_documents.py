"""The lead's documents: one document's page and history, the list's model columns,
sorts and filters, bulk actions on a selection, and handing documents to annotators."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from annotate import selectors, services
from annotate.models import Adjudication, Annotation, Assignment, Document, Flag
from learner.models import Prediction, Round
from tests.conftest import client_for, hand_out


def lid(project, name: str) -> int:  # type: ignore[no-untyped-def]
    return project.labels.get(name=name).pk


def answer(user, project, document, name: str) -> None:  # type: ignore[no-untyped-def]
    hand_out(user, document)
    services.annotation_submit(
        user=user, project=project, document_id=document.pk, label_ids=[lid(project, name)]
    )


def predict(
    round_,
    document,
    project,
    name: str,
    confidence: float,  # type: ignore[no-untyped-def]
    score: float | None = None,
) -> Prediction:
    return Prediction.objects.create(
        round=round_,
        document=document,
        labels=[lid(project, name)],
        probs=[confidence],
        confidence=confidence,
        score=score,
    )


def ids_on_page(response) -> list[int]:  # type: ignore[no-untyped-def]
    return [int(i) for i in re.findall(r'name="document" value="(\d+)"', response.content.decode())]


@pytest.fixture
def rounds(project, documents):  # type: ignore[no-untyped-def]
    """Two finished rounds: round 1 predicted sport everywhere; round 2 (the latest) gives
    documents 0-3 falling confidence and rising score, and did not score the rest."""
    first = Round.objects.create(project=project, number=1, status=Round.Status.DONE)
    latest = Round.objects.create(project=project, number=2, status=Round.Status.DONE)
    for doc in documents[:4]:
        predict(first, doc, project, "sport", 0.5, score=0.5)
    for i, (name, confidence) in enumerate(
        [("tech", 0.95), ("business", 0.7), ("tech", 0.55), ("sport", 0.4)]
    ):
        predict(latest, documents[i], project, name, confidence, score=i / 10)
    return first, latest


# --- one document's page -------------------------------------------------------------------


def test_document_page_shows_who_labelled_what_under_which_version_and_each_round(
    client, project, lead, annotator, documents, rounds
):
    project.overlap = 2
    project.save()
    doc = documents[0]
    answer(annotator, project, doc, "sport")
    services.guideline_update(project=project, text="v2", user=lead)
    answer(lead, project, doc, "tech")
    services.document_adjudicate(
        document=doc, user=lead, label_ids=[lid(project, "tech")], reason="tech wins per rule 2"
    )
    history = selectors.document_history(project=project, document_id=doc.pk)
    assert [
        (a.author, [lb.name for lb in a.labels], a.annotation.guideline_version.version)
        for a in history.answers
    ] == [("annotator", ["sport"], 1), ("lead", ["tech"], 2)]
    assert [(p.round_number, p.labels[0].name, p.percent) for p in history.predictions] == [
        (2, "tech", 95),
        (1, "sport", 50),
    ]
    page = client_for(client, lead).get(reverse("annotate:document", args=[project.pk, doc.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    for expected in ("tech wins per rule 2", ">v1<", ">v2<", "95%", "Delete answer"):
        assert expected in text, expected


def test_viewer_reads_the_document_page_without_lead_actions(client, project, viewer, documents):
    page = client_for(client, viewer).get(
        reverse("annotate:document", args=[project.pk, documents[0].pk])
    )
    assert page.status_code == 200
    assert b"Delete answer" not in page.content and b"Save the final label" not in page.content


def test_document_of_another_project_is_404(client, project, lead, documents):
    other = services.project_create(name="Other", created_by=lead, labels=["x"])
    response = client_for(client, lead).get(
        reverse("annotate:document", args=[other.pk, documents[0].pk])
    )
    assert response.status_code == 404


def test_lead_deletes_an_answer_and_the_document_returns_to_the_queue(
    client, project, lead, annotator, documents
):
    doc = documents[0]
    answer(annotator, project, doc, "sport")
    annotation = Annotation.objects.get(document=doc)
    response = client_for(client, lead).post(
        reverse("annotate:document_answer_delete", args=[project.pk, doc.pk, annotation.pk])
    )
    assert response.status_code == 302
    doc.refresh_from_db()
    assert (doc.final_labels, doc.n_annotations, doc.slots_taken) == (None, 0, 0)
    assert not Assignment.objects.filter(document=doc).exists()


def test_deleting_an_answer_of_a_decided_document_keeps_the_decision(
    project, lead, annotator, documents
):
    doc = documents[0]
    answer(annotator, project, doc, "sport")
    services.document_adjudicate(
        document=doc, user=lead, label_ids=[lid(project, "tech")], reason="r"
    )
    services.annotation_delete(
        project=project, annotation_id=Annotation.objects.get(document=doc).pk
    )
    doc.refresh_from_db()
    assert doc.final_labels == [lid(project, "tech")] and doc.slots_taken == project.overlap


def test_lead_changes_the_final_label_from_the_document_page(client, project, lead, documents):
    doc = documents[1]
    client_for(client, lead).post(
        reverse("annotate:document_decide", args=[project.pk, doc.pk]),
        {"label": lid(project, "business"), "reason": "obvious"},
    )
    doc.refresh_from_db()
    assert doc.final_labels == [lid(project, "business")]
    assert Adjudication.objects.get(document=doc).reason == "obvious"


def test_lead_deletes_a_document(client, project, lead, documents):
    doc = documents[2]
    response = client_for(client, lead).post(
        reverse("annotate:document_delete", args=[project.pk, doc.pk])
    )
    assert response.status_code == 302
    assert not Document.objects.filter(pk=doc.pk).exists()


def test_annotator_cannot_delete_answers(client, project, annotator, documents):
    answer(annotator, project, documents[0], "sport")
    annotation = Annotation.objects.get()
    response = client_for(client, annotator).post(
        reverse(
            "annotate:document_answer_delete", args=[project.pk, documents[0].pk, annotation.pk]
        )
    )
    assert response.status_code == 403 and Annotation.objects.filter(pk=annotation.pk).exists()


# --- the list: the model's columns, sorts and filters --------------------------------------


def test_documents_sort_by_the_latest_rounds_confidence_and_score(
    client, project, lead, documents, rounds
):
    client_for(client, lead)
    url = reverse("annotate:documents", args=[project.pk])
    d = [doc.pk for doc in documents]
    lowest_first = ids_on_page(client.get(url, {"sort": "confidence"}))
    assert lowest_first[:4] == [d[3], d[2], d[1], d[0]]  # unscored documents after them
    assert ids_on_page(client.get(url, {"sort": "-confidence"}))[:4] == d[:4]
    assert ids_on_page(client.get(url, {"sort": "-score"}))[:4] == [d[3], d[2], d[1], d[0]]
    assert len(lowest_first) == len(documents)


def test_documents_filter_by_predicted_label_and_confidence(
    client, project, lead, documents, rounds
):
    client_for(client, lead)
    url = reverse("annotate:documents", args=[project.pk])
    d = [doc.pk for doc in documents]
    # The latest round, not round 1 (which said sport everywhere).
    assert ids_on_page(client.get(url, {"predicted": lid(project, "tech")})) == [d[0], d[2]]
    assert ids_on_page(client.get(url, {"min_confidence": 50, "max_confidence": 80})) == [
        d[1],
        d[2],
    ]


def test_documents_filter_and_sort_by_disagreement(client, project, lead, annotator, documents):
    project.overlap = 2
    project.save()
    split, agreed = documents[5], documents[6]
    for user, name in ((annotator, "sport"), (lead, "tech")):
        answer(user, project, split, name)
    for user in (annotator, lead):
        answer(user, project, agreed, "sport")
    client_for(client, lead)
    url = reverse("annotate:documents", args=[project.pk])
    assert ids_on_page(client.get(url, {"status": "disagreement"})) == [split.pk]
    assert ids_on_page(client.get(url, {"sort": "disagreement"}))[0] == split.pk


def test_model_filters_before_any_round_match_nothing(client, project, lead, documents):
    client_for(client, lead)
    url = reverse("annotate:documents", args=[project.pk])
    assert ids_on_page(client.get(url, {"min_confidence": 10})) == []
    assert len(ids_on_page(client.get(url, {"sort": "-score"}))) == len(documents)


# --- bulk actions --------------------------------------------------------------------------


def bulk(client, project, **data):  # type: ignore[no-untyped-def]
    return client.post(reverse("annotate:documents_bulk", args=[project.pk]), data, follow=True)


def test_bulk_label_the_ticked_documents(client, project, lead, documents):
    client_for(client, lead)
    ticked = [documents[0].pk, documents[1].pk]
    response = bulk(
        client,
        project,
        action="label",
        scope="checked",
        document=ticked,
        label=lid(project, "sport"),
        reason="all football",
    )
    assert b"2 documents labelled." in response.content
    assert set(
        Document.objects.filter(final_labels=[lid(project, "sport")]).values_list("pk", flat=True)
    ) == set(ticked)
    assert Adjudication.objects.filter(reason="all football").count() == 2


def test_bulk_actions_apply_to_every_document_the_filters_select(
    client, project, lead, documents, rounds
):
    client_for(client, lead)
    filters = f"predicted={lid(project, 'tech')}"
    response = bulk(client, project, action="holdout", scope="all", filters=filters)
    assert b"2 documents moved to the holdout." in response.content
    assert set(Document.objects.filter(split="holdout").values_list("pk", flat=True)) == {
        documents[0].pk,
        documents[2].pk,
    }


def test_bulk_send_to_review_flags_and_bulk_delete_needs_confirming(
    client, project, lead, documents
):
    client_for(client, lead)
    ticked = [documents[0].pk, documents[1].pk]
    response = bulk(
        client, project, action="review", scope="checked", document=ticked, comment="check these"
    )
    assert b"2 documents sent to review." in response.content
    assert set(selectors.review_flagged(project=project)) == set(ticked)
    assert Flag.objects.filter(comment="check these").count() == 2
    response = bulk(client, project, action="delete", scope="checked", document=ticked)
    assert b"Tick the box to confirm" in response.content
    assert Document.objects.filter(pk__in=ticked).count() == 2
    response = bulk(
        client, project, action="delete", scope="checked", document=ticked, confirm="delete"
    )
    assert b"2 documents deleted." in response.content
    assert not Document.objects.filter(pk__in=ticked).exists()


def test_bulk_actions_are_bounded_and_say_so(client, project, lead, documents, monkeypatch):
    monkeypatch.setattr(services, "BULK_LIMIT", 5)
    client_for(client, lead)
    response = bulk(client, project, action="holdout", scope="all", filters="")
    assert b"6 documents selected; at most 5 per action" in response.content
    assert not Document.objects.filter(split="holdout").exists()
    response = bulk(client, project, action="holdout", scope="checked")
    assert b"No documents selected." in response.content


def test_bulk_actions_touch_only_this_projects_documents(client, project, lead, documents):
    other = services.project_create(name="Other", created_by=lead, labels=["x"])
    [foreign] = Document.objects.bulk_create(
        [Document(project=other, text="f", text_hash="f", rand=0.1)]
    )
    client_for(client, lead)
    bulk(client, project, action="holdout", scope="checked", document=[foreign.pk])
    foreign.refresh_from_db()
    assert foreign.split == "pool"


def test_viewer_and_annotator_cannot_run_bulk_actions(
    client, project, viewer, annotator, documents
):
    for user in (viewer, annotator):
        client_for(client, user)
        response = client.post(
            reverse("annotate:documents_bulk", args=[project.pk]),
            {"action": "holdout", "scope": "all"},
        )
        assert response.status_code == 403
    assert not Document.objects.filter(split="holdout").exists()


# --- leads hand documents to annotators ----------------------------------------------------


def test_lead_hands_a_filtered_set_to_an_annotator_who_gets_them_first(
    client, project, lead, annotator, documents, rounds
):
    client_for(client, lead)
    response = bulk(
        client,
        project,
        action="assign",
        scope="all",
        annotator="annotator",
        filters=f"predicted={lid(project, 'tech')}",
    )
    assert b"2 documents handed to annotator" in response.content
    chosen = {documents[0].pk, documents[2].pk}
    got = set()
    for _ in range(2):
        document = services.assignment_next(user=annotator, project=project)
        got.add(document.pk)
        services.annotation_submit(
            user=annotator,
            project=project,
            document_id=document.pk,
            label_ids=[lid(project, "tech")],
        )
    assert got == chosen


def test_assigning_leaves_out_final_full_and_seen_documents(project, lead, annotator, documents):
    answer(lead, project, documents[0], "sport")  # final
    hand_out(annotator, documents[1])  # they hold it already
    summary = services.documents_assign(
        project=project, username="annotator", by=lead, document_ids=[d.pk for d in documents[:3]]
    )
    assert (summary.assigned, summary.final, summary.seen, summary.full) == (1, 1, 1, 0)
    assert Assignment.objects.get(document=documents[2], user=annotator).assigned_by == lead


def test_only_annotating_members_can_be_handed_documents(project, lead, documents):
    with pytest.raises(services.ValidationError, match="cannot annotate"):
        services.documents_assign(
            project=project, username="viewer", by=lead, document_ids=[documents[0].pk]
        )


def test_undo_keeps_the_documents_a_lead_handed_out(project, lead, annotator, documents):
    services.documents_assign(
        project=project,
        username="annotator",
        by=lead,
        document_ids=[documents[3].pk, documents[4].pk],
    )
    first = services.assignment_next(user=annotator, project=project)
    services.annotation_submit(
        user=annotator, project=project, document_id=first.pk, label_ids=[lid(project, "sport")]
    )
    services.annotation_undo(user=annotator, project=project)
    held = set(
        Assignment.objects.filter(user=annotator, status="active").values_list(
            "document_id", flat=True
        )
    )
    assert held == {documents[3].pk, documents[4].pk}
