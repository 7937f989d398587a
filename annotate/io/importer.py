"""Documents import: any supported file into a project, all or nothing.

The parsers (one module per format) turn a file into ImportRows; this module checks each
row against the project (label names, one label for single-label projects), skips exact
duplicates, and writes documents, and imported annotations for pre-labelled rows.

All or nothing, without holding the database for the whole import: every batch is written
in its own short transaction (SQLite has one writer at a time, and annotators must get
their turn between batches), under a DocumentImport row that keeps the documents hidden
(Document.objects leaves them out) until the last step, one short transaction that
writes the imported annotations and marks the import done. A bad row anywhere marks it
failed and deletes what it wrote, in batches too; nobody ever sees any of it.

Memory stays flat however long the file is: one batch of rows is held at a time, and
duplicates are found by asking the database about each batch's text hashes (rows of
earlier batches are already there, hidden), so no set of every hash seen is ever kept.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import PurePath
from typing import IO, Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.utils import timezone

from annotate import selectors, services
from annotate.bulk import (
    ANALYZE_AFTER_ROWS,
    db_value,
    rows_insert,
    rows_insert_select,
    table_analyze,
)
from annotate.io import csv_format, jsonl, label_studio, prodigy
from annotate.io.base import DocumentImportError, ImportFormatError, ImportRow, Parser
from annotate.models import (
    Annotation,
    Document,
    DocumentImport,
    Label,
    Project,
    text_hash,
)

__all__ = [
    "FORMAT_CHOICES",
    "DocumentImportError",
    "ImportFormatError",
    "ImportReport",
    "detect_format",
    "documents_import",
]

PARSERS: dict[str, Parser] = {
    "csv": csv_format.parse,
    "jsonl": jsonl.parse,
    "labelstudio": label_studio.parse,
    "prodigy": prodigy.parse,
}
FORMAT_CHOICES = [
    ("csv", "CSV with a header row"),
    ("jsonl", "JSON Lines"),
    ("labelstudio", "Label Studio JSON export"),
    ("prodigy", "Prodigy JSONL (db-out)"),
]

# Rows per write transaction: each holds SQLite's one write lock for a few tens of ms.
BATCH_SIZE = 2000
# Hidden rows of a failed import are deleted this many per transaction.
DELETE_BATCH = 5000
# A RUNNING import that wrote no batch for this long belongs to a process that died: the
# next import marks it failed and deletes its hidden rows.
STALE_AFTER = timedelta(minutes=15)
SAMPLE_LINES = 10
HEAD_BYTES = 8192
# SQLite builds before 3.32 cap a statement at 999 parameters; stay under that.
_IN_CHUNK = 900
_PRODIGY_KEYS = re.compile(r'"(?:_input_hash|_task_hash|answer)"\s*:')
_EXTERNAL_ID_MAX = Document._meta.get_field("external_id").max_length or 200
# Characters no database column takes: PostgreSQL stores no NUL (SQLite does, so a file
# would import on one and fail on the other), and an unpaired surrogate (which JSON's
# "\ud800" escape can produce) is not Unicode and cannot be encoded as UTF-8.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# Metadata deeper than this is refused: JSON nested close to Python's recursion limit
# decodes here but would fail later, wherever it is encoded or read back (exports, pages).
MAX_META_DEPTH = 100


@dataclass(frozen=True)
class ImportReport:
    fmt: str
    created: int
    labelled: int
    duplicates: int
    duplicates_in_file: int
    duplicates_existing: int
    # Line numbers of the first few skipped duplicates, to look them up in the file.
    duplicate_lines: list[int] = field(default_factory=list)
    # Skipped duplicates that carried labels: those labels were not imported.
    duplicates_labelled: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        text = f"Imported {self.created} documents ({self.labelled} labelled)"
        if self.duplicates:
            lines = ", ".join(map(str, self.duplicate_lines))
            more = ", ..." if self.duplicates > len(self.duplicate_lines) else ""
            text += (
                f"; skipped {self.duplicates} exact duplicates ({self.duplicates_existing} "
                f"already in the project, {self.duplicates_in_file} repeated in the file; "
                f"lines {lines}{more})"
            )
            if self.duplicates_labelled:
                text += f"; {self.duplicates_labelled} of them had labels, not imported"
        return text + f" in {self.seconds:.1f} s."


def detect_format(name: str, head: bytes) -> str:
    """The format of a file from its name and its first bytes (a few KB are enough).

    A .csv/.tsv name means CSV; content opening with "[" is a Label Studio export; content
    opening with "{" is JSON Lines, or Prodigy when its first task carries Prodigy's
    "_input_hash"/"_task_hash"/"answer" keys. Raises DocumentImportError when it cannot
    tell (then the caller should ask for the format).
    """
    suffix = PurePath(name).suffix.lower()
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    if suffix in {".csv", ".tsv"}:
        return "csv"
    if text.startswith("["):
        return "labelstudio"
    if text.startswith("{"):
        first_line = text.split("\n", 1)[0]
        return "prodigy" if _PRODIGY_KEYS.search(first_line) else "jsonl"
    # The content did not decide (an empty file, say): fall back on the name.
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    if suffix == ".json":
        return "labelstudio"
    if suffix in {"", ".txt"} and text:
        return "csv"
    raise DocumentImportError(
        None,
        f"cannot tell the format of {name or 'the file'!r}; choose one of "
        + ", ".join(value for value, _ in FORMAT_CHOICES),
    )


class _LabelResolver:
    """Label names in a file -> the project's Label ids, with the error a lead can act on."""

    def __init__(self, project: Project) -> None:
        pairs = list(project.labels.values_list("name", "id"))
        self.names = [name for name, _ in pairs]
        self.by_name = dict(pairs)
        # A case-insensitive fallback ("Sport" for "sport"), only where it is unambiguous.
        folded: dict[str, int | None] = {}
        for name, label_id in pairs:
            key = name.casefold()
            folded[key] = None if key in folded else label_id
        self.by_folded = folded
        self.task = project.task

    def ids(self, row: ImportRow) -> list[int] | None:
        if row.labels is None:
            return None
        ids = set()
        for name in row.labels:
            label_id = self.by_name.get(name) or self.by_folded.get(name.casefold())
            if label_id is None:
                known = ", ".join(self.names) if self.names else "none yet; add labels first"
                raise DocumentImportError(
                    row.line, f"unknown label {name!r} (project labels: {known})"
                )
            ids.add(label_id)
        error = self.task.import_error(sorted(ids), row.labels)
        if error:
            raise DocumentImportError(row.line, error)
        return sorted(ids)


