"""Writes that touch several rows: keyword-only functions named <entity>_<action>.

Every function that writes more than one row runs in one transaction, so a crash or a bad
request leaves nothing half-written.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from annotate import selectors
from annotate.access import may_create_accounts
from annotate.bulk import row_insert_unless_conflict
from annotate.models import (
    HEX_COLOUR,
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
from annotate.usernames import username_clean

DEFAULT_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
                   "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]


class QueueError(Exception):
    """An annotator's action that the queue cannot honour (document taken, not theirs...)."""


# --- projects, members, labels, guidelines -------------------------------------------------


@transaction.atomic
def project_create(
    *,
    name: str,
    created_by: AbstractBaseUser,
    description: str = "",
    task_type: str = Project.TaskType.SINGLE_LABEL,
    overlap: int = 1,
    labels: Iterable[str] = (),
    guidelines: str = "",
) -> Project:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A project needs a name."})
    if task_type == Project.TaskType.SPANS:
        raise ValidationError({"task_type": "Span projects are not available yet."})
    if task_type not in Project.TaskType.values:
        raise ValidationError({"task_type": f"Unknown task type {task_type!r}."})
    if overlap < 1:
        raise ValidationError({"overlap": "Each document needs at least one annotator."})
    _check_guideline_size(guidelines, field="guidelines")
    project = Project.objects.create(
        name=name,
        description=description,
        task_type=task_type,
        overlap=overlap,
        created_by=created_by,
    )
    Membership.objects.create(project=project, user=created_by, role=Membership.Role.LEAD)
    for label_name in labels:
        label_create(project=project, name=label_name)
    if guidelines:
        guideline_update(project=project, text=guidelines, user=created_by, note="First version")
    return project


def _free_hotkey(project: Project) -> str:
    used = set(project.labels.exclude(hotkey="").values_list("hotkey", flat=True))
    for key in "1234567890qwertyuiop":
        if key not in used and key not in RESERVED_HOTKEYS:
            return key
    return ""


def label_create(
    *,
    project: Project,
    name: str,
    description: str = "",
    colour: str = "",
    hotkey: str | None = None,
) -> Label:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A label needs a name."})
    if project.labels.filter(name=name).exists():
        raise ValidationError({"name": f"The project already has a label {name!r}."})
    position = project.labels.count()
    colour = colour or DEFAULT_COLOURS[position % len(DEFAULT_COLOURS)]
    _check_label_fields(project=project, colour=colour, hotkey=hotkey or "", label_id=None)
    return Label.objects.create(
        project=project,
        name=name,
        description=description,
        colour=colour,
        hotkey=_free_hotkey(project) if hotkey is None else hotkey,
        order=position,
    )


# Keys the annotator page uses for its own actions; a label cannot take them.
RESERVED_HOTKEYS = {"s", "f", "u", "g", "a", "?"}


def _check_label_fields(
    *, project: Project, colour: str, hotkey: str, label_id: int | None
) -> None:
    if not HEX_COLOUR.match(colour):
        raise ValidationError({"colour": f"{colour!r} is not a colour like #4c72b0."})
    if hotkey:
        if len(hotkey) != 1 or hotkey.isspace():
            raise ValidationError({"hotkey": "A hotkey is a single key."})
        if hotkey.lower() in RESERVED_HOTKEYS:
            raise ValidationError(
                {"hotkey": f"{hotkey!r} is taken by the annotator page "
                           "(skip/flag/undo/guide/accept)."}
            )
        clash = project.labels.filter(hotkey=hotkey).exclude(pk=label_id).first()
        if clash is not None:
            raise ValidationError({"hotkey": f"{hotkey!r} is already the hotkey of {clash.name}."})


def label_update(
    *, label: Label, name: str, description: str, colour: str, hotkey: str
) -> Label:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A label needs a name."})
    if label.project.labels.filter(name=name).exclude(pk=label.pk).exists():
        raise ValidationError({"name": f"The project already has a label {name!r}."})
    _check_label_fields(project=label.project, colour=colour, hotkey=hotkey, label_id=label.pk)
    label.name, label.description, label.colour, label.hotkey = name, description, colour, hotkey
    label.save()
    return label


