"""Reads: what a user may see, what comes next in the queue, how far a project has got."""

from __future__ import annotations

import difflib
import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Count,
    Exists,
    F,
    FloatField,
    JSONField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
from django.db.models.fields.json import KeyTransform
from django.http import Http404
from django.utils import timezone

from annotate.models import (
    Adjudication,
    Annotation,
    Assignment,
    Document,
    Flag,
    GuidelineVersion,
    Label,
    Membership,
    Project,
)
from annotate.providers import QueueSettings, prediction_source

# Project-wide figures on the hand-out path are cached this long (seconds).
CACHE_TTL_SECONDS = 5


def membership_for(user: AbstractBaseUser, project_id: int) -> Membership:
    """The user's membership of the project, or Http404: a stranger must not learn that the
    project exists, so there is no 403 for non-members."""
    if not user.is_authenticated:
        raise Http404("No such project")
    try:
        return Membership.objects.select_related("project").get(
            project_id=project_id, user=user
        )
    except Membership.DoesNotExist:
        raise Http404("No such project") from None


def projects_for(user: AbstractBaseUser) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user=user)
        .select_related("project")
        .order_by("-project__created_at")
    )


def labels_of(project: Project) -> list[Label]:
    return list(project.labels.all())


def documents_with_meta(documents: QuerySet[Document], pairs: Iterable[tuple[str, str]]
                        ) -> QuerySet[Document]:
    """`documents` whose metadata holds `value` under `key` for every (key, value) pair.
    The key is taken literally (meta__<key> would parse "__" and lookup names in it); a
    value that reads as a JSON number or boolean matches that too ("n=7")."""
    for n, (key, value) in enumerate(pairs):
        alias = f"meta_filter_{n}"
        documents = documents.alias(**{alias: KeyTransform(key, "meta")})
        match = Q(**{alias: value})
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, int | float | bool):
            match |= Q(**{alias: parsed})
        documents = documents.filter(match)
    return documents


def guideline_version_get(project: Project, version: int) -> GuidelineVersion:
    """Guideline version `version` of the project, with its author; 404 when none."""
    shown = GuidelineVersion.objects.select_related("created_by").filter(
        project=project, version=version).first()
    if shown is None:
        raise Http404("No such guideline version")
    return shown


def annotations_visible(membership: Membership, user: AbstractBaseUser, *,
                        annotator: str | None = None, document_id: int | None = None
                        ) -> QuerySet[Annotation]:
    """The project's answers `user` may read, oldest first: everyone's, except for an
    annotator of a project that keeps annotators to their own. Optionally one annotator's
    (by username) or one document's."""
    project = membership.project
    annotations = Annotation.objects.filter(document__project=project).select_related(
        "annotator", "guideline_version", "import_job").order_by("id")
    if membership.role == Membership.Role.ANNOTATOR and not project.annotators_see_others:
        annotations = annotations.filter(annotator=user)
    if annotator:
        annotations = annotations.filter(annotator__username=annotator)
    if document_id is not None:
        annotations = annotations.filter(document_id=document_id)
    return annotations


def guideline_current(project: Project) -> GuidelineVersion | None:
    return project.guidelines.order_by("-version").first()


def guideline_diff(older: GuidelineVersion | None, newer: GuidelineVersion) -> list[str]:
    """Unified diff lines from one guideline version to another (older None = empty)."""
    before = older.text.splitlines() if older else []
    return list(
        difflib.unified_diff(
            before,
            newer.text.splitlines(),
            fromfile=f"v{older.version}" if older else "(none)",
            tofile=f"v{newer.version}",
            lineterm="",
        )
    )


def current_assignment(user: AbstractBaseUser, project: Project) -> Assignment | None:
    """The document this user was handed and has not answered yet, if still reserved."""
    return (
        Assignment.objects.filter(
            project=project,
            user=user,
            status=Assignment.Status.ACTIVE,
            expires_at__gt=timezone.now(),
        )
        .select_related("document")
        .order_by("-created_at")
        .first()
    )