_CONCURRENT = ("another import into this project is adding the same text at this moment; "
               "nothing was imported, please try again once it has finished")


@dataclass
class _Writer:
    """Writes one batch at a time, hidden under `job`, and keeps the running counts for
    the report."""

    project: Project
    job: DocumentImport
    rows: int = 0
    created: int = 0
    labelled: int = 0
    duplicates_in_file: int = 0
    duplicates_existing: int = 0
    duplicates_labelled: int = 0
    duplicate_lines: list[int] = field(default_factory=list)
    # Labels the written documents name, checked again when the import is made visible.
    label_ids: set[int] = field(default_factory=set)

    def write(self, batch: list[tuple[ImportRow, list[int] | None]]) -> None:
        with transaction.atomic():
            self._write(batch)

    def _write(self, batch: list[tuple[ImportRow, list[int] | None]]) -> None:
        self.rows += len(batch)
        digests = [text_hash(row.text) for row, _ in batch]
        stored = self._stored(set(digests))
        others = {job for _, job in stored.values() if job is not None and job != self.job.pk}
        unfinished = set(
            DocumentImport.objects.filter(pk__in=others)
            .exclude(status=DocumentImport.Status.DONE)
            .values_list("pk", flat=True)
        ) if others else set()
        seen: set[str] = set()
        documents: list[tuple[ImportRow, str, list[int] | None]] = []
        for (row, label_ids), digest in zip(batch, digests, strict=True):
            if digest in seen or digest in stored:
                # Rows of earlier batches of this file are in the database already, hidden
                # under this import; another unfinished import's rows may yet vanish.
                if digest in seen or stored[digest][1] == self.job.pk:
                    self.duplicates_in_file += 1
                elif stored[digest][1] in unfinished:
                    raise DocumentImportError(row.line, _CONCURRENT)
                else:
                    self.duplicates_existing += 1
                self.duplicates_labelled += label_ids is not None
                if len(self.duplicate_lines) < SAMPLE_LINES:
                    self.duplicate_lines.append(row.line)
                continue
            seen.add(digest)
            documents.append((row, digest, label_ids))
        try:
            _insert_documents(self.project, self.job, documents)
        except DataError as exc:
            raise DocumentImportError(
                batch[0][0].line,
                f"the database refused a row between this line and line {batch[-1][0].line}"
                f" ({exc})",
            ) from None
        # The heartbeat: a RUNNING import whose row goes untouched for long counts as dead.
        alive = DocumentImport.objects.filter(
            pk=self.job.pk, status=DocumentImport.Status.RUNNING
        ).update(updated_at=timezone.now())
        if not alive:
            raise DocumentImportError(None, "the import was stopped (it looked abandoned); "
                                            "nothing was imported, please try again")
        self.created += len(documents)
        for _, _, ids in documents:
            if ids is not None:
                self.labelled += 1
                self.label_ids.update(ids)

    def _stored(self, digests: set[str]) -> dict[str, tuple[int, int | None]]:
        """text hash -> (id, import) of this project's documents among `digests`, hidden
        ones included (this import's earlier batches, other imports still running).

        Either way the query must probe the (project, text_hash) unique index once per
        hash. Left to themselves both planners scan the project's rows instead (SQLite to
        honour the default ORDER BY id; PostgreSQL because its statistics, taken before
        the import, say the project is small), and the import turns quadratic.
        """
        ordered = sorted(digests)
        if connection.vendor == "postgresql":
            # One index probe per hash. The LIMIT keeps the planner from flattening the
            # lateral lookup into a hash join over the project. The project id comes from
            # the probe rows, never as a literal: for a literal the planner reads this
            # project's own statistics, which for a new project say "no rows", and then
            # any index starting with the project looks as cheap as the unique one (it
            # picked the plain project index and filtered every row, measured). For a
            # value it cannot see it costs the average project, and only the unique index
            # promises one row. (Were the average project a single document, the two
            # would tie again.)
            qn, opts = connection.ops.quote_name, Document._meta
            table, project_id = qn(opts.db_table), qn(opts.get_field("project").column)
            job_id = qn(opts.get_field("import_job").column)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT h.digest, d.id, d.job FROM unnest(%s::bigint[], %s::text[]) "
                    f"AS h(project_id, digest) "
                    f"JOIN LATERAL (SELECT id, {job_id} AS job FROM {table} "
                    f"WHERE {project_id} = h.project_id AND text_hash = h.digest LIMIT 1) "
                    f"AS d ON true",
                    [[self.project.pk] * len(ordered), ordered],
                )
                return {digest: (pk, job) for digest, pk, job in cursor.fetchall()}
        found: dict[str, tuple[int, int | None]] = {}
        for start in range(0, len(ordered), _IN_CHUNK):
            found.update(
                (digest, (pk, job))
                for digest, pk, job in Document.all_objects.filter(
                    project=self.project, text_hash__in=ordered[start : start + _IN_CHUNK]
                )
                .order_by()
                .values_list("text_hash", "id", "import_job_id")
            )
        return found


