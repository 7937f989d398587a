"""The Round row's life: request, claim, progress, finish, fail, cancel, recover.

The database row is the job (CONVENTIONS item 3): the web side creates a queued Round, a
worker claims it with a conditional update that exactly one worker can win, and writes its
progress and heartbeat onto the row.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max
from django.utils import timezone

from annotate import selectors
from annotate.io.importer import DocumentImportError, documents_import
from annotate.models import Document, Project
from learner import selectors as learner_selectors
from learner.adaptation import adapted_encoder
from learner.base_models import BaseModelUnavailable, base_model_folder
from learner.ml.config import TrainConfig
from learner.ml.monitoring import top_label
from learner.models import DriftAlert, ExportJob, LearnerSettings, Round, ServedPrediction

# A claimed round goes back to the queue this many times after its worker vanished, then
# it is marked failed so a round that kills its worker (out of memory, say) cannot loop.
MAX_ATTEMPTS = 2

log = logging.getLogger("learner")


class RoundBusy(Exception):
    """The project already has a queued or running round."""


class RoundCancelled(Exception):
    """Raised inside a running round when a lead asked to cancel it."""


def learner_settings_for(project: Project) -> LearnerSettings:
    settings, _ = LearnerSettings.objects.get_or_create(project=project)
    return settings


def round_request(
    *,
    project: Project,
    trigger: str = Round.Trigger.MANUAL,
    requested_by: AbstractBaseUser | None = None,
    extra: dict | None = None,
) -> Round:
    """Queues a training round for the project; RoundBusy if one is queued or running.
    `extra` goes into the round's configuration beside the settings (an adaptation's)."""
    try:
        with transaction.atomic():
            # The project row lock serialises numbering; the partial unique constraint is
            # what guarantees one active round even if two requests race past this.
            Project.objects.select_for_update().get(pk=project.pk)
            if Round.objects.filter(project=project, status__in=Round.ACTIVE).exists():
                raise RoundBusy(f"{project} already has a queued or running round.")
            last = Round.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0
            settings = learner_settings_for(project)
            labels_now = training_label_count(project.pk)
            return Round.objects.create(
                project=project,
                number=last + 1,
                trigger=trigger,
                requested_by=requested_by,
                config={
                    # Everything the fit reads, typed (learner.ml.config.TrainConfig).
                    "train": train_config_of(settings, task_type=project.task_type,
                                             encoder=adapted_encoder(project, settings)
                                             ).to_dict(),
                    "strategy": settings.strategy,
                    "random_share": settings.random_share,
                    # The metadata fields the holdout is broken down by (learner.pipeline).
                    "groups": {"fields": list(settings.group_fields or []),
                               "margin": settings.group_margin},
                    # What "N new labels since the last round" counts from.
                    "labels_at_request": labels_now,
                    **(extra or {}),
                },
            )
    except IntegrityError as exc:
        raise RoundBusy(f"{project} already has a queued or running round.") from exc


def train_config_of(settings: LearnerSettings, *, task_type: str,
                    encoder: str | None = None) -> TrainConfig:
    """The lead's learner settings as the typed configuration a round trains with; what the
    settings do not name keeps TrainConfig's default. `encoder` (an adapted encoder's
    folder) replaces the base model. The base model's name is resolved to its folder here,
    whatever the row holds: BaseModelUnavailable for anything not on offer."""
    base = base_model_folder(settings.model_name)
    return TrainConfig(
        model_name_or_path=encoder or base,
        mode=settings.mode,  # type: ignore[arg-type]
        task_type=task_type,
        max_length=settings.max_length,
        epochs=settings.epochs or None,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        seed=settings.seed,
        warm_start=settings.warm_start,
    )


def training_label_count(project_id: int) -> int:
    """Documents with a final label on the training side (the holdout does not count)."""
    return Document.objects.filter(
        project_id=project_id, split=Document.Split.POOL, final_labels__isnull=False
    ).count()


def round_due(project: Project, settings: LearnerSettings) -> str | None:
    """Why the project should train now (a Round.Trigger value), or None.

    Due after `train_every_labels` new training labels since the last round was requested,
    or `train_every_minutes` after it when any label arrived since; the first round needs
    `train_every_labels` labels in all (or any labels at all, on a timer).
    """
    if not settings.train_every_labels and not settings.train_every_minutes:
        return None
    last = Round.objects.filter(project=project).order_by("-number").first()
    if last is not None and last.is_active:
        return None
    labels_now = training_label_count(project.pk)
    since = labels_now - (last.config.get("labels_at_request", 0) if last else 0)
    if settings.train_every_labels and since >= settings.train_every_labels:
        return Round.Trigger.LABELS
    if settings.train_every_minutes and since > 0:
        reference = last.created_at if last else None
        if reference is None or timezone.now() - reference >= timedelta(
            minutes=settings.train_every_minutes
        ):
            return Round.Trigger.TIMER
    return None


def rounds_request_due() -> list[Round]:
    """Queues a round for every project whose trigger fired; returns the new rounds."""
    requested = []
    for settings in LearnerSettings.objects.select_related("project"):
        trigger = round_due(settings.project, settings)
        if trigger is None:
            continue
        try:
            requested.append(round_request(project=settings.project, trigger=trigger))
        except RoundBusy:
            continue
        except BaseModelUnavailable:
            # The dashboard's Train now says why; the timer must not stop other projects.
            log.warning("Project %s: no round queued, its base model is not on offer.",
                        settings.project_id)
            continue
    return requested


def round_claim(*, worker: str) -> Round | None:
    """Claims the oldest queued round for this worker; None when nothing is queued.

    Two workers can never claim the same round: on PostgreSQL the candidate row is locked
    with SKIP LOCKED, and everywhere the status change is an UPDATE guarded by
    status='queued' that must change exactly one row.
    """
    for _attempt in range(5):
        with transaction.atomic():
            queued = Round.objects.filter(status=Round.Status.QUEUED).order_by("created_at", "id")
            if connection.features.has_select_for_update_skip_locked:
                queued = queued.select_for_update(skip_locked=True)
            candidate = queued.values_list("id", flat=True).first()
            if candidate is None:
                return None
            now = timezone.now()
            won = Round.objects.filter(pk=candidate, status=Round.Status.QUEUED).update(
                status=Round.Status.RUNNING,
                worker=worker,
                started_at=now,
                heartbeat_at=now,
                attempts=F("attempts") + 1,
                phase="starting",
            )
            if won == 1:
                return Round.objects.get(pk=candidate)
    return None


def round_progress(
    *, round_id: int, phase: str, step: int = 0, total_steps: int = 0,
    eta_seconds: float | None = None,
) -> None:
    """Records progress and the heartbeat; raises RoundCancelled if a lead cancelled it."""
    Round.objects.filter(pk=round_id, status=Round.Status.RUNNING).update(
        phase=phase, step=step, total_steps=total_steps, eta_seconds=eta_seconds,
        heartbeat_at=timezone.now(),
    )
    if Round.objects.filter(pk=round_id, cancel_requested=True).exists():
        raise RoundCancelled(f"Round {round_id} was cancelled.")


def round_heartbeat(*, round_id: int) -> None:
    Round.objects.filter(pk=round_id, status=Round.Status.RUNNING).update(
        heartbeat_at=timezone.now()
    )


def round_finish(*, round: Round, **results: object) -> Round:
    """Marks a running round done with its results (metrics, timings, artifact_path...)."""
    fields = {"status": Round.Status.DONE, "finished_at": timezone.now(), "phase": "done",
              "eta_seconds": None, **results}
    updated = Round.objects.filter(pk=round.pk, status=Round.Status.RUNNING).update(**fields)
    round.refresh_from_db()
    if updated != 1:
        raise RoundCancelled(f"Round {round.pk} is no longer running ({round.status}).")
    selectors.queue_plan_forget(round.project_id)
    return round


def round_fail(*, round: Round, error: str, traceback: str = "") -> None:
    Round.objects.filter(pk=round.pk, status=Round.Status.RUNNING).update(
        status=Round.Status.FAILED, finished_at=timezone.now(), error=error[:5000],
        traceback=traceback[-20000:], eta_seconds=None,
    )


def round_mark_cancelled(*, round: Round) -> None:
    Round.objects.filter(pk=round.pk, status__in=Round.ACTIVE).update(
        status=Round.Status.CANCELLED, finished_at=timezone.now(), eta_seconds=None,
    )


def round_cancel(*, round: Round) -> Round:
    """A lead cancels: a queued round stops at once; a running one at its next progress
    report (the worker sees cancel_requested)."""
    Round.objects.filter(pk=round.pk, status=Round.Status.QUEUED).update(
        status=Round.Status.CANCELLED, finished_at=timezone.now(), cancel_requested=True,
    )
    Round.objects.filter(pk=round.pk, status=Round.Status.RUNNING).update(cancel_requested=True)
    round.refresh_from_db()
    return round


def rounds_recover_stale(*, heartbeat_timeout: timedelta) -> list[int]:
    """Rounds whose worker stopped beating (killed, machine lost) go back to the queue,
    or are failed once they have used MAX_ATTEMPTS; returns the ids touched."""
    cutoff = timezone.now() - heartbeat_timeout
    touched = []
    stale = Round.objects.filter(status=Round.Status.RUNNING, heartbeat_at__lt=cutoff)
    for round_id, attempts in stale.values_list("id", "attempts"):
        guard = Round.objects.filter(pk=round_id, status=Round.Status.RUNNING,
                                     heartbeat_at__lt=cutoff)
        if attempts >= MAX_ATTEMPTS:
            changed = guard.update(
                status=Round.Status.FAILED, finished_at=timezone.now(),
                error=f"The worker stopped responding (no heartbeat for "
                      f"{int(heartbeat_timeout.total_seconds())} s) on attempt {attempts}.",
            )
        else:
            changed = guard.update(status=Round.Status.QUEUED, worker="", phase="requeued")
        if changed:
            touched.append(round_id)
    return touched


# --- monitoring ----------------------------------------------------------------------------


def served_predictions_record(
    *, round: Round, labels: Sequence[str], probabilities: np.ndarray, texts: Sequence[str],
    recording: learner_selectors.Recording | None = None, export: ExportJob | None = None,
) -> int:
    """Records what the predictions endpoint answered, one row per text: the round (and
    the export, when a finished export served it), the top label and its probability (and
    the text, when the lead records texts). Returns the rows written (0 when recording is
    off).

    `recording`: the project's settings as the caller read them with the round
    (`learner.selectors.round_for_serving`); without it they are read here. Then one
    statement: recording costs a request one round trip to the database and no wait for
    it to reach the disk (`_served_insert`)."""
    if recording is None:
        row = (LearnerSettings.objects.filter(project_id=round.project_id)
               .values_list("record_predictions", "record_texts").first())
        recording = learner_selectors.Recording(*row) if row else learner_selectors.Recording()
    if not recording.predictions:
        return 0
    index, confidence = top_label(probabilities)
    now = timezone.now()
    rows = [
        (round.project_id, round.pk, export.pk if export is not None else None, labels[j],
         float(c), text if recording.texts else "", now)
        for j, c, text in zip(index.tolist(), confidence.tolist(), texts, strict=True)
    ]
    _served_insert(rows)
    return len(rows)


SERVED_COLUMNS = ("project", "round", "export", "label", "confidence", "text", "created_at")


def _served_insert(rows: list[tuple[Any, ...]]) -> None:
    """Inserts ServedPrediction rows (values in SERVED_COLUMNS' order) in one statement,
    where bulk_create would wrap its INSERT in a transaction of its own (two more round
    trips: BEGIN, COMMIT).

    On PostgreSQL the statement also turns synchronous_commit off for its own implicit
    transaction: the request need not wait for the WAL flush (a few ms, measured by
    bench/monitoring.py); a crash may lose the last rows of a statistic, never anything
    else. Sent as one query string, that is still one round trip. Inside a caller's
    transaction the setting would reach the caller's writes too, so there it is left out.
    SQLite takes as many rows per statement as its parameter limit allows; a request of
    more texts than that is written in a few statements, each its own transaction."""
    if not rows:
        return
    quote = connection.ops.quote_name
    fields = [ServedPrediction._meta.get_field(name) for name in SERVED_COLUMNS]
    columns = ", ".join(quote(field.column) for field in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    prefix = ("SET LOCAL synchronous_commit TO OFF; "
              if connection.vendor == "postgresql" and not connection.in_atomic_block else "")
    size = max(1, connection.ops.bulk_batch_size(fields, rows))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            cursor.execute(
                f"{prefix}INSERT INTO {quote(ServedPrediction._meta.db_table)} ({columns}) "
                f"VALUES {', '.join([row_sql] * len(chunk))}",
                [field.get_db_prep_save(value, connection)
                 for row in chunk for field, value in zip(fields, row, strict=True)])


def drift_check(*, project: Project, day: date | None = None) -> DriftAlert | None:
    """Judges the day's predictions of the project's latest round against its holdout;
    when they drifted, raises the day's alert (which marks the project) and, if the lead
    asked for it, queues the least confident recorded texts for annotation and a round.
    Returns the new alert, or None (no drift, not enough predictions, already raised)."""
    round = learner_selectors.round_latest_done(project)
    if round is None or not round.holdout_profile:
        return None
    day = day or timezone.localdate()
    if DriftAlert.objects.filter(round=round, day=day).exists():
        return None
    settings = learner_settings_for(project)
    drift = learner_selectors.drift_of_day(round, day, threshold=settings.drift_threshold)
    if not drift.drifted:
        return None
    try:
        with transaction.atomic():
            alert = DriftAlert.objects.create(project=project, round=round, day=day,
                                              drift=drift.as_dict())
    except IntegrityError:
        return None  # another worker raised it first
    log.warning("Project %s: round %s's predictions on %s drifted (PSI %.3f).",
                project.pk, round.number, day, drift.score)
    if settings.drift_queue:
        drift_texts_queue(alert=alert, size=settings.drift_queue_size)
    return alert


def drift_texts_queue(*, alert: DriftAlert, size: int) -> DriftAlert:
    """Adds the alert day's least confident recorded texts to the pool as documents
    tagged {"source": "production"} (through the importer: the project's duplicate check
    and limits apply), then requests a round so the queue scores them. Without recorded
    texts nothing is added, and the alert says why."""
    start, end = learner_selectors.day_bounds(alert.day)
    rows = (ServedPrediction.objects.filter(round=alert.round, created_at__gte=start,
                                            created_at__lt=end).exclude(text="")
            .order_by("confidence", "id").values_list("text", "label", "confidence"))
    picked: dict[str, tuple[str, float]] = {}
    for text, label, confidence in rows[: size * 4].iterator():
        if len(picked) >= size:
            break
        picked.setdefault(text, (label, confidence))
    project = alert.project
    notes = []
    if not picked:
        notes.append("No texts were recorded that day (turn on recording texts to queue "
                     "them for annotation).")
    else:
        lines = [json.dumps({"text": text, "meta": {
            "source": "production", "served_by_round": alert.round.number,
            "served_on": alert.day.isoformat(), "predicted": label,
            "confidence": round(confidence, 4)}}) for text, (label, confidence) in picked.items()]
        try:
            report = documents_import(project=project, file=io.BytesIO(
                ("\n".join(lines) + "\n").encode("utf-8")), fmt="jsonl",
                user=project.created_by, name="production.jsonl")
            alert.queued_documents = report.created
        except DocumentImportError as exc:
            notes.append(f"The texts could not be added: {exc}")
        try:
            alert.queued_round = round_request(project=project, trigger=Round.Trigger.DRIFT)
        except (RoundBusy, BaseModelUnavailable) as exc:
            notes.append(f"No round was queued: {exc}")
    alert.note = " ".join(notes)
    alert.save(update_fields=["queued_documents", "queued_round", "note"])
    return alert


def drift_checks_run(*, since: datetime) -> list[DriftAlert]:
    """Checks every project that served predictions since `since` (the worker's last
    pass); a failing project is logged and the others go on."""
    alerts = []
    for project in Project.objects.filter(
        pk__in=LearnerSettings.objects.values("project_id")
    ).order_by("pk"):
        if not ServedPrediction.objects.filter(project=project, created_at__gte=since).exists():
            continue
        try:
            alert = drift_check(project=project)
        except Exception:  # noqa: BLE001 - monitoring must never stop the rounds
            log.exception("Project %s: drift check failed", project.pk)
            continue
        if alert is not None:
            alerts.append(alert)
    return alerts


def drift_alert_clear(*, alert: DriftAlert, user: AbstractBaseUser) -> DriftAlert:
    """A lead has seen the alert: the project is no longer marked for it."""
    DriftAlert.objects.filter(pk=alert.pk, cleared_at__isnull=True).update(
        cleared_at=timezone.now(), cleared_by=user)
    alert.refresh_from_db()
    return alert