def queue_candidates(
    user: AbstractBaseUser, project: Project, *, slots_taken: int, round_id: int | None = None,
    by_rank: bool = False,
) -> QuerySet:
    """Documents that still need an annotator and that this user has never been handed,
    among those with exactly `slots_taken` slots taken, in queue order: the given round's
    batch selection (`by_rank`: the documents the strategy picked, in pick order), or its
    per-document scores (highest first), or the random import order when `round_id` is
    None.

    Asking per slot count lets the database walk an index in order and stop at the first
    row ((project, slots_taken, rand), or (round, rank) / (round, score) on the
    predictions, joined by the prediction source) instead of sorting the pool on every
    request.
    """
    seen_by_user = Assignment.objects.filter(document=OuterRef("pk"), user=user)
    documents = (
        # A final document never returns, even if the lead later raises the overlap: its
        # label (imported, agreed or adjudicated) stands, and a labelled holdout stays out.
        Document.objects.filter(project=project, slots_taken=slots_taken,
                                final_labels__isnull=True)
        .filter(~Exists(seen_by_user))
    )
    if round_id is None:
        return documents.order_by("rand")
    return prediction_source().order_by_round(documents, round_id=round_id, by_rank=by_rank)


@dataclass(frozen=True)
class QueueOrder:
    """One way to look for the next document: a round's batch selection (`by_rank`), its
    per-document scores, or (round_id None) the random import order."""

    round_id: int | None
    by_rank: bool = False


@dataclass(frozen=True)
class QueuePlan:
    """How a project's queue is ordered right now: by the latest finished round's batch
    selection, then its scores (None before any round), with a share of random picks for
    exploration."""

    round_id: int | None
    random_share: float
    # Whether annotators see the round's suggestion (LearnerSettings.show_suggestions), and
    # from which calibrated confidence; cached with the plan so the annotator page pays
    # nothing for it when it is off.
    show_suggestions: bool = False
    suggestion_threshold: float = 0.0

    def orderings(self, rng: random.Random) -> list[QueueOrder]:
        """The orders to try, in turn, for one hand-out: the strategy's selected batch,
        then the round's scores, then random order for documents the round did not score
        (imported after it); an exploration pick uses the random order alone."""
        if self.round_id is None or rng.random() < self.random_share:
            return [QueueOrder(None)]
        return [QueueOrder(self.round_id, by_rank=True), QueueOrder(self.round_id),
                QueueOrder(None)]


def queue_plan(project: Project) -> QueuePlan:
    key = f"labelwise:queue-plan:{project.pk}"
    plan = cache.get(key)
    if plan is None:
        source = prediction_source()
        # No settings row yet: no random picks, no suggestions.
        lead = source.queue_settings(project) or QueueSettings()
        plan = QueuePlan(round_id=source.latest_round_id(project),
                         random_share=lead.random_share,
                         show_suggestions=lead.show_suggestions,
                         suggestion_threshold=lead.suggestion_threshold)
        cache.set(key, plan, CACHE_TTL_SECONDS)
    return plan


def queue_plan_forget(project_id: int) -> None:
    """A finished round or a settings change takes effect at the next hand-out."""
    cache.delete(f"labelwise:queue-plan:{project_id}")


def next_item_for(user: AbstractBaseUser, project: Project) -> Document | None:
    """The next document this user should label, without reserving it (see
    services.assignment_next for the hand-out). Documents others have started come first,
    so overlapping annotations complete and become final sooner."""
    for order in queue_plan(project).orderings(random.Random()):
        for slots in range(project.overlap - 1, -1, -1):
            document = queue_candidates(
                user, project, slots_taken=slots, round_id=order.round_id,
                by_rank=order.by_rank,
            ).first()
            if document is not None:
                return document
    return None


def project_counts(project: Project) -> dict[str, int]:
    """Documents in the project, how many have a final label, how many still have open
    slots. Counting a 100,000-document pool costs tens of milliseconds, too much for every
    submit-and-next, so the figures are cached for a few seconds per project."""
    key = f"labelwise:project-counts:{project.pk}:{project.overlap}"
    counts = cache.get(key)
    if counts is None:
        counts = Document.objects.filter(project=project).aggregate(
            n=Count("id"),
            final=Count("id", filter=Q(final_labels__isnull=False)),
            open=Count(
                "id", filter=Q(slots_taken__lt=project.overlap, final_labels__isnull=True)
            ),
        )
        cache.set(key, counts, CACHE_TTL_SECONDS)
    return counts


