"""A large import next to annotators at work: it commits in short batches (SQLite has one
writer at a time), its documents stay hidden until it finishes, and a failed one leaves
nothing behind."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse

from annotate import selectors, services
from annotate.io import importer
from annotate.io.importer import DocumentImportError, ImportReport, documents_import
from annotate.models import Annotation, Assignment, Document, DocumentImport, text_hash
from tests.conftest import PASSWORD

ROWS = 100_000
# An annotator's request waits for one batch of the import, not for the import: several
# requests are answered while it runs (counted below, never timed: the machines are
# shared; bench/import.py measures the waits). Before batching, the first request waited
# for the whole import and was the only one made during it.
REQUESTS_DURING_IMPORT = 5


def csv_of(path: Path, n: int, last: str | None = None) -> Path:
    lines = ["text,label\n", *(f"imported document number {i},\n" for i in range(n))]
    if last is not None:
        lines.append(last)
    path.write_text("".join(lines))
    return path


class ImportThread(threading.Thread):
    """documents_import on its own database connection, as another request would run it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.kwargs = kwargs
        self.report: ImportReport | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Path(self.kwargs.pop("path")).open("rb") as file:
                self.report = documents_import(file=file, **self.kwargs)
        except BaseException as exc:  # handed to the test, which re-raises or inspects it
            self.error = exc
        finally:
            connection.close()


def labelled_documents(project, n: int) -> list[Document]:  # type: ignore[no-untyped-def]
    rng = random.Random(1)
    texts = [f"Waiting document {i} about markets or matches." for i in range(n)]
    return Document.objects.bulk_create(
        Document(project=project, text=t, text_hash=text_hash(t), rand=rng.random())
        for t in texts
    )


@pytest.mark.django_db(transaction=True)
def test_annotators_label_while_a_large_import_runs(client, project, annotator, lead,
                                                    tmp_path):
    waiting = labelled_documents(project, 400)
    before = len(waiting)
    submit_url = reverse("annotate:annotate_submit", args=[project.pk])
    next_url = reverse("annotate:annotate_next", args=[project.pk])
    sport = project.labels.get(name="sport")

    thread = ImportThread(project=project, user=lead, fmt="csv",
                          path=csv_of(tmp_path / "big.csv", ROWS))
    thread.start()
    during, seen_counts = 0, set()
    logins = 0
    while thread.is_alive() or during == 0:
        if logins < 2:
            # A login writes too (the session, last_login).
            assert client.login(username="annotator", password=PASSWORD)
            logins += 1
            response = client.post(next_url)
            assert response.status_code in {200, 302}
        else:
            held = Assignment.objects.get(user=annotator, project=project, status="active")
            response = client.post(submit_url, {"document": held.document_id,
                                                "label": sport.pk},
                                   HTTP_HX_REQUEST="true")
            assert response.status_code == 200, response.content[:300]
        during += thread.is_alive()
        # All or nothing, also while it runs: the project shows none of the import, or all.
        seen_counts.add(Document.objects.filter(project=project).count())
        if not thread.is_alive() and during == 0:
            break
    thread.join()
    if thread.error is not None:
        raise thread.error
    assert thread.report is not None and thread.report.created == ROWS
    assert during >= REQUESTS_DURING_IMPORT, (
        "the import finished before the annotator could work beside it")
    assert seen_counts <= {before, before + ROWS}
    assert Document.objects.filter(project=project).count() == before + ROWS
    assert not DocumentImport.objects.exclude(status=DocumentImport.Status.DONE).exists()
    # The annotator was handed imported documents only once the import had finished.
    finished = DocumentImport.objects.get().updated_at
    answered = Annotation.objects.filter(annotator=annotator)
    assert answered.count() >= during - 2
    assert not answered.exclude(document__in=waiting).filter(created_at__lt=finished).exists()