def labels_hold(*, project: Project, label_ids: Iterable[int] | None = None) -> None:
    """Holds the project's labels (or those of `label_ids`) until the caller's transaction
    ends, for a write that is about to store their ids: label_delete waits for it and then
    sees what it wrote, and a delete that came first makes the held label disappear
    before it is read. Call it inside the transaction, before reading the labels.

    A share lock (FOR KEY SHARE, what a foreign key takes): writers never wait for each
    other. PostgreSQL only; SQLite runs one writing transaction at a time."""
    if connection.vendor != "postgresql":
        return
    table = connection.ops.quote_name(Label._meta.db_table)
    sql, params = f"SELECT id FROM {table} WHERE project_id = %s", [project.pk]
    if label_ids is not None:
        sql, params = sql + " AND id = ANY(%s)", [*params, list(label_ids)]
    with connection.cursor() as cursor:
        cursor.execute(sql + " FOR KEY SHARE", params)


@transaction.atomic
def label_delete(*, label: Label) -> None:
    """Deletes a label nothing of its project names any more; refuses otherwise.

    Label ids live in JSON lists (answers, final labels, decisions), which no foreign key
    guards. The label's row is locked before looking, so a writer that holds the label
    (labels_hold) finishes first and its rows are seen; one that comes after finds the
    label gone."""
    locked = Label.objects.select_for_update().filter(pk=label.pk).first()
    if locked is None:
        return  # deleted meanwhile
    uses = selectors.label_uses(label=locked)
    if uses:
        listed = ", ".join(uses[:-1]) + " and " + uses[-1] if len(uses) > 1 else uses[0]
        raise ValidationError(
            {"label": f"{locked.name!r} is used by {listed}; rename it instead of deleting."}
        )
    locked.delete()


# What someone who may not create accounts hears about any name they cannot add, whether it
# is free, deactivated or mistyped: the members page must not tell which usernames exist.
NOT_ADDABLE = ("No account can be added under that name. Check the spelling, or ask an "
               "administrator to create the account.")


def membership_set(
    *,
    project: Project,
    username: str,
    role: str,
    create_password: str | None = None,
    by: AbstractBaseUser | None = None,
) -> tuple[Membership, bool]:
    """Adds an active user to the project (or changes their role). Returns (membership,
    created_user).

    The name is normalised first (annotate.usernames: NFKC, so "ａｄｍｉｎ" is "admin").
    `by` is who asks; None is the system (a management command). An unknown name becomes
    an account only when a password is given (a typo does not silently make one) and `by`
    may create accounts (access.may_create_accounts); anyone else gets NOT_ADDABLE,
    whatever the reason.
    """
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    User = get_user_model()
    username = username_clean(username)
    may_create = by is None or may_create_accounts(by)
    user = User.objects.filter(username=username, is_active=True).first()
    created = False
    if user is None:
        if not may_create:
            raise ValidationError({"username": NOT_ADDABLE})
        if User.objects.filter(username__iexact=username).exists():
            raise ValidationError({"username": f"An account whose name differs from {username!r}"
                                               " only in case exists, or it is deactivated."})
        if not create_password:
            raise ValidationError({"username": f"There is no user {username!r}; give a password "
                                               "to create the account."})
        try:
            with transaction.atomic():
                user = User.objects.create_user(username=username, password=create_password)
        except IntegrityError:  # created by a concurrent request
            raise ValidationError({"username": f"The account {username!r} was just created; "
                                               "add it again without a password."}) from None
        created = True
    with transaction.atomic():
        membership, _ = Membership.objects.update_or_create(
            project=project, user=user, defaults={"role": role}
        )
        if not project.memberships.filter(role=Membership.Role.LEAD).exists():
            raise ValidationError({"role": "A project must keep at least one lead."})
    return membership, created


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    project = membership.project
    membership.delete()
    if not project.memberships.filter(role=Membership.Role.LEAD).exists():
        raise ValidationError({"role": "A project must keep at least one lead."})
    # Whatever they were holding goes back to the queue.
    for assignment in Assignment.objects.filter(
        project=project, user_id=membership.user_id, status=Assignment.Status.ACTIVE
    ):
        _release(assignment)


def _check_guideline_size(text: str, *, field: str) -> None:
    # Every annotator page shows the current version: a bound keeps the page (and the one
    # render per version) small. The stored HTML is what pages read, not the Markdown.
    most = settings.LABELWISE_GUIDELINE_MAX_CHARS
    if len(text) > most:
        raise ValidationError({field: (
            f"The guidelines are {len(text):,} characters long; at most {most:,} are "
            "allowed (LABELWISE_GUIDELINE_MAX_CHARS). Link to longer material instead."
        )}, code="too_long")


