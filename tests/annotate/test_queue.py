"""The annotation queue: hand-out, overlap, submit, skip, undo, expiry, holdout."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from annotate import services
from annotate.bulk import row_insert_unless_conflict
from annotate.models import Annotation, Assignment, Document, Membership, text_hash
from tests.conftest import make_user


def label_id(project, name: str) -> int:  # type: ignore[no-untyped-def]
    return project.labels.get(name=name).pk


def test_next_item_is_reserved_and_repeats_until_answered(project, annotator, documents):
    first = services.assignment_next(user=annotator, project=project)
    again = services.assignment_next(user=annotator, project=project)
    assert first is not None and first.pk == again.pk
    first.refresh_from_db()
    assert first.slots_taken == 1
    assert Assignment.objects.filter(user=annotator, status="active").count() == 1


def test_queue_order_is_random_not_insertion_order(project, annotator, documents):
    handed = []
    for _ in range(6):
        document = services.assignment_next(user=annotator, project=project)
        handed.append(document.pk)
        services.annotation_submit(
            user=annotator, project=project, document_id=document.pk,
            label_ids=[label_id(project, "tech")],
        )
    by_rand = [d.pk for d in sorted(documents, key=lambda d: d.rand)][:6]
    assert handed == by_rand
    assert handed != sorted(handed)


def test_two_annotators_never_share_a_document_with_overlap_one(project, annotator, lead):
    Document.objects.create(project=project, text="only one", text_hash=text_hash("only one"),
                            rand=0.5)
    mine = services.assignment_next(user=annotator, project=project)
    theirs = services.assignment_next(user=lead, project=project)
    assert mine is not None
    assert theirs is None


def test_overlap_two_hands_each_document_to_two_annotators_only(
    project, annotator, lead, django_user_model
):
    project.overlap = 2
    project.save()
    Document.objects.create(project=project, text="shared", text_hash=text_hash("shared"),
                            rand=0.5)
    third = make_user(django_user_model, "third")
    services.membership_set(project=project, username="third", role=Membership.Role.ANNOTATOR)
    a = services.assignment_next(user=annotator, project=project)
    b = services.assignment_next(user=lead, project=project)
    c = services.assignment_next(user=third, project=project)
    assert a is not None and b is not None and a.pk == b.pk
    assert c is None


def test_submit_records_label_guideline_version_and_final_label(project, annotator, documents):
    document = services.assignment_next(user=annotator, project=project)
    annotation = services.annotation_submit(
        user=annotator, project=project, document_id=document.pk,
        label_ids=[label_id(project, "sport")], duration_ms=1200,
    )
    document.refresh_from_db()
    assert annotation.guideline_version.version == 1
    assert annotation.labels == [label_id(project, "sport")]
    assert document.final_labels == [label_id(project, "sport")]
    assert document.n_annotations == 1
    nxt = services.assignment_next(user=annotator, project=project)
    assert nxt.pk != document.pk


def test_single_label_project_refuses_two_labels_and_unknown_ids(project, annotator, documents):
    document = services.assignment_next(user=annotator, project=project)
    with pytest.raises(ValidationError, match="exactly one"):
        services.annotation_submit(
            user=annotator, project=project, document_id=document.pk,
            label_ids=[label_id(project, "sport"), label_id(project, "tech")],
        )
    with pytest.raises(ValidationError, match="Unknown label"):
        services.annotation_submit(
            user=annotator, project=project, document_id=document.pk, label_ids=[999999],
        )
    assert Annotation.objects.count() == 0


def test_cannot_label_the_same_document_twice(project, annotator, documents):
    document = services.assignment_next(user=annotator, project=project)
    services.annotation_submit(user=annotator, project=project, document_id=document.pk,
                               label_ids=[label_id(project, "tech")])
    with pytest.raises(services.QueueError, match="already labelled"):
        services.annotation_submit(user=annotator, project=project, document_id=document.pk,
                                   label_ids=[label_id(project, "sport")])


def test_majority_of_overlapping_annotators_is_final_and_tie_stays_open(
    project, annotator, lead
):
    project.overlap = 2
    project.save()
    Document.objects.create(project=project, text="t", text_hash=text_hash("t"), rand=0.1)
    for user, name in ((annotator, "sport"), (lead, "tech")):
        document = services.assignment_next(user=user, project=project)
        services.annotation_submit(user=user, project=project, document_id=document.pk,
                                   label_ids=[label_id(project, name)])
    document.refresh_from_db()
    assert document.n_annotations == 2
    assert document.final_labels is None  # a 1-1 tie waits for adjudication


def test_skip_releases_the_slot_and_never_returns_to_that_user(project, annotator, lead):
    Document.objects.create(project=project, text="hard", text_hash=text_hash("hard"), rand=0.1)
    document = services.assignment_next(user=annotator, project=project)
    services.assignment_skip(user=annotator, project=project, document_id=document.pk)
    assert services.assignment_next(user=annotator, project=project) is None
    other = services.assignment_next(user=lead, project=project)
    assert other is not None and other.pk == document.pk


def test_undo_takes_back_the_last_answer_and_hands_the_document_back(
    project, annotator, documents
):
    first = services.assignment_next(user=annotator, project=project)
    services.annotation_submit(user=annotator, project=project, document_id=first.pk,
                               label_ids=[label_id(project, "tech")])
    holding = services.assignment_next(user=annotator, project=project)
    undone = services.annotation_undo(user=annotator, project=project)
    assert undone.document.pk == first.pk
    assert undone.labels == [label_id(project, "tech")]
    assert not Annotation.objects.filter(document=first).exists()
    first.refresh_from_db()
    holding.refresh_from_db()
    assert first.final_labels is None and first.n_annotations == 0 and first.slots_taken == 1
    assert holding.slots_taken == 0  # the document they held went back to the queue
    assert services.assignment_next(user=annotator, project=project).pk == first.pk


def test_submit_refuses_a_document_never_handed_to_the_user(project, annotator, documents):
    held = services.assignment_next(user=annotator, project=project)
    other = next(d for d in documents if d.pk != held.pk)
    with pytest.raises(services.QueueError, match="not handed to you"):
        services.annotation_submit(user=annotator, project=project, document_id=other.pk,
                                   label_ids=[label_id(project, "tech")])
    other.refresh_from_db()
    assert other.slots_taken == 0 and other.n_annotations == 0
    assert not Annotation.objects.exists()


def test_submit_refuses_a_document_the_user_skipped(project, annotator, documents):
    document = services.assignment_next(user=annotator, project=project)
    services.assignment_skip(user=annotator, project=project, document_id=document.pk)
    with pytest.raises(services.QueueError, match="not handed to you"):
        services.annotation_submit(user=annotator, project=project, document_id=document.pk,
                                   label_ids=[label_id(project, "tech")])
    assert not Annotation.objects.exists()


def test_undo_with_nothing_to_undo_returns_none(project, annotator):
    assert services.annotation_undo(user=annotator, project=project) is None


def test_expired_reservation_returns_to_the_queue(project, annotator, lead):
    Document.objects.create(project=project, text="x", text_hash=text_hash("x"), rand=0.1)
    document = services.assignment_next(user=annotator, project=project)
    Assignment.objects.filter(user=annotator).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    cache.clear()  # as if the expiry check's 30-second interval had passed
    other = services.assignment_next(user=lead, project=project)
    assert other is not None and other.pk == document.pk
    # The first annotator's late answer is refused: the slot belongs to someone else now.
    with pytest.raises(services.QueueError, match="someone else"):
        services.annotation_submit(user=annotator, project=project, document_id=document.pk,
                                   label_ids=[label_id(project, "tech")])


def test_flag_needs_a_comment(project, annotator, documents):
    document = services.assignment_next(user=annotator, project=project)
    with pytest.raises(ValidationError):
        services.flag_create(user=annotator, project=project, document_id=document.pk,
                             comment="  ")
    flag = services.flag_create(user=annotator, project=project, document_id=document.pk,
                                comment="Two articles glued together")
    assert flag.document_id == document.pk


def _labelled_docs(project, user, rows):  # type: ignore[no-untyped-def]
    """rows: (text, label name, group) -> labelled documents, as an import would make them."""
    labels = {label.name: label.pk for label in project.labels.all()}
    docs = []
    for i, (text, label, group) in enumerate(rows):
        doc = Document.objects.create(
            project=project, text=text, text_hash=text_hash(text), rand=i / 1000,
            meta={"movie": group} if group else {}, final_labels=[labels[label]] if label else None,
            n_annotations=1 if label else 0, slots_taken=1 if label else 0,
        )
        docs.append(doc)
    return docs


def test_holdout_is_stratified_and_keeps_groups_on_one_side(project, lead):
    rows = []
    for movie in range(40):
        label = "business" if movie % 4 else "tech"  # 1 in 4 groups is "tech"
        rows += [(f"review {movie}-{k}", label, f"m{movie}") for k in range(3)]
    rows += [(f"unlabelled review of m{movie}", None, f"m{movie}") for movie in range(40)]
    _labelled_docs(project, lead, rows)
    summary = services.holdout_reserve(project=project, fraction=0.25, group_field="movie",
                                       seed=1)
    held = Document.objects.filter(project=project, split="holdout")
    sides: dict[str, set[str]] = {}
    for doc in Document.objects.filter(project=project):
        sides.setdefault(doc.meta["movie"], set()).add(doc.split)
    assert all(len(s) == 1 for s in sides.values()), "a movie straddles the split"
    labelled_held = held.filter(final_labels__isnull=False).count()
    assert 24 <= labelled_held <= 36  # 25% of 120, whole groups of 3
    assert summary.per_label.get("tech", 0) > 0 and summary.per_label.get("business", 0) > 0
    # Unlabelled members of held-out movies left the training side too.
    assert held.filter(final_labels__isnull=True).count() == labelled_held // 3


def test_holdout_by_count_and_bad_requests(project, lead):
    _labelled_docs(project, lead, [(f"t{i}", "sport" if i % 2 else "tech", None)
                                   for i in range(20)])
    summary = services.holdout_reserve(project=project, count=6)
    assert 5 <= summary.holdout <= 7
    with pytest.raises(ValidationError):
        services.holdout_reserve(project=project, fraction=1.5)
    with pytest.raises(ValidationError):
        services.holdout_reserve(project=project, fraction=0.2, count=3)


def test_holdout_documents_never_enter_the_queue_once_labelled(project, annotator, lead):
    _labelled_docs(project, lead, [(f"t{i}", "sport", None) for i in range(10)])
    services.holdout_reserve(project=project, fraction=0.5)
    assert services.assignment_next(user=annotator, project=project) is None


def test_guideline_edit_creates_a_new_version_and_same_text_does_not(project, lead):
    v2 = services.guideline_update(project=project, text="# Topics\n\nNew rule.", user=lead)
    same = services.guideline_update(project=project, text="# Topics\n\nNew rule.", user=lead)
    assert v2.version == 2 and same.pk == v2.pk
    assert project.guidelines.count() == 2


def test_label_hotkeys_must_be_unique_and_not_reserved(project):
    with pytest.raises(ValidationError, match="already the hotkey"):
        services.label_create(project=project, name="politics", hotkey="1")
    with pytest.raises(ValidationError, match="taken by the annotator page"):
        services.label_create(project=project, name="politics", hotkey="s")
    label = services.label_create(project=project, name="politics")
    assert label.hotkey == "4"


@pytest.mark.django_db(transaction=True)
def test_concurrent_hand_outs_never_over_assign(django_user_model):
    lead = make_user(django_user_model, "lead")
    project = services.project_create(name="race", created_by=lead, labels=["a", "b"])
    Document.objects.bulk_create(
        Document(project=project, text=f"d{i}", text_hash=text_hash(f"d{i}"), rand=i / 10)
        for i in range(10)
    )
    users = [make_user(django_user_model, f"u{i}") for i in range(12)]
    for user in users:
        services.membership_set(project=project, username=user.username, role="annotator")
    results: list[int | None] = []
    errors: list[BaseException] = []

    def grab(user) -> None:  # type: ignore[no-untyped-def]
        try:
            document = services.assignment_next(user=user, project=project)
            results.append(document.pk if document else None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=grab, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    handed = [pk for pk in results if pk is not None]
    assert len(handed) == len(set(handed)) == 10
    assert results.count(None) == 2
    assert Document.objects.filter(slots_taken__gt=1).count() == 0


def test_a_second_hand_out_of_the_same_document_to_the_same_user_is_refused(
    project, annotator, documents
):
    # Two tabs of one annotator racing for one document: the database keeps one hand-out
    # (INSERT ... ON CONFLICT DO NOTHING) and tells the loser, which puts the slot back.
    def hand_out() -> bool:
        now = timezone.now()
        return row_insert_unless_conflict(Assignment(
            document=documents[0], project=project, user=annotator, created_at=now,
            expires_at=now + timedelta(hours=1)))

    assert hand_out() is True
    assert hand_out() is False
    held = Assignment.objects.get(document=documents[0], user=annotator)
    assert held.status == Assignment.Status.ACTIVE and held.expires_at > timezone.now()