@dataclass(frozen=True)
class Progress:
    done_today: int
    done_total: int
    left_in_queue: int
    documents: int
    final: int


def project_progress(user: AbstractBaseUser, project: Project) -> Progress:
    """Counts for the annotator's progress bar. `left_in_queue` counts open annotation
    slots this user could still fill (documents not finished and not yet seen by them)."""
    start_of_day = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = Annotation.objects.filter(document__project=project, annotator=user)
    counts = mine.aggregate(
        total=Count("id"), today=Count("id", filter=Q(created_at__gte=start_of_day))
    )
    docs = project_counts(project)
    seen_open = (
        Assignment.objects.filter(project=project, user=user)
        .exclude(status=Assignment.Status.ACTIVE)
        .filter(document__slots_taken__lt=project.overlap)
        .count()
    )
    return Progress(
        done_today=counts["today"],
        done_total=counts["total"],
        left_in_queue=max(docs["open"] - seen_open, 0),
        documents=docs["n"],
        final=docs["final"],
    )


def label_counts(project: Project) -> dict[int, int]:
    """Final-label counts per Label id (multi-label documents count once per label)."""
    counts: dict[int, int] = {label.id: 0 for label in project.labels.all()}
    finals = Document.objects.filter(project=project, final_labels__isnull=False).values_list(
        "final_labels", flat=True
    )
    for labels in finals.iterator(chunk_size=5000):
        for label_id in labels:
            counts[label_id] = counts.get(label_id, 0) + 1
    return counts


# --- the lead's pages ---


@dataclass(frozen=True)
class ProjectStats:
    documents: int
    annotated: int  # documents with at least one answer
    final: int  # documents whose label is settled (agreement, adjudication or import)
    holdout: int
    left_in_queue: int  # documents that still have an open annotation slot
    annotations: int


def project_stats(*, project: Project) -> ProjectStats:
    """Project-wide counts for the overview: one aggregate over the documents table (the
    denormalised counters on Document make this a single scan, no join)."""
    docs = Document.objects.filter(project=project).aggregate(
        n=Count("id"),
        annotated=Count("id", filter=Q(n_annotations__gt=0)),
        final=Count("id", filter=Q(final_labels__isnull=False)),
        holdout=Count("id", filter=Q(split=Document.Split.HOLDOUT)),
        open=Count(
            "id", filter=Q(slots_taken__lt=project.overlap, final_labels__isnull=True)
        ),
    )
    annotations = Annotation.objects.filter(document__project=project).count()
    return ProjectStats(
        documents=docs["n"],
        annotated=docs["annotated"],
        final=docs["final"],
        holdout=docs["holdout"],
        left_in_queue=docs["open"],
        annotations=annotations,
    )


def flags_open(*, project: Project, limit: int = 50) -> list[Flag]:
    return list(
        Flag.objects.filter(document__project=project, resolved=False)
        .select_related("document", "user")
        .order_by("-created_at")[:limit]
    )


def guideline_history(*, project: Project) -> list[tuple[GuidelineVersion, int]]:
    """Every guideline version, newest first, with how many annotations were made under it."""
    used = dict(
        Annotation.objects.filter(guideline_version__project=project)
        .values_list("guideline_version")
        .annotate(n=Count("id"))
        .values_list("guideline_version", "n")
    )
    versions = project.guidelines.select_related("created_by").order_by("-version")
    return [(version, used.get(version.pk, 0)) for version in versions]


def _label_q(label_id: int, field: str = "final_labels") -> Q:
    # A label list (final labels, an answer, a decision) holds Label ids. PostgreSQL answers
    # "contains" from jsonb; SQLite has no JSON containment in Django, so match the id
    # inside the stored JSON text ("[3, 12]"), bounded so 3 does not match 13.
    if connection.features.supports_json_field_contains:
        return Q(**{f"{field}__contains": [label_id]})
    return Q(**{f"{field}__regex": rf"[\[ ]{label_id}[,\]]"})