@transaction.atomic
def guideline_update(
    *, project: Project, text: str, user: AbstractBaseUser, note: str = ""
) -> GuidelineVersion:
    """Saves the guidelines as a new version; an edit never rewrites an older version.
    Raises ValidationError on `text` past LABELWISE_GUIDELINE_MAX_CHARS."""
    _check_guideline_size(text, field="text")
    # Lock the project row so two leads saving at once get versions n+1 and n+2.
    Project.objects.select_for_update().get(pk=project.pk)
    current = selectors.guideline_current(project)
    if current is not None and current.text == text:
        return current
    return GuidelineVersion.objects.create(
        project=project,
        version=(current.version + 1) if current else 1,
        text=text,
        note=note.strip()[:300],
        created_by=user,
    )


# --- the annotation queue ----------------------------------------------------------------


def _ttl() -> timedelta:
    return timedelta(seconds=settings.LABELWISE_ASSIGNMENT_TTL_SECONDS)


# Every write on the queue locks its rows in one order: Document (several: by id), then
# Assignment, then Annotation. Two requests that lock in opposite orders (a submit and an
# undo of one annotator, say) can each hold what the other waits for: on PostgreSQL one of
# them dies with "deadlock detected". assignment_next locks the document it hands out
# (skipping locked ones) before it inserts the assignment, so it follows the order too.
LOCK_ORDER = ("Document", "Assignment", "Annotation")


def _release(assignment: Assignment) -> None:
    """Gives an unanswered hand-out's slot back to the queue. The caller holds the locks of
    the document and then the assignment (LOCK_ORDER), or none at all."""
    Document.objects.filter(pk=assignment.document_id, slots_taken__gt=0).update(
        slots_taken=F("slots_taken") - 1
    )
    assignment.delete()


EXPIRY_CHECK_INTERVAL_SECONDS = 30


def assignments_expire(*, project: Project, force: bool = False) -> int:
    """Returns reservations that outlived their TTL to the queue; returns how many.

    Called on the hand-out path, so it looks at most every EXPIRY_CHECK_INTERVAL_SECONDS
    per project (reservations last an hour; a few seconds' delay costs nothing)."""
    if not force and not cache.add(
        f"labelwise:expiry-check:{project.pk}", 1, EXPIRY_CHECK_INTERVAL_SECONDS
    ):
        return 0
    expired = 0
    stale = Assignment.objects.filter(
        project=project, status=Assignment.Status.ACTIVE, expires_at__lte=timezone.now()
    )
    for assignment_id, document_id in stale.values_list("id", "document_id")[:500]:
        with transaction.atomic():
            # The queue's lock order: the document, then its assignment (LOCK_ORDER).
            Document.objects.select_for_update().filter(pk=document_id).first()
            assignment = (
                Assignment.objects.select_for_update()
                .filter(pk=assignment_id, status=Assignment.Status.ACTIVE,
                        expires_at__lte=timezone.now())
                .first()
            )
            if assignment is not None:
                _release(assignment)
                expired += 1
    return expired


def _lock_for_update(queryset):  # type: ignore[no-untyped-def]
    # PostgreSQL: other annotators skip a row being handed out instead of queueing behind
    # it. SQLite has no row locks; its IMMEDIATE transactions serialise writers instead.
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset


_rng = random.Random()


def assignment_next(*, user: AbstractBaseUser, project: Project) -> Document | None:
    """Hands the user their next document and reserves a slot for them; None when the queue
    has nothing left for them. Asking again returns the same document until it is answered,
    skipped or its reservation expires."""
    current = selectors.current_assignment(user, project)
    if current is not None:
        return current.document
    assignments_expire(project=project)
    for order, slots in (
        (order, slots)
        for order in selectors.queue_plan(project).orderings(_rng)
        for slots in range(project.overlap - 1, -1, -1)
    ):
        # A few tries: under contention another annotator may fill the slot between our
        # read and our guarded update, and then the next candidate is as good.
        for _attempt in range(5):
            # No savepoint inside a caller's transaction (submit-and-next): nothing here
            # is caught and retried after a database error, and a savepoint is two more
            # round trips on the busiest request.
            with transaction.atomic(savepoint=False):
                candidates = selectors.queue_candidates(
                    user, project, slots_taken=slots, round_id=order.round_id,
                    by_rank=order.by_rank,
                )
                document = _lock_for_update(candidates).first()
                if document is None:
                    break
                # The guard makes over-assignment impossible even without row locks: exactly
                # one of two racing requests can move slots_taken past the same value.
                taken = Document.objects.filter(
                    pk=document.pk, slots_taken=slots, slots_taken__lt=project.overlap
                ).update(slots_taken=F("slots_taken") + 1)
                if taken != 1:
                    continue
                now = timezone.now()
                handed = Assignment(document=document, project=project, user=user,
                                    created_at=now, expires_at=now + _ttl())
                if not row_insert_unless_conflict(handed):
                    # The same user in two tabs raced for this document: keep one hand-out.
                    Document.objects.filter(pk=document.pk).update(
                        slots_taken=F("slots_taken") - 1
                    )
                    continue
                document.slots_taken = slots + 1
                return document
    return None