def _insert_documents(
    project: Project, job: DocumentImport,
    documents: list[tuple[ImportRow, str, list[int] | None]],
) -> None:
    """Inserts a batch of documents (annotate.bulk: COPY on PostgreSQL, instead of
    bulk_create); only the JSON columns go through their fields, per row."""
    if not documents:
        return
    overlap = project.overlap
    columns = ["text", "text_hash", "external_id", "meta", "rand", "slots_taken",
               "n_annotations", "final_labels"]

    def values(row: ImportRow, digest: str, label_ids: list[int] | None) -> list[Any]:
        labelled = label_ids is not None
        # An imported label is a finished answer: the document leaves the queue.
        return [
            row.text, digest, row.external_id, db_value(Document, "meta", row.meta),
            random.random(), overlap if labelled else 0, 1 if labelled else 0,
            db_value(Document, "final_labels", label_ids),
        ]

    template = Document(project=project, import_job=job, text="", text_hash="", rand=0.0)
    rows_insert(template, columns, (values(*document) for document in documents))


def _head(file: IO[bytes]) -> bytes:
    head = file.read(HEAD_BYTES)
    file.seek(0)
    return head if isinstance(head, bytes) else head.encode("utf-8")


def _unstorable(value: Any) -> str | None:
    """What keeps a decoded value from being stored, as the end of a sentence ("contains a
    NUL character"); None when nothing does. Walks nested values without recursing."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            found = _UNSTORABLE.search(item)
            if found:
                if found.group() == "\x00":
                    return "contains a NUL character (\\u0000), which cannot be stored"
                return "contains an unpaired surrogate (a lone \\ud800-\\udfff), not text"
        elif isinstance(item, dict | list):
            if depth >= MAX_META_DEPTH:
                return f"is nested too deeply (more than {MAX_META_DEPTH} levels)"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                item = item.values()
            stack.extend((child, depth + 1) for child in item)
    return None


def _checked(rows: Iterator[ImportRow], resolver: _LabelResolver) -> Iterator[
    tuple[ImportRow, list[int] | None]
]:
    for row in rows:
        problem = _unstorable(row.text)
        if problem:
            raise DocumentImportError(row.line, f"the text {problem}")
        if len(row.external_id) > _EXTERNAL_ID_MAX:
            raise DocumentImportError(
                row.line, f"the id is longer than {_EXTERNAL_ID_MAX} characters"
            )
        problem = _unstorable(row.external_id)
        if problem:
            raise DocumentImportError(row.line, f"the id {problem}")
        for key, value in row.meta.items():
            problem = _unstorable(key) or _unstorable(value)
            if problem:
                raise DocumentImportError(row.line, f"{key!r} {problem}")
        yield row, resolver.ids(row)


def _finish(writer: _Writer, user: AbstractBaseUser) -> None:
    """Makes the import visible: one short transaction writes the imported annotations
    and marks the import done, which shows all its documents at once."""
    project, job = writer.project, writer.job
    with transaction.atomic():
        # The labels were read at the start and may have been deleted between batches
        # (label_delete cannot see hidden documents); from here on they are held.
        services.labels_hold(project=project, label_ids=writer.label_ids)
        present = set(Label.objects.filter(project=project, pk__in=writer.label_ids)
                      .values_list("pk", flat=True)) if writer.label_ids else set()
        if writer.label_ids - present:
            raise DocumentImportError(
                None, "a label the file uses was deleted during the import; nothing was "
                      "imported, please try again")
        if writer.labelled:
            # An imported label is a finished answer, by nobody here: it names its import
            # (the file, who uploaded it), never the uploader as its annotator. One per
            # labelled document, copied from the final labels its batch stored.
            opts = Document._meta
            qn = connection.ops.quote_name
            rows_insert_select(
                Annotation(annotator=None, labels=[], source=Annotation.Source.IMPORT,
                           import_job=job,
                           guideline_version=selectors.guideline_current(project)),
                {"document_id": qn("id"), "labels": qn("final_labels")},
                f"FROM {qn(opts.db_table)} WHERE {qn(opts.get_field('import_job').column)}"
                f" = %s AND {qn('final_labels')} IS NOT NULL ORDER BY {qn('id')}",
                [job.pk],
            )
        done = DocumentImport.objects.filter(
            pk=job.pk, status=DocumentImport.Status.RUNNING
        ).update(status=DocumentImport.Status.DONE, updated_at=timezone.now())
        if not done:
            raise DocumentImportError(None, "the import was stopped (it looked abandoned); "
                                            "nothing was imported, please try again")


def _discard(job_id: int) -> None:
    """Marks an import failed and deletes its hidden documents, a batch per transaction
    (nothing else can point at them: they were never visible), then the import's row."""
    DocumentImport.objects.filter(pk=job_id).update(status=DocumentImport.Status.FAILED)
    qn, opts = connection.ops.quote_name, Document._meta
    table, job_column = qn(opts.db_table), qn(opts.get_field("import_job").column)
    while True:
        with transaction.atomic():
            ids = list(Document.all_objects.filter(import_job_id=job_id).order_by("id")
                       .values_list("id", flat=True)[:DELETE_BATCH])
            if not ids:
                break
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {table} WHERE {job_column} = %s AND id <= %s",
                               [job_id, ids[-1]])
    DocumentImport.objects.filter(pk=job_id).delete()


