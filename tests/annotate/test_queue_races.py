"""Concurrent requests on the annotator page: a submit racing an undo takes its row locks in
the same order (Document, then Assignment, then Annotation) and so never deadlocks; a
request that still cannot get its locks says "try again" instead of failing."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.urls import reverse

from annotate import services
from annotate.models import Annotation, Assignment, Document, text_hash
from tests.conftest import make_user

PAIRS = 24
RETRY = "try again"


def htmx_post(client: Client, url: str, data: dict):  # type: ignore[no-untyped-def]
    return client.post(url, data, HTTP_HX_REQUEST="true")


@pytest.mark.django_db(transaction=True)
def test_submits_racing_undos_never_deadlock(django_user_model):
    if connection.vendor != "postgresql":
        pytest.skip("row locks and deadlock detection are PostgreSQL's (SQLite serialises "
                    "writers)")
    lead = make_user(django_user_model, "lead")
    project = services.project_create(name="race", created_by=lead, labels=["a", "b"])
    Document.objects.bulk_create(
        Document(project=project, text=f"d{i}", text_hash=text_hash(f"d{i}"), rand=i / 100)
        for i in range(3 * PAIRS)
    )
    label = project.labels.first().pk
    users = [make_user(django_user_model, f"u{i}") for i in range(PAIRS)]
    holding = {}
    for user in users:
        services.membership_set(project=project, username=user.username, role="annotator")
        # Each annotator has answered one document (what undo takes back) and holds the
        # next (what submit answers and undo releases): both requests want both rows.
        answered = services.assignment_next(user=user, project=project)
        services.annotation_submit(user=user, project=project, document_id=answered.pk,
                                   label_ids=[label])
        holding[user.pk] = services.assignment_next(user=user, project=project).pk
    submit_url = reverse("annotate:annotate_submit", args=[project.pk])
    undo_url = reverse("annotate:annotate_undo", args=[project.pk])
    failures: list[str] = []

    def request(user, barrier: threading.Barrier, action: str) -> None:  # type: ignore[no-untyped-def]
        try:
            client = Client()
            client.force_login(user)
            barrier.wait(timeout=30)
            if action == "submit":
                response = htmx_post(client, submit_url,
                                     {"document": holding[user.pk], "label": label})
            else:
                response = htmx_post(client, undo_url, {})
            html = response.content.decode()
            if response.status_code != 200 or RETRY in html:
                failures.append(f"{action} of {user}: {response.status_code} {html[:200]}")
        except BaseException as exc:  # noqa: BLE001 - reported below (DeadlockDetected...)
            failures.append(f"{action} of {user}: {type(exc).__name__}: {exc}")
        finally:
            connections.close_all()

    # A few pairs at a time: each pair starts its two requests together.
    for start in range(0, PAIRS, 4):
        threads = []
        for user in users[start:start + 4]:
            barrier = threading.Barrier(2)
            threads += [threading.Thread(target=request, args=(user, barrier, action))
                        for action in ("submit", "undo")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, "\n".join(failures)
    # Whichever came first, the books balance: every slot taken is an answer or a hand-out.
    for document in Document.objects.filter(project=project):
        answers = Annotation.objects.filter(document=document).count()
        active = Assignment.objects.filter(document=document, status="active").count()
        assert document.n_annotations == answers, document.pk
        assert document.slots_taken == answers + active, document.pk


def _hold_the_write_lock(document_id: int, locked: threading.Event,
                         release: threading.Event) -> None:
    """Another request in the middle of a write: a row lock on the document (PostgreSQL);
    the database's write lock (SQLite's IMMEDIATE transactions)."""
    try:
        with transaction.atomic():
            list(Document.objects.select_for_update().filter(pk=document_id))
            Document.objects.filter(pk=document_id).update(meta={"busy": True})
            locked.set()
            release.wait(timeout=30)
    finally:
        connection.close()


def _short_lock_wait(seconds: float) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SET lock_timeout = '{int(seconds * 1000)}ms'")
        else:
            cursor.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")


@pytest.mark.django_db(transaction=True)
def test_a_submit_that_cannot_get_its_locks_asks_to_try_again(project, annotator, documents):
    client = Client()
    client.force_login(annotator)
    held = services.assignment_next(user=annotator, project=project).pk
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_the_write_lock, args=(held, locked, release))
    holder.start()
    try:
        assert locked.wait(timeout=30)
        _short_lock_wait(0.3)
        url = reverse("annotate:annotate_submit", args=[project.pk])
        data = {"document": held, "label": project.labels.first().pk}
        partial = htmx_post(client, url, data)
        page = client.post(url, data)
    finally:
        release.set()
        holder.join()
        _short_lock_wait(20)
    # htmx swaps only 2xx answers: the partial says what happened; a plain form gets a 503.
    assert partial.status_code == 200 and RETRY in partial.content.decode()
    assert partial.content.decode().lstrip().startswith('<section id="item"')
    assert page.status_code == 503 and RETRY in page.content.decode()
    assert page["Retry-After"]
    assert not Annotation.objects.exists()
    # Once the lock is gone the same answer goes through.
    response = htmx_post(client, url, data)
    assert response.status_code == 200 and RETRY not in response.content.decode()
    assert Annotation.objects.filter(document_id=held, annotator=annotator).exists()