def _final_labels(project: Project, document: Document) -> list[int] | None:
    """The label(s) a document ends with once `overlap` annotators answered: the majority
    answer; a tie stays open (None) for a lead to adjudicate."""
    if document.n_annotations < project.overlap:
        return None  # not everyone has answered yet: no need to read the answers
    answers = list(document.annotations.order_by("id").values_list("labels", flat=True))
    return project.task.vote(answers, project.overlap)


def _check_labels(project: Project, label_ids: list[int]) -> list[int]:
    """The answer's label ids, checked against the project's labels, which stay held
    (labels_hold) until the caller's transaction ends: a label deleted meanwhile is either
    gone before this reads it or its delete waits and then sees this answer."""
    labels_hold(project=project, label_ids=label_ids)
    valid = set(project.labels.values_list("id", flat=True))
    unknown = [label_id for label_id in label_ids if label_id not in valid]
    if unknown:
        raise ValidationError({"labels": f"Unknown label id(s) for this project: {unknown}."})
    label_ids = sorted(set(label_ids))
    error = project.task.answer_error(label_ids)
    if error:
        raise ValidationError({"labels": error})
    return label_ids


def _adjudicated(document: Document) -> bool:
    """A lead's decision stands: a late answer (an annotator still holding the document)
    or an undo must not re-vote it away. Only a final document can have been decided, so
    the extra query runs for those alone."""
    return document.final_labels is not None and document.adjudications.exists()


@transaction.atomic
def annotation_submit(
    *,
    user: AbstractBaseUser,
    project: Project,
    document_id: int,
    label_ids: list[int],
    duration_ms: int | None = None,
) -> Annotation:
    """Records the user's answer for a document they were handed and still hold: any other
    id of the project (a document never handed to them, one they skipped, one whose
    reservation expired and went back to the queue) is refused. Locks the document, then
    the assignment (LOCK_ORDER)."""
    label_ids = _check_labels(project, label_ids)
    document = (
        Document.objects.select_for_update().filter(project=project, pk=document_id).first()
    )
    if document is None:
        raise QueueError("That document is not in this project.")
    assignment = (
        Assignment.objects.select_for_update().filter(document=document, user=user).first()
    )
    if assignment is not None and assignment.status == Assignment.Status.DONE:
        raise QueueError("You have already labelled this document; use undo to change it.")
    if assignment is None or assignment.status != Assignment.Status.ACTIVE:
        # Never handed out to them, skipped, or expired and returned to the queue (where
        # it may have gone to someone else): the slot is not theirs to fill.
        raise QueueError("That document is not handed to you any more (skipped, or its "
                         "reservation expired and it may have gone to someone else); "
                         "here is your next one.")
    assignment.status = Assignment.Status.DONE
    assignment.finished_at = timezone.now()
    assignment.expires_at = assignment.expires_at or assignment.finished_at
    assignment.save()
    annotation = Annotation.objects.create(
        document=document,
        annotator=user,
        labels=label_ids,
        guideline_version=selectors.guideline_current(project),
        duration_ms=duration_ms,
    )
    document.n_annotations += 1
    if not _adjudicated(document):
        # With one annotator per document the answer is final; skip the vote's query.
        document.final_labels = (
            label_ids if project.overlap == 1 else _final_labels(project, document)
        )
    document.save(update_fields=["slots_taken", "n_annotations", "final_labels"])
    return annotation