def label_uses(*, label: Label) -> list[str]:
    """What in the label's project still names it, as plural nouns for a message: any of
    "annotations", "documents' final labels", "adjudications" (a decision's labels or the
    labels it replaced). Empty when the label can go."""
    project_id = label.project_id
    checks = [
        ("annotations", Annotation.objects.filter(
            _label_q(label.pk, "labels"), document__project_id=project_id)),
        ("documents' final labels", Document.objects.filter(
            _label_q(label.pk), project_id=project_id)),
        ("adjudications", Adjudication.objects.filter(
            _label_q(label.pk, "labels") | _label_q(label.pk, "previous_labels"),
            document__project_id=project_id)),
    ]
    return [noun for noun, rows in checks if rows.exists()]


DOCUMENT_STATUSES = {
    "unlabelled": "Unlabelled",
    "labelled": "Labelled",
    "holdout": "In holdout",
    "flagged": "Flagged",
    "disagreement": "Annotators disagree",
}

# Orders of the documents list; the model's columns come from the latest finished round,
# and documents it did not score sort last whichever the direction.
DOCUMENT_SORTS = {
    "id": "Import order",
    "confidence": "Model confidence, lowest first",
    "-confidence": "Model confidence, highest first",
    "-score": "Strategy score, highest first",
    "predicted": "Predicted label",
    "disagreement": "Disagreements first",
}


def _disagreeing_ids(project: Project) -> QuerySet:
    return review_disagreements(project=project, include_decided=True).order_by()


def document_list(
    *, project: Project, status: str = "", label_id: int | None = None, q: str = "",
    predicted_label_id: int | None = None, min_confidence: float | None = None,
    max_confidence: float | None = None, sort: str = "id",
) -> QuerySet[Document]:
    """Documents of a project filtered and sorted for the lead's list. Each row carries
    `flagged` (an unresolved flag exists), `disagreement` (its answers differ) and the
    latest finished round's `predicted_labels`, `confidence` and `score` (None where the
    round did not score it); the answer count is the stored counter. The round's columns
    are one LEFT JOIN on its predictions (the prediction source's `with_round_columns`),
    not a subquery per row."""
    open_flags = Flag.objects.filter(document=OuterRef("pk"), resolved=False)
    disagreeing = _disagreeing_ids(project)
    documents = Document.objects.filter(project=project)
    if status == "unlabelled":
        documents = documents.filter(final_labels__isnull=True)
    elif status == "labelled":
        documents = documents.filter(final_labels__isnull=False)
    elif status == "holdout":
        documents = documents.filter(split=Document.Split.HOLDOUT)
    elif status == "flagged":
        documents = documents.filter(Exists(open_flags))
    elif status == "disagreement":
        documents = documents.filter(pk__in=disagreeing)
    if label_id is not None:
        documents = documents.filter(_label_q(label_id))
    if q:
        documents = documents.filter(text__icontains=q)
    round_id = latest_done_round_id(project)
    if round_id is not None:
        documents = prediction_source().with_round_columns(documents, round_id=round_id)
        if predicted_label_id is not None:
            documents = documents.filter(_label_q(predicted_label_id, "predicted_labels"))
        if min_confidence is not None:
            documents = documents.filter(confidence__gte=min_confidence)
        if max_confidence is not None:
            documents = documents.filter(confidence__lte=max_confidence)
    else:
        documents = documents.annotate(
            predicted_labels=Value(None, output_field=JSONField()),
            confidence=Value(None, output_field=FloatField()),
            score=Value(None, output_field=FloatField()),
        )
        if predicted_label_id is not None or min_confidence is not None or (
            max_confidence is not None
        ):
            documents = documents.none()  # no model yet: nothing matches a model filter
    documents = documents.annotate(
        flagged=Exists(open_flags), disagreement=Exists(disagreeing.filter(pk=OuterRef("pk")))
    )
    by = {
        "confidence": [F("confidence").asc(nulls_last=True), "id"],
        "-confidence": [F("confidence").desc(nulls_last=True), "id"],
        "-score": [F("score").desc(nulls_last=True), "id"],
        "predicted": [F("predicted_labels").asc(nulls_last=True), "id"],
        "disagreement": [F("disagreement").desc(), "id"],
    }
    return documents.order_by(*by.get(sort, ["id"]))