@pytest.mark.django_db(transaction=True)
def test_a_bad_last_row_of_a_large_import_shows_nothing_and_leaves_nothing(
    project, lead, tmp_path
):
    n = 30_000
    thread = ImportThread(project=project, user=lead, fmt="csv",
                          path=csv_of(tmp_path / "bad.csv", n, last="the last one,sprots\n"))
    thread.start()
    while thread.is_alive():
        assert not Document.objects.filter(project=project).exists()
        time.sleep(0.05)
    thread.join()
    assert isinstance(thread.error, DocumentImportError)
    assert str(thread.error).startswith(f"line {n + 2}: unknown label 'sprots'")
    assert not Document.all_objects.exists()
    assert not DocumentImport.objects.exists()
    assert not Annotation.objects.exists()


# --- hidden documents, directly -------------------------------------------------------------


def pending(project, text: str, *, status: str = "running") -> Document:  # type: ignore[no-untyped-def]
    job = DocumentImport.objects.create(project=project, status=status)
    return Document.all_objects.create(project=project, import_job=job, text=text,
                                       text_hash=text_hash(text), rand=0.5)


def test_documents_of_an_unfinished_import_are_hidden_from_every_read(project, annotator,
                                                                      documents):
    hidden = pending(project, "Not yet imported")
    assert not Document.objects.filter(pk=hidden.pk).exists()
    assert hidden.pk not in set(project.documents.values_list("pk", flat=True))
    assert hidden not in selectors.document_list(project=project)
    assert selectors.project_counts(project)["n"] == len(documents)
    queue = selectors.queue_candidates(annotator, project, slots_taken=0)
    assert hidden.pk not in set(queue.values_list("pk", flat=True))
    for _ in documents:
        document = services.assignment_next(project=project, user=annotator)
        assert document is not None and document.pk != hidden.pk
        Assignment.objects.filter(user=annotator, status="active").update(status="done")
    assert services.assignment_next(project=project, user=annotator) is None
    DocumentImport.objects.filter(pk=hidden.import_job_id).update(status="done")
    assert Document.objects.filter(pk=hidden.pk).exists()


def test_a_text_another_import_is_adding_stops_the_import_on_its_line(project, lead,
                                                                      tmp_path):
    pending(project, "Shared text")
    path = tmp_path / "x.csv"
    path.write_text("text\nFirst\nshared   TEXT\n")
    with path.open("rb") as file, pytest.raises(DocumentImportError,
                                                match="^line 3: another import"):
        documents_import(project=project, file=file, fmt="csv", user=lead)
    assert Document.all_objects.filter(project=project).count() == 1  # the other's row
    assert DocumentImport.objects.count() == 1


def test_an_abandoned_import_is_cleaned_up_by_the_next(project, lead, tmp_path):
    from django.utils import timezone

    stale = pending(project, "Left behind")
    DocumentImport.objects.filter(pk=stale.import_job_id).update(
        updated_at=timezone.now() - importer.STALE_AFTER * 2)
    path = tmp_path / "x.csv"
    path.write_text("text\nLeft behind\n")
    with path.open("rb") as file:
        report = documents_import(project=project, file=file, fmt="csv", user=lead)
    assert report.created == 1 and report.duplicates == 0
    assert not DocumentImport.objects.filter(pk=stale.import_job_id).exists()
    assert Document.objects.filter(project=project).count() == 1


def test_a_label_deleted_during_the_import_fails_it(project, lead, tmp_path, monkeypatch):
    business = project.labels.get(name="business")
    write = importer._Writer.write

    def write_then_delete(self, batch):  # type: ignore[no-untyped-def]
        write(self, batch)
        if project.labels.filter(pk=business.pk).exists():
            # Nothing visible names it yet, so the delete goes through.
            services.label_delete(label=business)

    monkeypatch.setattr(importer._Writer, "write", write_then_delete)
    path = tmp_path / "x.csv"
    path.write_text("text,label\nA,business\nB,sport\n")
    with path.open("rb") as file, pytest.raises(DocumentImportError, match="was deleted"):
        documents_import(project=project, file=file, fmt="csv", user=lead, batch_size=1)
    assert not Document.all_objects.exists() and not Annotation.objects.exists()