@transaction.atomic
def assignment_skip(*, user: AbstractBaseUser, project: Project, document_id: int) -> None:
    """The user passes on a document: its slot returns to the queue for others, and it is
    never handed to this user again. Locks the document, then the assignment (LOCK_ORDER)."""
    Document.objects.select_for_update().filter(project=project, pk=document_id).first()
    assignment = (
        Assignment.objects.select_for_update()
        .filter(project=project, document_id=document_id, user=user)
        .first()
    )
    if assignment is None or assignment.status != Assignment.Status.ACTIVE:
        raise QueueError("That document is not currently handed to you.")
    Document.objects.filter(pk=document_id, slots_taken__gt=0).update(
        slots_taken=F("slots_taken") - 1
    )
    assignment.status = Assignment.Status.SKIPPED
    assignment.finished_at = timezone.now()
    assignment.save(update_fields=["status", "finished_at"])


@dataclass(frozen=True)
class Undone:
    """What an undo gave back: the document, and the label ids of the answer taken back
    (the annotator's page shows them selected, to keep or change)."""

    document: Document
    labels: list[int]


@transaction.atomic
def annotation_undo(*, user: AbstractBaseUser, project: Project) -> Undone | None:
    """Takes back the user's most recent answer in the project and hands that document back
    to them; the document they were holding instead returns to the queue.

    Locks in LOCK_ORDER, as annotation_submit does: first the documents involved (the
    answered one and the held ones, by id), then the user's assignments of them, then the
    answer. Which documents are involved is read before the locks and checked after."""
    answers = Annotation.objects.filter(
        document__project=project, annotator=user, source=Annotation.Source.HUMAN
    ).order_by("-created_at", "-id")
    last_document = answers.values_list("document_id", flat=True).first()
    if last_document is None:
        return None
    held = Assignment.objects.filter(project=project, user=user,
                                     status=Assignment.Status.ACTIVE)
    involved = sorted({last_document, *held.values_list("document_id", flat=True)})
    locked = {
        document.pk: document
        for document in Document.objects.select_for_update().filter(pk__in=involved)
        .order_by("pk")
    }
    assignments = list(
        Assignment.objects.select_for_update().filter(user=user, document_id__in=involved)
        .order_by("pk")
    )
    last = answers.select_for_update(of=("self",)).first()
    if last is None:
        return None  # another tab undid it meanwhile
    if last.document_id not in locked:
        # Another tab of this annotator answered meanwhile: its answer is now the last.
        raise QueueError("Your answers changed while undoing; press undo again.")
    for assignment in assignments:
        # What the queue handed out goes back to it; a lead's hand-out stays theirs.
        if assignment.status == Assignment.Status.ACTIVE and assignment.assigned_by_id is None:
            _release(assignment)
    document = locked[last.document_id]
    last.delete()
    Assignment.objects.filter(document=document, user=user).update(
        status=Assignment.Status.ACTIVE,
        finished_at=None,
        expires_at=timezone.now() + _ttl(),
    )
    document.n_annotations = max(document.n_annotations - 1, 0)
    if not _adjudicated(document):
        document.final_labels = _final_labels(project, document)
    document.save(update_fields=["n_annotations", "final_labels"])
    return Undone(document=document, labels=list(last.labels))


def flag_create(
    *, user: AbstractBaseUser, project: Project, document_id: int, comment: str
) -> Flag:
    comment = comment.strip()
    if not comment:
        raise ValidationError({"comment": "Say what is wrong with the document."})
    document = Document.objects.filter(project=project, pk=document_id).first()
    if document is None:
        raise QueueError("That document is not in this project.")
    return Flag.objects.create(document=document, user=user, comment=comment[:5000])


# --- review: adjudication and flags --------------------------------------------------------


@transaction.atomic
def document_adjudicate(
    *,
    document: Document,
    user: AbstractBaseUser,
    label_ids: list[int],
    reason: str,
    resolve_flags: bool = False,
) -> Adjudication:
    """A lead or reviewer decides the document's final label(s), saying why.

    Sets Document.final_labels (the labels training and export use) and fills its
    annotation slots, so the queue never hands it out again; the decision is kept as a new
    Adjudication row beside any earlier ones. Optionally resolves the document's open
    flags in the same transaction."""
    project = document.project
    label_ids = _check_labels(project, label_ids)
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why you decided this label."})
    document = Document.objects.select_for_update().get(pk=document.pk, project=project)
    previous = document.final_labels
    document.final_labels = label_ids
    document.slots_taken = max(document.slots_taken, project.overlap)
    document.save(update_fields=["final_labels", "slots_taken"])
    if resolve_flags:
        Flag.objects.filter(document=document, resolved=False).update(resolved=True)
    return Adjudication.objects.create(
        document=document,
        decided_by=user,
        labels=label_ids,
        previous_labels=previous,
        reason=reason[:5000],
    )