def holdout_label_counts(*, project: Project) -> dict[str, int]:
    """Final-label counts among the held-out documents, by label name."""
    names = dict(project.labels.values_list("id", "name"))
    counts: Counter = Counter()
    finals = Document.objects.filter(
        project=project, split=Document.Split.HOLDOUT, final_labels__isnull=False
    ).values_list("final_labels", flat=True)
    for labels in finals.iterator(chunk_size=5000):
        for label_id in labels:
            counts[names.get(label_id, str(label_id))] += 1
    return dict(counts)


def document_meta_keys(*, project: Project, sample: int = 500) -> list[str]:
    """Metadata keys seen in a sample of the project's documents (grouping-field choices)."""
    keys: set[str] = set()
    for meta in Document.objects.filter(project=project).values_list("meta", flat=True)[:sample]:
        if isinstance(meta, dict):
            keys.update(str(key) for key in meta)
    return sorted(keys)


# --- model suggestions on the annotator page ---


@dataclass(frozen=True)
class Suggestion:
    """The latest finished round's prediction for a document, as an annotator sees it."""

    labels: list[Label]
    confidence: float

    @property
    def label_ids(self) -> list[int]:
        return [label.pk for label in self.labels]

    @property
    def percent(self) -> int:
        return round(100 * self.confidence)


def suggestion_for(
    project: Project, document: Document | None, labels: list[Label] | None = None
) -> Suggestion | None:
    """What the model suggests for `document`, or None: when suggestions are off, before
    any round, for documents the round did not score, below the lead's confidence
    threshold, and never for a holdout document
    (an annotator nudged by the model there would make the evaluation flatter itself)."""
    if document is None or document.split == Document.Split.HOLDOUT:
        return None
    plan = queue_plan(project)
    if not plan.show_suggestions or plan.round_id is None:
        return None
    row = (
        prediction_source().predictions(round_id=plan.round_id).filter(document=document)
        .values_list("labels", "confidence").first()
    )
    # The round's confidences are calibrated, so the lead's threshold reads as "right at
    # least this often": below it a suggestion would nudge more than it helps.
    if row is None or float(row[1]) < plan.suggestion_threshold:
        return None
    by_id = {label.pk: label for label in (labels if labels is not None else labels_of(project))}
    suggested = [by_id[label_id] for label_id in row[0] if label_id in by_id]
    return Suggestion(labels=suggested, confidence=float(row[1])) if suggested else None


# --- review queues: disagreements, likely label errors, uncertain labels, flags ---

LABEL_ERROR_THRESHOLD = 0.8


def latest_done_round_id(project: Project) -> int | None:
    return prediction_source().latest_round_id(project)


def _undecided(documents: QuerySet, *, include_decided: bool, field: str = "pk") -> QuerySet:
    if include_decided:
        return documents
    return documents.filter(~Exists(Adjudication.objects.filter(document=OuterRef(field))))


def review_disagreements(*, project: Project, include_decided: bool = False) -> QuerySet:
    """Documents whose annotators did not all give the same answer (at least two answers,
    at least two distinct ones), ties (no final label) first. Answers are stored as sorted
    id lists, so equal answers are equal JSON values."""
    documents = (
        Document.objects.filter(project=project, n_annotations__gte=2)
        .annotate(n_distinct=Count("annotations__labels", distinct=True))
        .filter(n_distinct__gte=2)
    )
    return _undecided(documents, include_decided=include_decided).order_by(
        F("final_labels").asc(nulls_first=True), "id"
    ).values_list("id", flat=True)


def _labelled_predictions(project: Project, round_id: int) -> QuerySet:
    return prediction_source().predictions(round_id=round_id).filter(
        document__project=project, document__split=Document.Split.POOL,
        document__final_labels__isnull=False,
    )


