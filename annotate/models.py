"""Labelling projects and everything annotators touch: tables and single-row behaviour only.

Writes that touch several rows live in services.py, reads in selectors.py.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

from django.conf import settings
from django.db import models

from annotate.markup import render_markdown
from annotate.tasks import AnswerTask, answer_task_for

_WHITESPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """The form two texts must share to count as exact duplicates: NFC, case-folded,
    whitespace collapsed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip().casefold()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


class Project(models.Model):
    class TaskType(models.TextChoices):
        SINGLE_LABEL = "single_label", "Single-label text classification"
        MULTI_LABEL = "multi_label", "Multi-label text classification"
        # Span/NER projects will annotate character offsets; Annotation.spans is reserved.
        SPANS = "spans", "Span labelling (NER) - not yet available"

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    task_type = models.CharField(
        max_length=20, choices=TaskType.choices, default=TaskType.SINGLE_LABEL
    )
    overlap = models.PositiveSmallIntegerField(
        default=1, help_text="How many annotators label each document."
    )
    annotators_see_others = models.BooleanField(
        default=False, help_text="Annotators may see other annotators' labels."
    )
    # External ids often carry the answer (a corpus's "sport/409"): off unless the lead
    # knows they do not.
    annotators_see_external_ids = models.BooleanField(
        default=False, help_text="Annotators see each document's external id."
    )
    text_direction = models.CharField(
        max_length=3, choices=[("ltr", "Left to right"), ("rtl", "Right to left")], default="ltr"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def task(self) -> AnswerTask:
        """What an answer is in this project and how it votes, imports, exports, renders."""
        return answer_task_for(self.task_type)


class Membership(models.Model):
    class Role(models.TextChoices):
        LEAD = "lead", "Lead"
        REVIEWER = "reviewer", "Reviewer"
        ANNOTATOR = "annotator", "Annotator"
        VIEWER = "viewer", "Viewer"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.project}"

    @property
    def can_annotate(self) -> bool:
        return self.role in {self.Role.LEAD, self.Role.REVIEWER, self.Role.ANNOTATOR}

    @property
    def is_lead(self) -> bool:
        return self.role == self.Role.LEAD


HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class Label(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    colour = models.CharField(max_length=7, default="#4c72b0")
    hotkey = models.CharField(max_length=1, blank=True)
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="label_name_unique"),
            models.UniqueConstraint(
                fields=["project", "hotkey"],
                condition=~models.Q(hotkey=""),
                name="label_hotkey_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class GuidelineVersion(models.Model):
    """One saved state of a project's Markdown guidelines. Never edited: an edit is a new row."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="guidelines")
    version = models.PositiveIntegerField()
    text = models.TextField(blank=True)
    # `text` rendered and sanitised (annotate.markup), stored so that pages never render.
    html = models.TextField(blank=True, editable=False)
    note = models.CharField(max_length=300, blank=True, help_text="What changed and why.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="guideline_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.project} guidelines v{self.version}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Here rather than in the service: the HTML must follow the text whoever writes
        # the row (the service, the admin, a shell), or the pages would show stale rules.
        update_fields = kwargs.get("update_fields")
        if update_fields is None or "text" in update_fields:
            self.html = render_markdown(self.text)
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "html"}
        super().save(*args, **kwargs)


class DocumentImport(models.Model):
    """One import of a file into a project, while it runs and after.

    An import writes its documents in short transactions (so annotators keep writing
    meanwhile) and they stay hidden until it finishes: `Document.objects` leaves out the
    documents of any import that is not DONE, so turning this one row to DONE shows them
    all at once, and a failed import shows none before its rows are deleted."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    # The uploaded file's name (no folders): what an imported label says it came from.
    # Empty for documents sent in an API request's body.
    file_name = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Touched by every batch: a RUNNING import silent for long is one whose process died.
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Import {self.pk} into project {self.project_id} ({self.status})"


class VisibleDocumentManager(models.Manager["Document"]):
    """Documents of finished imports only (and those written by other means). Every read
    and write of documents goes through it but the importer's own, which uses
    `Document.all_objects`; related rows (answers, predictions) only ever point at
    visible documents, since they are written through this manager's results."""

    def get_queryset(self) -> models.QuerySet[Document]:
        unfinished = DocumentImport.objects.exclude(status=DocumentImport.Status.DONE)
        return super().get_queryset().exclude(import_job__in=unfinished.values("pk"))


class Document(models.Model):
    class Split(models.TextChoices):
        POOL = "pool", "Pool"
        HOLDOUT = "holdout", "Holdout"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="documents")
    text = models.TextField()
    text_hash = models.CharField(max_length=64)
    external_id = models.CharField(max_length=200, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    split = models.CharField(max_length=10, choices=Split.choices, default=Split.POOL)
    # A random key drawn at import: the queue walks documents in this order, which is a
    # random order that an index serves (ORDER BY RANDOM() would scan the whole pool).
    rand = models.FloatField()
    # How many annotation slots are taken: finished annotations plus live hand-outs. The
    # queue's hot query filters on it; services keep it in step under a row lock.
    slots_taken = models.PositiveSmallIntegerField(default=0)
    n_annotations = models.PositiveSmallIntegerField(default=0)
    # The label(s) training and export use: set once `overlap` annotators agree or a lead
    # adjudicates; a list of Label ids (one for single-label projects). Null = not final.
    final_labels = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The import that wrote the document (null: written otherwise); hidden until it is done.
    import_job = models.ForeignKey(
        DocumentImport, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )

    # The first manager is the default one: related managers (project.documents) and the
    # admin see visible documents only too.
    objects = VisibleDocumentManager()
    all_objects: models.Manager[Document] = models.Manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "text_hash"], name="document_unique_text")
        ]
        indexes = [
            models.Index(fields=["project", "slots_taken", "rand"], name="doc_queue_idx"),
            models.Index(fields=["project", "split"], name="doc_split_idx"),
            models.Index(fields=["project", "external_id"], name="doc_external_idx"),
        ]

    def __str__(self) -> str:
        return f"Document {self.pk}"