def _slots_in_use(project: Project, document: Document) -> int:
    """What Document.slots_taken should hold: its live and finished hand-outs, and the
    whole overlap once it is final (an imported or decided label needs no one else)."""
    used = Assignment.objects.filter(
        document=document, status__in=[Assignment.Status.ACTIVE, Assignment.Status.DONE]
    ).count()
    return max(used, project.overlap) if document.final_labels is not None else used


@transaction.atomic
def annotation_delete(*, project: Project, annotation_id: int) -> Document:
    """A lead takes one answer (an annotator's or an imported label) off a document. The
    final label follows the answers left, unless a decision stands; the answer's slot goes
    back to the queue (its annotator may be handed the document again). Locks in
    LOCK_ORDER: the document, its assignments, the answer."""
    found = Annotation.objects.filter(pk=annotation_id, document__project=project).values_list(
        "document_id", flat=True
    ).first()
    if found is None:
        raise QueueError("That answer is not in this project (deleted meanwhile?).")
    document = Document.objects.select_for_update().get(pk=found)
    assignments = Assignment.objects.select_for_update().filter(document=document)
    list(assignments.order_by("pk"))
    annotation = Annotation.objects.select_for_update().filter(pk=annotation_id).first()
    if annotation is None:
        raise QueueError("That answer was deleted meanwhile.")
    if annotation.annotator_id is not None:
        assignments.filter(user_id=annotation.annotator_id).delete()
    annotation.delete()
    document.n_annotations = max(document.n_annotations - 1, 0)
    if not _adjudicated(document):
        document.final_labels = _final_labels(project, document)
    document.slots_taken = _slots_in_use(project, document)
    document.save(update_fields=["n_annotations", "final_labels", "slots_taken"])
    return document


def flag_resolve(*, project: Project, flag_id: int) -> Flag:
    """Marks one of the project's flags dealt with."""
    flag = Flag.objects.filter(pk=flag_id, document__project=project).first()
    if flag is None:
        raise QueueError("That flag is not in this project.")
    if not flag.resolved:
        flag.resolved = True
        flag.save(update_fields=["resolved"])
    return flag


# --- documents, singly and in bulk ------------------------------------------------------


def documents_delete(*, project: Project, document_ids: Iterable[int]) -> int:
    """Deletes the project's documents among `document_ids`, with everything that points
    at them (answers, hand-outs, flags, decisions, predictions); returns how many."""
    with transaction.atomic():
        ids = list(Document.objects.filter(project=project, pk__in=list(document_ids))
                   .values_list("pk", flat=True))
        Document.objects.filter(pk__in=ids).delete()
    return len(ids)


# A bulk action takes at most this many documents per request, so one request's
# transaction stays short; a larger selection is refused with the count.
BULK_LIMIT = 1000
# How long a document a lead handed to an annotator stays theirs.
LEAD_ASSIGNMENT_TTL = timedelta(days=14)


def bulk_ids(project: Project, document_ids: Iterable[int]) -> list[int]:
    """The project's documents among `document_ids`, checked against BULK_LIMIT."""
    ids = sorted(set(document_ids))
    if len(ids) > BULK_LIMIT:
        raise ValidationError(
            f"{len(ids):,} documents selected; at most {BULK_LIMIT:,} per action. "
            "Narrow the filter and repeat.", code="too_many")
    if not ids:
        raise ValidationError("No documents selected.", code="empty")
    return list(Document.objects.filter(project=project, pk__in=ids).order_by("pk")
                .values_list("pk", flat=True))


@transaction.atomic
def documents_label(
    *, project: Project, document_ids: Iterable[int], label_ids: list[int],
    user: AbstractBaseUser, reason: str,
) -> int:
    """A lead sets the final label(s) of many documents at once: one adjudication each
    (the reason is kept on every one), so each document's history shows it."""
    ids = bulk_ids(project, document_ids)
    if not reason.strip():
        raise ValidationError({"reason": "Say why these documents get this label."})
    for document in Document.objects.filter(pk__in=ids).order_by("pk"):
        document_adjudicate(document=document, user=user, label_ids=label_ids, reason=reason)
    return len(ids)