def review_label_errors(
    *,
    project: Project,
    threshold: float = LABEL_ERROR_THRESHOLD,
    include_decided: bool = False,
) -> list[int]:
    """Ids of labelled training-side documents whose final label the latest round's model
    contradicts with confidence >= threshold, most confident first: the likeliest label
    errors. The label comparison runs here, not in SQL, because the two JSON lists need
    not share an order; the rows are (id, two short lists, a float) per candidate."""
    round_id = latest_done_round_id(project)
    if round_id is None:
        return []
    rows = _undecided(
        _labelled_predictions(project, round_id).filter(confidence__gte=threshold),
        include_decided=include_decided, field="document_id",
    ).order_by("-confidence", "document_id").values_list(
        "document_id", "labels", "document__final_labels"
    )
    return [
        doc_id for doc_id, predicted, final in rows.iterator(chunk_size=5000)
        if sorted(predicted or []) != sorted(final or [])
    ]


def review_uncertain(*, project: Project, include_decided: bool = False) -> QuerySet:
    """Ids of labelled training-side documents, the model's least confident first."""
    round_id = latest_done_round_id(project)
    if round_id is None:
        return Document.objects.none().values_list("id", flat=True)
    return _undecided(
        _labelled_predictions(project, round_id),
        include_decided=include_decided, field="document_id",
    ).order_by("confidence", "document_id").values_list("document_id", flat=True)


def review_flagged(*, project: Project) -> QuerySet:
    """Ids of documents with an open flag, the most recently flagged first."""
    return (
        Document.objects.filter(project=project, flags__resolved=False)
        .annotate(last_flag=Max("flags__created_at"))
        .order_by("-last_flag", "id").values_list("id", flat=True)
    )


@dataclass(frozen=True)
class Answer:
    annotator: str
    labels: list[Label]


@dataclass(frozen=True)
class ReviewItem:
    """One document on a review page, with everything needed to decide it."""

    document: Document
    answers: list[Answer]
    final: list[Label]
    predicted: list[Label]
    confidence: float | None
    decisions: list[Adjudication]
    flags: list[Flag]

    @property
    def percent(self) -> int | None:
        return None if self.confidence is None else round(100 * self.confidence)


def review_items(*, project: Project, document_ids: list[int]) -> list[ReviewItem]:
    """The review rows for one page of document ids, in that order (a few queries per
    page, none per document)."""
    by_id = {label.pk: label for label in labels_of(project)}

    def names(ids: list[int] | None) -> list[Label]:
        return [by_id[i] for i in ids or [] if i in by_id]

    documents = Document.objects.filter(project=project).in_bulk(document_ids)
    answers: dict[int, list[Answer]] = {i: [] for i in document_ids}
    for annotation in (
        Annotation.objects.filter(document_id__in=document_ids)
        .select_related("annotator", "import_job").order_by("id")
    ):
        answers[annotation.document_id].append(
            Answer(annotator=annotation.author, labels=names(annotation.labels))
        )
    predicted: dict[int, tuple[list[int], float]] = {}
    round_id = latest_done_round_id(project)
    if round_id is not None:
        for doc_id, labels, confidence in prediction_source().predictions(
            round_id=round_id
        ).filter(document_id__in=document_ids).values_list("document_id", "labels",
                                                            "confidence"):
            predicted[doc_id] = (labels, confidence)
    decisions: dict[int, list[Adjudication]] = {i: [] for i in document_ids}
    for decision in Adjudication.objects.filter(document_id__in=document_ids).select_related(
        "decided_by"
    ):
        decisions[decision.document_id].append(decision)
    flags: dict[int, list[Flag]] = {i: [] for i in document_ids}
    for flag in Flag.objects.filter(document_id__in=document_ids, resolved=False).select_related(
        "user"
    ):
        flags[flag.document_id].append(flag)
    items = []
    for doc_id in document_ids:
        document = documents.get(doc_id)
        if document is None:
            continue
        labels, confidence = predicted.get(doc_id, ([], None))
        items.append(ReviewItem(
            document=document, answers=answers[doc_id], final=names(document.final_labels),
            predicted=names(labels), confidence=confidence, decisions=decisions[doc_id],
            flags=flags[doc_id],
        ))
    return items