def _abandoned_discard() -> None:
    """Cleans up after imports whose process died: RUNNING ones silent for STALE_AFTER,
    and FAILED ones whose cleanup did not finish."""
    DocumentImport.objects.filter(
        status=DocumentImport.Status.RUNNING, updated_at__lt=timezone.now() - STALE_AFTER
    ).update(status=DocumentImport.Status.FAILED)
    for job_id in DocumentImport.objects.filter(
        status=DocumentImport.Status.FAILED
    ).values_list("pk", flat=True):
        _discard(job_id)


def documents_import(
    *,
    project: Project,
    file: IO[bytes],
    fmt: str | None,
    user: AbstractBaseUser,
    text_field: str = "text",
    label_field: str = "label",
    name: str = "",
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Imports every document in `file` (a binary file object, read once, streaming) into
    the project, or nothing: any bad row raises DocumentImportError naming its line, and
    what was written is deleted, never having been visible. `fmt` None detects the format
    from `name` (or the file's own name) and the first bytes, which needs a seekable file.

    Exact duplicates (same text after normalisation, see models.normalise_text), within
    the file or of documents already in the project, are skipped and reported. Rows with
    labels become imported annotations under the current guidelines, with no annotator
    and the import (file name, `user` who uploaded it) recorded, and are final at once.

    Writes in short transactions (see the module's docstring): called inside a
    transaction, it holds that transaction's locks to the end instead.
    """
    started = time.perf_counter()
    if project.task_type == Project.TaskType.SPANS:
        raise DocumentImportError(None, "span projects cannot import documents yet")
    if fmt is None:
        fmt = detect_format(name or str(getattr(file, "name", "") or ""), _head(file))
    parser = PARSERS.get(fmt)
    if parser is None:
        raise DocumentImportError(
            None, f"unknown format {fmt!r}; choose one of {', '.join(PARSERS)}"
        )
    _abandoned_discard()
    file_name = PurePath(name or str(getattr(file, "name", "") or "")).name
    job = DocumentImport.objects.create(
        project=project, created_by=user, file_name=file_name[:255]
    )
    writer = _Writer(project=project, job=job)
    try:
        try:
            with transaction.atomic():
                # A label delete under way finishes first, and its label is then unknown.
                services.labels_hold(project=project)
                resolver = _LabelResolver(project)
            rows = _checked(parser(file, text_field=text_field, label_field=label_field),
                            resolver)
            batch: list[tuple[ImportRow, list[int] | None]] = []
            for item in rows:
                batch.append(item)
                if len(batch) >= batch_size:
                    writer.write(batch)
                    batch = []
            if batch:
                writer.write(batch)
            if writer.rows == 0:
                raise DocumentImportError(None, "the file holds no documents")
            _finish(writer, user)
        except IntegrityError:
            # Every batch was checked against the database first, hidden rows included:
            # only another import inserting the same texts at the same moment gets here.
            raise DocumentImportError(None, _CONCURRENT) from None
    except BaseException:
        # Should the cleanup fail too (the database gone), the original error is the one
        # to report; the next import finishes the cleanup (_abandoned_discard).
        with contextlib.suppress(DatabaseError):
            _discard(job.pk)
        raise
    if writer.created >= ANALYZE_AFTER_ROWS:
        table_analyze(Document, Annotation)
    return ImportReport(
        fmt=fmt,
        created=writer.created,
        labelled=writer.labelled,
        duplicates=writer.duplicates_in_file + writer.duplicates_existing,
        duplicates_in_file=writer.duplicates_in_file,
        duplicates_existing=writer.duplicates_existing,
        duplicate_lines=writer.duplicate_lines,
        duplicates_labelled=writer.duplicates_labelled,
        seconds=time.perf_counter() - started,
    )