@transaction.atomic
def documents_send_to_review(
    *, project: Project, document_ids: Iterable[int], user: AbstractBaseUser, comment: str
) -> int:
    """Puts documents on the review pages' Flags queue with the lead's comment; a document
    with an open flag already is left as it is. Returns how many were flagged."""
    ids = bulk_ids(project, document_ids)
    comment = comment.strip() or "Sent to review by a lead."
    flagged = set(Flag.objects.filter(document_id__in=ids, resolved=False)
                  .values_list("document_id", flat=True))
    new = [Flag(document_id=i, user=user, comment=comment[:5000]) for i in ids if i not in flagged]
    Flag.objects.bulk_create(new)
    return len(new)


@transaction.atomic
def documents_to_holdout(*, project: Project, document_ids: Iterable[int]) -> int:
    """Moves documents into the fixed holdout: never trained on, and once labelled never
    handed out again. Returns how many moved (those already there do not count)."""
    ids = bulk_ids(project, document_ids)
    return Document.objects.filter(pk__in=ids).exclude(split=Document.Split.HOLDOUT).update(
        split=Document.Split.HOLDOUT
    )


@dataclass(frozen=True)
class AssignSummary:
    assigned: int
    final: int  # already labelled: nothing to do
    full: int  # every annotation slot taken
    seen: int  # the annotator already had it (answered, skipped or holding it)


@transaction.atomic
def documents_assign(
    *, project: Project, document_ids: Iterable[int], username: str, by: AbstractBaseUser
) -> AssignSummary:
    """A lead hands documents to one annotator of the project: each becomes theirs (an
    active hand-out that lasts LEAD_ASSIGNMENT_TTL) and comes up on their page before the
    queue's. A document that is final, has no free slot, or that the annotator has had
    before is left out and counted. Locks the documents (by id), then inserts the
    hand-outs (LOCK_ORDER)."""
    membership = Membership.objects.filter(
        project=project, user__username=username, user__is_active=True
    ).select_related("user").first()
    if membership is None or not membership.can_annotate:
        raise ValidationError({"annotator": f"{username!r} cannot annotate in this project."})
    user = membership.user
    ids = bulk_ids(project, document_ids)
    documents = list(_lock_in_order(Document.objects.filter(pk__in=ids)))
    had = set(Assignment.objects.filter(user=user, document_id__in=ids)
              .values_list("document_id", flat=True))
    now = timezone.now()
    counts = Counter()
    handed = []
    for document in documents:
        if document.final_labels is not None:
            counts["final"] += 1
        elif document.pk in had:
            counts["seen"] += 1
        elif document.slots_taken >= project.overlap:
            counts["full"] += 1
        else:
            handed.append(Assignment(document=document, project=project, user=user,
                                     assigned_by=by, created_at=now,
                                     expires_at=now + LEAD_ASSIGNMENT_TTL))
    Assignment.objects.bulk_create(handed)
    Document.objects.filter(pk__in=[a.document_id for a in handed]).update(
        slots_taken=F("slots_taken") + 1
    )
    return AssignSummary(assigned=len(handed), final=counts["final"], full=counts["full"],
                         seen=counts["seen"])


def _lock_in_order(queryset):  # type: ignore[no-untyped-def]
    return queryset.select_for_update().order_by("pk")


# --- the held-out evaluation set ---------------------------------------------------------


@dataclass(frozen=True)
class HoldoutSummary:
    holdout: int
    pool_labeled: int
    groups_holdout: int
    per_label: dict[str, int]


