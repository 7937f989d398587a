"""The review pages (disagreements, likely label errors, uncertain labels, flags) and
adjudication, driven as a browser without JavaScript would, plus the HTMX swap."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate import selectors, services
from annotate.models import Adjudication, Document, Flag, Membership, Project, text_hash
from learner.models import Prediction, Round
from tests.conftest import hand_out, make_user
from tests.learner.conftest import tiny_model_dir, tiny_model_name  # noqa: F401 - shared
from tests.learner.test_pipeline import labelled_project  # noqa: F401 - shared fixture

HTMX = {"HX-Request": "true"}
KINDS = ["disagreements", "label-errors", "uncertain", "flags"]


@pytest.fixture
def reviewer(project, django_user_model):  # type: ignore[no-untyped-def]
    user = make_user(django_user_model, "reviewer")
    services.membership_set(project=project, username="reviewer", role=Membership.Role.REVIEWER)
    return user


@pytest.fixture
def second(project, django_user_model):  # type: ignore[no-untyped-def]
    user = make_user(django_user_model, "second")
    services.membership_set(project=project, username="second", role=Membership.Role.ANNOTATOR)
    return user


def lid(project: Project, name: str) -> int:
    return project.labels.get(name=name).pk


def doc(project: Project, text: str, final: list[int] | None = None, **fields: object) -> Document:
    return Document.objects.create(
        project=project, text=text, text_hash=text_hash(text), rand=0.5, final_labels=final,
        n_annotations=int(final is not None), slots_taken=int(final is not None), **fields,
    )


def answer(user, project: Project, document: Document, name: str) -> None:  # type: ignore[no-untyped-def]
    hand_out(user, document)
    services.annotation_submit(user=user, project=project, document_id=document.pk,
                               label_ids=[lid(project, name)])


def review_url(project: Project, kind: str | None = None) -> str:
    if kind is None:
        return reverse("annotate:review", kwargs={"pk": project.pk})
    return reverse("annotate:review_kind", kwargs={"pk": project.pk, "kind": kind})


def decide_url(project: Project, document: Document) -> str:
    return reverse("annotate:review_adjudicate",
                   kwargs={"pk": project.pk, "document_id": document.pk})


def listed(response) -> list[int]:  # type: ignore[no-untyped-def]
    return [item.document.pk for item in response.context["items"]]


@pytest.fixture
def overlap_project(project):  # type: ignore[no-untyped-def]
    Project.objects.filter(pk=project.pk).update(overlap=2)
    project.refresh_from_db()
    return project


def done_round(project: Project) -> Round:
    return Round.objects.create(project=project, number=1, status=Round.Status.DONE)


def predict(round: Round, document: Document, name: str, confidence: float,
            score: float | None = None) -> Prediction:
    project = round.project
    return Prediction.objects.create(
        round=round, document=document, labels=[lid(project, name)], probs=[confidence],
        confidence=confidence, score=score,
    )


# --- who may review ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [None, *KINDS])
def test_leads_and_reviewers_see_every_review_page(client, project, lead, reviewer, kind):
    for user in (lead, reviewer):
        client.force_login(user)
        assert client.get(review_url(project, kind)).status_code == 200


@pytest.mark.parametrize("kind", [None, *KINDS])
def test_annotators_get_403_and_strangers_404_on_review_pages(
    client, project, annotator, viewer, stranger, kind
):
    for user, status in ((annotator, 403), (viewer, 403), (stranger, 404)):
        client.force_login(user)
        assert client.get(review_url(project, kind)).status_code == status


def test_an_unknown_review_queue_is_404(client, project, lead):
    client.force_login(lead)
    assert client.get(review_url(project, "nonsense")).status_code == 404


def test_annotator_and_stranger_cannot_adjudicate(client, project, annotator, stranger):
    document = doc(project, "A text")
    for user, status in ((annotator, 403), (stranger, 404)):
        client.force_login(user)
        response = client.post(decide_url(project, document),
                               {"label": lid(project, "sport"), "reason": "mine"})
        assert response.status_code == status
    document.refresh_from_db()
    assert document.final_labels is None and not Adjudication.objects.exists()


def test_a_lead_cannot_adjudicate_another_projects_document(client, project, django_user_model):
    other_lead = make_user(django_user_model, "other")
    other = services.project_create(name="Other", created_by=other_lead, labels=["a", "b"])
    document = doc(project, "Not yours")
    client.force_login(other_lead)
    url = reverse("annotate:review_adjudicate",
                  kwargs={"pk": other.pk, "document_id": document.pk})
    assert client.post(url, {"label": other.labels.first().pk, "reason": "x"}).status_code == 404


# --- the queues ----------------------------------------------------------------------------


def test_disagreements_list_split_answers_ties_first(
    client, overlap_project, lead, annotator, second
):
    project = overlap_project
    agreed, tie, three_way = doc(project, "agreed"), doc(project, "tie"), doc(project, "3-way")
    answer(annotator, project, agreed, "sport")
    answer(second, project, agreed, "sport")
    answer(annotator, project, tie, "sport")
    answer(second, project, tie, "tech")
    # A later, settled disagreement (2 of 3 agree) is listed after the open tie.
    Project.objects.filter(pk=project.pk).update(overlap=3)
    project.refresh_from_db()
    answer(annotator, project, three_way, "tech")
    answer(second, project, three_way, "tech")
    answer(lead, project, three_way, "business")
    three_way.refresh_from_db()
    assert three_way.final_labels == [lid(project, "tech")]

    client.force_login(lead)
    response = client.get(review_url(project, "disagreements"))
    assert listed(response) == [tie.pk, three_way.pk]
    page = response.content.decode()
    assert "annotator" in page and "second" in page and "none yet" in page


def test_adjudicating_a_tie_sets_the_final_label_and_keeps_the_history(
    client, overlap_project, lead, annotator, second
):
    project = overlap_project
    tie = doc(project, "tie")
    answer(annotator, project, tie, "sport")
    answer(second, project, tie, "tech")
    client.force_login(lead)
    response = client.post(decide_url(project, tie), {
        "label": lid(project, "tech"), "reason": "Guideline 2: the main topic wins.",
        "next": review_url(project, "disagreements"),
    })
    assert response.status_code == 302
    assert response["Location"] == review_url(project, "disagreements")
    tie.refresh_from_db()
    assert tie.final_labels == [lid(project, "tech")]
    assert tie.slots_taken >= project.overlap
    decision = Adjudication.objects.get(document=tie)
    assert decision.decided_by == lead and decision.previous_labels is None
    assert decision.reason == "Guideline 2: the main topic wins."
    # Decided documents leave the queue unless asked for.
    assert listed(client.get(review_url(project, "disagreements"))) == []
    assert listed(client.get(review_url(project, "disagreements") + "?decided=1")) == [tie.pk]

    # A second decision is a new row; the first stays.
    services.document_adjudicate(document=tie, user=lead, label_ids=[lid(project, "sport")],
                                 reason="Changed my mind.")
    tie.refresh_from_db()
    assert tie.final_labels == [lid(project, "sport")]
    assert Adjudication.objects.filter(document=tie).count() == 2
    assert Adjudication.objects.filter(document=tie).first().previous_labels == [
        lid(project, "tech")]


def test_adjudication_needs_a_reason_and_a_valid_label(client, project, lead):
    document = doc(project, "Text")
    client.force_login(lead)
    response = client.post(decide_url(project, document),
                           {"label": lid(project, "sport"), "reason": "  "}, follow=True)
    assert "Say why" in response.content.decode()
    response = client.post(decide_url(project, document), {"reason": "why", "label": 99999},
                           follow=True)
    assert "Unknown label" in response.content.decode()
    document.refresh_from_db()
    assert document.final_labels is None and not Adjudication.objects.exists()


def test_adjudication_by_htmx_swaps_the_documents_card(client, project, reviewer):
    document = doc(project, "Text")
    client.force_login(reviewer)
    response = client.post(decide_url(project, document),
                           {"label": lid(project, "business"), "reason": "Deal news."},
                           headers=HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith(f'<article class="card review-item" id="review-{document.pk}"')
    assert "final label saved" in body and "Deal news." in body


def test_a_queued_document_never_comes_back_after_adjudication(project, lead, annotator):
    document = doc(project, "Only one")
    services.document_adjudicate(document=document, user=lead,
                                 label_ids=[lid(project, "sport")], reason="Obvious.")
    assert services.assignment_next(user=annotator, project=project) is None


def test_a_late_answer_or_an_undo_does_not_undo_an_adjudication(
    overlap_project, lead, annotator, second
):
    project = overlap_project
    document = doc(project, "held")
    handed = services.assignment_next(user=annotator, project=project)
    assert handed == document
    answer(second, project, document, "sport")
    services.document_adjudicate(document=document, user=lead,
                                 label_ids=[lid(project, "tech")], reason="Tech story.")
    answer(annotator, project, document, "sport")  # both annotators say sport, too late
    document.refresh_from_db()
    assert document.final_labels == [lid(project, "tech")]
    services.annotation_undo(user=annotator, project=project)
    document.refresh_from_db()
    assert document.final_labels == [lid(project, "tech")]


def test_label_errors_list_confident_contradictions_most_confident_first(
    client, project, lead
):
    round = done_round(project)
    sport, tech = lid(project, "sport"), lid(project, "tech")
    wrong_90 = doc(project, "wrong 90", [sport])
    wrong_99 = doc(project, "wrong 99", [sport])
    wrong_60 = doc(project, "wrong 60", [sport])
    right_99 = doc(project, "right 99", [tech])
    unlabelled = doc(project, "open")
    held_out = doc(project, "holdout", [sport], split=Document.Split.HOLDOUT)
    predict(round, wrong_90, "tech", 0.90)
    predict(round, wrong_99, "tech", 0.99)
    predict(round, wrong_60, "tech", 0.60)
    predict(round, right_99, "tech", 0.99)
    predict(round, unlabelled, "tech", 0.99, score=1.0)
    predict(round, held_out, "tech", 0.99)
    client.force_login(lead)
    response = client.get(review_url(project, "label-errors"))
    assert listed(response) == [wrong_99.pk, wrong_90.pk]
    assert "(99%)" in response.content.decode()
    response = client.get(review_url(project, "label-errors") + "?threshold=0.5")
    assert listed(response) == [wrong_99.pk, wrong_90.pk, wrong_60.pk]

    services.document_adjudicate(document=wrong_99, user=lead, label_ids=[sport],
                                 reason="The model is wrong: it is a match report.")
    assert listed(client.get(review_url(project, "label-errors"))) == [wrong_90.pk]


def test_uncertain_lists_labelled_documents_least_confident_first(client, project, lead):
    round = done_round(project)
    sport = lid(project, "sport")
    sure, unsure, middling = (doc(project, t, [sport]) for t in ("sure", "unsure", "mid"))
    predict(round, sure, "sport", 0.95)
    predict(round, unsure, "business", 0.40)
    predict(round, middling, "sport", 0.70)
    predict(round, doc(project, "open"), "sport", 0.1, score=0.9)
    client.force_login(lead)
    assert listed(client.get(review_url(project, "uncertain"))) == [
        unsure.pk, middling.pk, sure.pk]


def test_review_pages_paginate(client, project, lead):
    round = done_round(project)
    for i in range(25):
        predict(round, doc(project, f"d{i}", [lid(project, "sport")]), "sport", i / 100)
    client.force_login(lead)
    first = client.get(review_url(project, "uncertain"))
    second = client.get(review_url(project, "uncertain") + "?page=2")
    assert len(listed(first)) == 20 and len(listed(second)) == 5
    assert "page 1 of 2" in first.content.decode()


def test_flags_are_listed_and_resolved_from_the_review_area(client, project, lead, annotator):
    flagged, other = doc(project, "broken text"), doc(project, "another")
    flag = services.flag_create(user=annotator, project=project, document_id=flagged.pk,
                                comment="Truncated half way")
    services.flag_create(user=annotator, project=project, document_id=other.pk,
                         comment="Off topic")
    client.force_login(lead)
    response = client.get(review_url(project, "flags"))
    assert set(listed(response)) == {flagged.pk, other.pk}
    assert "Truncated half way" in response.content.decode()

    url = reverse("annotate:review_flag_resolve", kwargs={"pk": project.pk, "flag_id": flag.pk})
    assert client.post(url, {"next": review_url(project, "flags")}).status_code == 302
    flag.refresh_from_db()
    assert flag.resolved
    assert listed(client.get(review_url(project, "flags"))) == [other.pk]

    # Deciding a document can resolve its flags in the same step.
    client.post(decide_url(project, other), {"label": lid(project, "tech"),
                                             "reason": "Fine after all", "resolve_flags": "on"})
    assert not Flag.objects.filter(resolved=False).exists()


def test_resolving_another_projects_flag_is_404(
    client, project, lead, annotator, django_user_model
):
    other_lead = make_user(django_user_model, "other")
    other = services.project_create(name="Other", created_by=other_lead, labels=["a", "b"])
    document = doc(project, "text")
    flag = services.flag_create(user=annotator, project=project, document_id=document.pk,
                                comment="bad")
    client.force_login(other_lead)
    url = reverse("annotate:review_flag_resolve", kwargs={"pk": other.pk, "flag_id": flag.pk})
    assert client.post(url).status_code == 404
    flag.refresh_from_db()
    assert not flag.resolved


def test_an_unsafe_next_url_is_ignored(client, project, lead):
    document = doc(project, "Text")
    client.force_login(lead)
    response = client.post(decide_url(project, document), {
        "label": lid(project, "sport"), "reason": "ok", "next": "https://evil.example/",
    })
    assert response["Location"] == review_url(project)


def test_review_counts(project, lead, annotator):
    doc(project, "open")
    flagged = doc(project, "flagged")
    services.flag_create(user=annotator, project=project, document_id=flagged.pk, comment="x")
    assert selectors.review_counts(project=project) == {
        "disagreements": 0, "label_errors": 0, "uncertain": 0, "flags": 1}


# --- training follows adjudication ---------------------------------------------------------

def test_the_next_round_trains_on_adjudicated_labels(
    labelled_project, lead, monkeypatch, settings, tmp_path  # noqa: F811
):
    from learner import services as learner_services
    from learner.ml.artifact import data_fingerprint
    from learner.ml.train import TextClassifier
    from learner.worker import Worker

    settings.LABELWISE_ARTIFACT_DIR = tmp_path
    project = labelled_project
    names = [label.name for label in selectors.labels_of(project)]
    trained_on: dict[int, int] = {}
    real_fit = TextClassifier.fit

    def spy(self, texts, y, *, doc_ids=None, **kwargs):  # type: ignore[no-untyped-def]
        trained_on.update(zip(doc_ids, y.tolist(), strict=True))
        return real_fit(self, texts, y, doc_ids=doc_ids, **kwargs)

    monkeypatch.setattr(TextClassifier, "fit", spy)
    pool = Document.objects.filter(project=project, split=Document.Split.POOL)
    flipped = pool.filter(final_labels__isnull=False).first()
    opened = pool.filter(final_labels__isnull=True).first()
    new_label = next(name for name in names if lid(project, name) != flipped.final_labels[0])
    labelled_before = learner_services.training_label_count(project.pk)
    services.document_adjudicate(document=flipped, user=lead,
                                 label_ids=[lid(project, new_label)], reason="Relabelled.")
    services.document_adjudicate(document=opened, user=lead,
                                 label_ids=[lid(project, "tech")], reason="Decided.")

    learner_services.round_request(project=project, requested_by=lead)
    Worker(name="test").run_once()
    done = Round.objects.get(project=project)
    assert done.status == "done", done.traceback
    assert done.n_train == labelled_before + 1
    assert trained_on[flipped.pk] == names.index(new_label)
    assert trained_on[opened.pk] == names.index("tech")
    finals = dict(pool.filter(final_labels__isnull=False).values_list("id", "final_labels"))
    by_id = {lid(project, name): name for name in names}
    assert done.data_fingerprint == data_fingerprint(
        list(finals), [[by_id[i] for i in final] for final in finals.values()]
    )