class Assignment(models.Model):
    """A document handed to one annotator: the row that stops over-assignment."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Handed out"
        DONE = "done", "Annotated"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="assignments")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # The lead who handed this document to this annotator; null when the queue did. An
    # undo never returns a lead's hand-out to the queue.
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["document", "user"], name="one_assignment_per_user")
        ]
        indexes = [
            models.Index(fields=["project", "user", "status"], name="assignment_user_idx"),
            models.Index(fields=["project", "status", "expires_at"], name="assignment_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"Document {self.document_id} -> user {self.user_id} ({self.status})"


class Annotation(models.Model):
    class Source(models.TextChoices):
        HUMAN = "human", "Annotator"
        IMPORT = "import", "Imported"

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="annotations")
    # Null for an imported label: nobody answered it here. Who uploaded the file and its
    # name are on `import_job`; the label is not the uploader's answer, so it must not be
    # shown, exported or counted as theirs.
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="annotations",
    )
    labels = models.JSONField(help_text="List of Label ids.")
    # Reserved for span projects: [{"start": int, "end": int, "label": id}, ...].
    spans = models.JSONField(null=True, blank=True)
    guideline_version = models.ForeignKey(
        GuidelineVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.HUMAN)
    import_job = models.ForeignKey(
        DocumentImport, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["document", "annotator"], name="one_annotation_each")
        ]
        indexes = [models.Index(fields=["annotator", "created_at"], name="annotation_user_idx")]

    def __str__(self) -> str:
        if self.annotator_id is None:
            return f"Imported annotation of document {self.document_id}"
        return f"Annotation of document {self.document_id} by user {self.annotator_id}"

    @property
    def imported_from(self) -> str:
        """The file an imported label came from ("" when unknown or not imported). Reads
        `import_job`: select it with the annotation when listing many."""
        if self.source != self.Source.IMPORT or self.import_job is None:
            return ""
        return self.import_job.file_name

    @property
    def author(self) -> str:
        """Who gave this answer, as pages and exports name it: the annotator's username,
        or "imported" with the file's name."""
        if self.annotator_id is not None and self.source == self.Source.HUMAN:
            return self.annotator.get_username()
        name = self.imported_from
        return f"imported ({name})" if name else "imported"


class Flag(models.Model):
    """An annotator's note that a document is broken, ambiguous or needs the lead."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="flags")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    comment = models.TextField()
    resolved = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Flag on document {self.document_id}"


class Adjudication(models.Model):
    """A lead's or reviewer's decision on a document's final label(s), with the reason.

    Never edited: a second decision is a new row, so the history of who overruled whom
    stays readable. The latest row is the one Document.final_labels follows."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="adjudications")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    labels = models.JSONField(help_text="The final Label ids decided.")
    # What the document's final labels were before (null: not final), for the history.
    previous_labels = models.JSONField(null=True, blank=True)
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["document", "created_at"], name="adjudication_doc_idx")]

    def __str__(self) -> str:
        return f"Adjudication of document {self.document_id} by user {self.decided_by_id}"