@transaction.atomic
def holdout_reserve(
    *,
    project: Project,
    fraction: float | None = None,
    count: int | None = None,
    group_field: str = "",
    seed: int = 0,
) -> HoldoutSummary:
    """Reserves a fixed, stratified share (or count) of the labelled documents as the
    project's evaluation set, replacing any earlier holdout.

    Groups (documents sharing `meta[group_field]`, e.g. the movie a review is about) move as
    one, so a model never trains on one review of a movie and is scored on another; exact
    duplicates cannot straddle the split because a project stores each text once. Members
    of a chosen group that are not labelled yet go to the holdout too.
    """
    if (fraction is None) == (count is None):
        raise ValidationError("Give either a fraction or a count.")
    labeled = list(
        Document.objects.filter(project=project, final_labels__isnull=False).values_list(
            "id", "final_labels", "meta", "text_hash"
        )
    )
    if not labeled:
        raise ValidationError("No labelled documents yet: label (or import labels) first.")
    if fraction is not None and not 0 < fraction < 1:
        raise ValidationError({"fraction": "The holdout share must be between 0 and 1."})
    target = round(fraction * len(labeled)) if fraction is not None else int(count or 0)
    if not 0 < target < len(labeled):
        raise ValidationError(
            {"count": f"The holdout must be between 1 and {len(labeled) - 1} documents."}
        )

    def group_of(meta: dict, digest: str) -> str:
        if group_field and meta.get(group_field) not in (None, ""):
            return f"g:{meta[group_field]}"
        return f"h:{digest}"

    groups: dict[str, list[int]] = defaultdict(list)
    group_labels: dict[str, Counter] = defaultdict(Counter)
    for doc_id, labels, meta, digest in labeled:
        key = group_of(meta or {}, digest)
        groups[key].append(doc_id)
        group_labels[key][tuple(sorted(labels))] += 1
    # Stratify on each group's majority label: take groups stratum by stratum until each
    # stratum has its share, so rare labels are represented in the holdout.
    strata: dict[tuple, list[str]] = defaultdict(list)
    for key, counter in group_labels.items():
        strata[counter.most_common(1)[0][0]].append(key)
    rng = random.Random(seed)
    share = target / len(labeled)
    chosen_groups: list[str] = []
    for stratum in sorted(strata):
        keys = sorted(strata[stratum])
        rng.shuffle(keys)
        stratum_size = sum(len(groups[k]) for k in keys)
        want, got = share * stratum_size, 0
        for key in keys:
            if got >= want or got + len(groups[key]) > want * 1.5 + 1:
                continue
            chosen_groups.append(key)
            got += len(groups[key])
    chosen_group_values = {k[2:] for k in chosen_groups if k.startswith("g:")}
    chosen_ids = {doc_id for key in chosen_groups for doc_id in groups[key]}

    Document.objects.filter(project=project).update(split=Document.Split.POOL)
    Document.objects.filter(pk__in=chosen_ids).update(split=Document.Split.HOLDOUT)
    if group_field and chosen_group_values:
        # Unlabelled members of held-out groups must not be trained on later either.
        unlabeled = Document.objects.filter(project=project, final_labels__isnull=True)
        to_move = [
            doc_id
            for doc_id, meta in unlabeled.values_list("id", "meta").iterator(chunk_size=5000)
            if str((meta or {}).get(group_field, "")) in chosen_group_values
        ]
        Document.objects.filter(pk__in=to_move).update(split=Document.Split.HOLDOUT)
    label_names = dict(project.labels.values_list("id", "name"))
    per_label: Counter = Counter()
    for doc_id, labels, _meta, _digest in labeled:
        if doc_id in chosen_ids:
            for label_id in labels:
                per_label[label_names.get(label_id, str(label_id))] += 1
    return HoldoutSummary(
        holdout=Document.objects.filter(project=project, split=Document.Split.HOLDOUT).count(),
        pool_labeled=len(labeled) - len(chosen_ids),
        groups_holdout=len(chosen_groups),
        per_label=dict(per_label),
    )


# --- project settings ---


@transaction.atomic
def project_update(
    *,
    project: Project,
    name: str,
    description: str,
    overlap: int,
    annotators_see_others: bool,
    text_direction: str,
    annotators_see_external_ids: bool | None = None,
) -> Project:
    """Saves the project's settings. Lowering the overlap settles documents that already
    have enough answers under the new overlap; raising it reopens nothing already final."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A project needs a name."})
    if overlap < 1:
        raise ValidationError({"overlap": "Each document needs at least one annotator."})
    if text_direction not in {"ltr", "rtl"}:
        raise ValidationError({"text_direction": f"Unknown text direction {text_direction!r}."})
    project = Project.objects.select_for_update().get(pk=project.pk)
    lowered = overlap < project.overlap
    project.name, project.description, project.overlap = name, description, overlap
    project.annotators_see_others, project.text_direction = annotators_see_others, text_direction
    if annotators_see_external_ids is not None:
        project.annotators_see_external_ids = annotators_see_external_ids
    project.save()
    if lowered:
        unsettled = Document.objects.filter(
            project=project, final_labels__isnull=True, n_annotations__gte=overlap
        )
        for document in unsettled.iterator(chunk_size=2000):
            document.final_labels = _final_labels(project, document)
            if document.final_labels is not None:
                document.save(update_fields=["final_labels"])
    return project
