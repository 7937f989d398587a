"""Deleting a label: refused while anything of the project still names it (an answer, a
document's final label, a lead's decision), so no export ever meets a dangling label id."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from annotate import services
from annotate.models import Document, Label, text_hash
from tests.conftest import hand_out, make_user


def label(project, name: str) -> Label:  # type: ignore[no-untyped-def]
    return project.labels.get(name=name)


def answer(user, project, document, name: str) -> None:  # type: ignore[no-untyped-def]
    hand_out(user, document)
    services.annotation_submit(
        user=user, project=project, document_id=document.pk, label_ids=[label(project, name).pk]
    )


def decide(lead, project, document, name: str) -> None:  # type: ignore[no-untyped-def]
    services.document_adjudicate(
        document=document, user=lead, label_ids=[label(project, name).pk], reason="Read it."
    )


def test_an_unused_label_is_deleted(project):
    services.label_delete(label=label(project, "business"))
    assert not project.labels.filter(name="business").exists()


def test_a_label_a_decision_made_final_cannot_be_deleted(
    project, lead, annotator, documents
):
    answer(annotator, project, documents[0], "sport")
    decide(lead, project, documents[0], "tech")  # no annotation says tech
    with pytest.raises(ValidationError) as info:
        services.label_delete(label=label(project, "tech"))
    assert info.value.messages == [
        "'tech' is used by documents' final labels and adjudications; rename it instead of "
        "deleting."
    ]
    assert project.labels.filter(name="tech").exists()


def test_a_label_only_an_earlier_decision_used_cannot_be_deleted(
    project, lead, annotator, documents
):
    answer(annotator, project, documents[0], "sport")
    decide(lead, project, documents[0], "tech")
    decide(lead, project, documents[0], "business")  # tech lives on in the history only
    with pytest.raises(ValidationError, match="'tech' is used by adjudications;"):
        services.label_delete(label=label(project, "tech"))


def test_a_label_only_a_final_label_uses_cannot_be_deleted(project, documents):
    tech = label(project, "tech")
    Document.objects.filter(pk=documents[3].pk).update(final_labels=[tech.pk])
    with pytest.raises(ValidationError, match="'tech' is used by documents' final labels;"):
        services.label_delete(label=tech)


def test_a_label_whose_id_is_part_of_a_used_id_can_still_be_deleted(project, documents):
    # Label ids are matched as whole ids inside the stored lists: 1 is not in [11].
    business = label(project, "business")
    digits = str(business.pk)
    for i in range(30):
        other = services.label_create(project=project, name=f"extra {i}", hotkey="")
        if digits in str(other.pk):
            break
    else:
        pytest.skip("no label id containing the first one's digits was handed out")
    Document.objects.filter(pk=documents[0].pk).update(final_labels=[other.pk])
    services.label_delete(label=business)
    assert not Label.objects.filter(pk=business.pk).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL only")
@pytest.mark.django_db(transaction=True)
def test_a_label_delete_waits_for_a_writer_holding_the_label_and_then_refuses(
    django_user_model,
):
    # A writer that uses a label holds a share lock on its row until it commits (FOR KEY
    # SHARE, what a foreign key would take). The delete must wait for it and then see its
    # work, rather than check first, find nothing yet, and delete the label from under it.
    lead = make_user(django_user_model, "lead")
    project = services.project_create(name="race", created_by=lead, labels=["a", "b"])
    doc = Document.objects.create(project=project, text="d", text_hash=text_hash("d"), rand=0.5)
    target = label(project, "a")
    params = connection.get_connection_params()
    writer = psycopg.connect(
        **{k: v for k, v in params.items() if k in {"dbname", "user", "host", "port"}}
    )
    outcome: list[BaseException | None] = []

    def delete() -> None:
        try:
            services.label_delete(label=target)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome.append(exc)
        finally:
            connection.close()

    try:
        with writer.cursor() as cursor:
            cursor.execute("SELECT id FROM annotate_label WHERE id = %s FOR KEY SHARE",
                           [target.pk])
            cursor.execute("UPDATE annotate_document SET final_labels = %s::jsonb WHERE id = %s",
                           [f"[{target.pk}]", doc.pk])
        deleter = threading.Thread(target=delete)
        deleter.start()
        time.sleep(1.0)
        assert deleter.is_alive(), "the delete did not wait for the writer's lock"
        writer.commit()
        deleter.join(timeout=30)
    finally:
        writer.close()
    assert len(outcome) == 1 and isinstance(outcome[0], ValidationError)
    assert Label.objects.filter(pk=target.pk).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL only")
@pytest.mark.django_db(transaction=True)
def test_an_import_waits_for_a_label_delete_and_then_refuses_the_deleted_label(
    django_user_model, tmp_path
):
    # The other way round: a delete holds the label; an import that would write answers
    # with it waits, then finds it gone, instead of writing ids of a deleted label.
    from annotate.io.importer import DocumentImportError, documents_import

    lead = make_user(django_user_model, "lead")
    project = services.project_create(name="race", created_by=lead, labels=["a", "b"])
    target = label(project, "a")
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "x", "label": "b"}\n{"text": "y", "label": "a"}\n')
    params = connection.get_connection_params()
    deleter = psycopg.connect(
        **{k: v for k, v in params.items() if k in {"dbname", "user", "host", "port"}}
    )
    outcome: list[BaseException | None] = []

    def run_import() -> None:
        try:
            with path.open("rb") as file:
                documents_import(project=project, file=file, fmt="jsonl", user=lead)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome.append(exc)
        finally:
            connection.close()

    try:
        deleter.execute("DELETE FROM annotate_label WHERE id = %s", [target.pk])
        importer = threading.Thread(target=run_import)
        importer.start()
        time.sleep(1.0)
        assert importer.is_alive(), "the import did not wait for the delete's lock"
        deleter.commit()
        importer.join(timeout=30)
    finally:
        deleter.close()
    assert len(outcome) == 1 and isinstance(outcome[0], DocumentImportError)
    assert "line 2: unknown label 'a'" in str(outcome[0])
    assert not Document.objects.filter(project=project).exists()
