"""Reads: what a user may see, what comes next in the queue, how far a project has got."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from annotate.models import (
    Annotation,
    Assignment,
    Document,
    GuidelineVersion,
    Label,
    Membership,
    Project,
)


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


def queue_candidates(user: AbstractBaseUser, project: Project, *, slots_taken: int) -> QuerySet:
    """Documents that still need an annotator and that this user has never been handed,
    among those with exactly `slots_taken` slots taken, in queue order.

    Asking per slot count lets the database walk the (project, slots_taken, rand) index in
    order and stop at the first row, instead of sorting the pool on every request.
    """
    seen_by_user = Assignment.objects.filter(document=OuterRef("pk"), user=user)
    return (
        Document.objects.filter(project=project, slots_taken=slots_taken)
        .filter(~Exists(seen_by_user))
        .order_by("rand")
    )


def next_item_for(user: AbstractBaseUser, project: Project) -> Document | None:
    """The next document this user should label, without reserving it (see
    services.assignment_next for the hand-out). Documents others have started come first,
    so overlapping annotations complete and become final sooner."""
    for slots in range(project.overlap - 1, -1, -1):
        document = queue_candidates(user, project, slots_taken=slots).first()
        if document is not None:
            return document
    return None


PROJECT_COUNTS_TTL_SECONDS = 5


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
            open=Count("id", filter=Q(slots_taken__lt=project.overlap)),
        )
        cache.set(key, counts, PROJECT_COUNTS_TTL_SECONDS)
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