def review_counts(*, project: Project, threshold: float = LABEL_ERROR_THRESHOLD) -> dict[str, int]:
    """How many documents wait in each review queue (the review pages' tabs)."""
    return {
        "disagreements": review_disagreements(project=project).count(),
        "label_errors": len(review_label_errors(project=project, threshold=threshold)),
        "uncertain": review_uncertain(project=project).count(),
        "flags": review_flagged(project=project).count(),
    }


def meta_for_annotators(document: Document | None, labels: Iterable[Label]) -> dict[str, Any]:
    """The metadata an annotator may read: never a key starting with "_" (for programs),
    nor a field whose value is a label's name (a corpus's gold label would give the
    answer away)."""
    if document is None or not document.meta:
        return {}
    names = {label.name.casefold() for label in labels}
    return {k: v for k, v in document.meta.items()
            if not str(k).startswith("_") and str(v).strip().casefold() not in names}


# --- one document's page: everything that happened to it ---


@dataclass(frozen=True)
class HistoryAnswer:
    annotation: Annotation
    author: str
    labels: list[Label]


@dataclass(frozen=True)
class HistoryPrediction:
    """One round's view of the document: its predicted label(s), calibrated confidence,
    the strategy's score (None once the document was labelled) and batch rank."""

    round_number: int
    labels: list[Label]
    confidence: float
    score: float | None
    rank: int | None

    @property
    def percent(self) -> int:
        return round(100 * self.confidence)


@dataclass(frozen=True)
class DocumentHistory:
    document: Document
    final: list[Label]
    answers: list[HistoryAnswer]
    decisions: list[tuple[Adjudication, list[Label], list[Label]]]  # (row, labels, previous)
    predictions: list[HistoryPrediction]  # newest round first
    flags: list[Flag]
    holders: list[str]  # who holds it right now, unanswered


def document_history(*, project: Project, document_id: int, max_rounds: int = 50
                     ) -> DocumentHistory:
    """Who labelled the document what and under which guideline version, the decisions
    on it, every round's prediction (the latest `max_rounds`), its flags and who holds it
    now. Raises Http404 for a document outside the project."""
    document = Document.objects.filter(project=project, pk=document_id).first()
    if document is None:
        raise Http404("No such document")
    by_id = {label.pk: label for label in labels_of(project)}

    def names(ids: list[int] | None) -> list[Label]:
        return [by_id[i] for i in ids or [] if i in by_id]

    answers = [
        HistoryAnswer(annotation=a, author=a.author, labels=names(a.labels))
        for a in Annotation.objects.filter(document=document)
        .select_related("annotator", "import_job", "guideline_version").order_by("created_at", "id")
    ]
    decisions = [
        (d, names(d.labels), names(d.previous_labels))
        for d in Adjudication.objects.filter(document=document).select_related("decided_by")
    ]
    rows = prediction_source().document_predictions(document, limit=max_rounds)
    predictions = [
        HistoryPrediction(round_number=number, labels=names(labels), confidence=confidence,
                          score=score, rank=rank)
        for number, labels, confidence, score, rank in rows
    ]
    holders = list(
        Assignment.objects.filter(document=document, status=Assignment.Status.ACTIVE,
                                  expires_at__gt=timezone.now())
        .order_by("user__username").values_list("user__username", flat=True)
    )
    return DocumentHistory(
        document=document, final=names(document.final_labels), answers=answers,
        decisions=decisions, predictions=predictions,
        flags=list(Flag.objects.filter(document=document).select_related("user")),
        holders=holders,
    )


def annotator_usernames(*, project: Project) -> list[str]:
    """Usernames of the members who may annotate, for a lead to hand documents to."""
    return list(
        Membership.objects.filter(
            project=project, role__in=[Membership.Role.LEAD, Membership.Role.REVIEWER,
                                       Membership.Role.ANNOTATOR],
            user__is_active=True,
        ).order_by("user__username").values_list("user__username", flat=True)
    )
