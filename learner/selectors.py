"""Reads for the learner dashboard and the rounds pages.

Everything here is bounded by the number of rounds, labels or annotators, never by the
number of documents: histograms are GROUP BYs in the database, agreement streams the
overlapping annotations one document at a time.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import (
    Avg,
    BooleanField,
    Count,
    F,
    Max,
    Min,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Floor, TruncDate, TruncMinute
from django.http import Http404
from django.utils import timezone

from annotate import agreement
from annotate import selectors as annotate_selectors
from annotate.models import Annotation, Label, Project
from learner.ml.monitoring import CONFIDENCE_BINS, Drift, drift_between
from learner.models import DriftAlert, ExportJob, Prediction, Round, ServedPrediction

# --- rounds --------------------------------------------------------------------------------


def rounds_of(project: Project) -> QuerySet[Round]:
    """The project's rounds, newest first, without the heavy text columns."""
    return (
        Round.objects.filter(project=project)
        .select_related("requested_by", "guideline_version")
        .defer("traceback")
        .order_by("-number")
    )


def round_get(project: Project, number: int) -> Round:
    """One round of the project by its number, or Http404."""
    try:
        return Round.objects.select_related("requested_by", "guideline_version").get(
            project=project, number=number
        )
    except Round.DoesNotExist:
        raise Http404("No such round") from None


def round_active(project: Project) -> Round | None:
    """The project's queued or running round, if any (there is at most one)."""
    return (
        Round.objects.filter(project=project, status__in=Round.ACTIVE)
        .defer("traceback", "metrics")
        .order_by("-number")
        .first()
    )


def adaptation_latest(project: Project) -> Round | None:
    """The project's latest finished domain adaptation of its encoder, if any."""
    return Round.objects.filter(project=project, trigger=Round.Trigger.ADAPT,
                                status=Round.Status.DONE).order_by("-number").first()


@dataclass(frozen=True)
class Recording:
    """What the predictions endpoint records of a request (the project's LearnerSettings;
    a project without a settings row records predictions, not texts)."""

    predictions: bool = True
    texts: bool = False


def _with_recording(queryset: QuerySet[Any], path: str) -> QuerySet[Any]:
    """`queryset` with the project's recording settings joined in (through `path`, the
    lookup to the project), read as `recording_of` reads them: the predictions endpoint
    learns them in the query it makes anyway, not in a settings read of its own."""
    settings = f"{path}__learner_settings__"
    return queryset.annotate(
        recording_predictions=Coalesce(F(settings + "record_predictions"), Value(True),
                                       output_field=BooleanField()),
        recording_texts=Coalesce(F(settings + "record_texts"), Value(False),
                                 output_field=BooleanField()),
    )


def recording_of(row: Round | ExportJob) -> Recording:
    """The recording settings read with a row of `round_for_serving` or
    `export_for_serving`."""
    return Recording(predictions=bool(row.recording_predictions),  # type: ignore[union-attr]
                     texts=bool(row.recording_texts))  # type: ignore[union-attr]


def round_for_serving(project: Project, number: int | None) -> Round | None:
    """The round the predictions endpoint serves: round `number` of the project (any
    status: the caller says why one not done cannot serve), else the latest done round
    with a model; with the recording settings (`recording_of`). None when there is none."""
    if number is not None:
        rounds = Round.objects.filter(project=project, number=number)
    else:
        rounds = Round.objects.with_models().filter(
            project=project, status=Round.Status.DONE).order_by("-number")
    return _with_recording(rounds, "project").first()


def export_for_serving(project: Project, export_id: int) -> ExportJob | None:
    """Export job `export_id` of one of the project's rounds, with its round and the
    recording settings (`recording_of`); None when the project has no such export."""
    jobs = ExportJob.objects.filter(pk=export_id, round__project=project).select_related(
        "round")
    return _with_recording(jobs, "round__project").first()


def export_jobs_of(round: Round, *, limit: int | None = 20) -> list[ExportJob]:
    """The round's latest model exports, newest first (every one with `limit` None)."""
    jobs = ExportJob.objects.filter(round=round).select_related("round").order_by(
        "-created_at", "-id")
    return list(jobs if limit is None else jobs[:limit])


def export_job_get(project: Project, job_id: int) -> ExportJob:
    """Export job `job_id` of one of the project's rounds, with its round; 404 otherwise."""
    job = ExportJob.objects.select_related("round").filter(
        pk=job_id, round__project=project).first()
    if job is None:
        raise Http404("No such export job")
    return job


def documents_with_round_score(documents: QuerySet[Any], round: Round, *,
                               score_min: float | None = None, score_max: float | None = None
                               ) -> QuerySet[Any]:
    """`documents` annotated with `round_score`: the round's strategy score of each (None
    where the round did not score it), kept to [score_min, score_max] where given."""
    score = Prediction.objects.filter(round=round, document=OuterRef("pk"))
    documents = documents.annotate(round_score=Subquery(score.values("score")[:1]))
    if score_min is not None:
        documents = documents.filter(round_score__gte=score_min)
    if score_max is not None:
        documents = documents.filter(round_score__lte=score_max)
    return documents


def export_jobs_active(round: Round) -> bool:
    """Whether one of the round's exports is queued or running (the page polls)."""
    return ExportJob.objects.filter(round=round, status__in=ExportJob.ACTIVE).exists()


def round_latest_done(project: Project) -> Round | None:
    """The latest round with a model (an encoder adaptation has none)."""
    return Round.objects.with_models().filter(project=project, status=Round.Status.DONE
                                              ).order_by("-number").first()


def round_final_source(project: Project) -> Round | None:
    """The latest finished round that trained a classifier (not a cold start, which has
    none): what a final model is searched from."""
    return (Round.objects.with_models().filter(project=project, status=Round.Status.DONE)
            .exclude(trigger=Round.Trigger.COLD_START).order_by("-number").first())


def round_shown(project: Project, number: int | None) -> Round | None:
    """The done round the dashboard details: the chosen one, else the latest."""
    if number is not None:
        chosen = Round.objects.with_models().filter(
            project=project, number=number, status=Round.Status.DONE
        ).first()
        if chosen is not None:
            return chosen
    return round_latest_done(project)


@dataclass(frozen=True)
class CurvePoint:
    number: int
    n_train: int
    macro_f1: float
    accuracy: float
    # The frozen-embedding baseline (linear probe) on the same labels; None for rounds
    # from before it was recorded.
    baseline_f1: float | None = None


def learning_curve(project: Project) -> list[CurvePoint]:
    """One point per done round that was evaluated on a holdout, in round order."""
    rows = (
        Round.objects.filter(project=project, status=Round.Status.DONE, metrics__isnull=False)
        .order_by("number")
        .values_list("number", "n_train", "metrics", "fit")
    )
    points = []
    for number, n_train, metrics, fit in rows:
        if not isinstance(metrics, dict) or "macro_f1" not in metrics:
            continue
        baseline = (fit or {}).get("baseline") or {}
        points.append(CurvePoint(number=number, n_train=n_train,
                                 macro_f1=float(metrics["macro_f1"]),
                                 accuracy=float(metrics.get("accuracy", 0.0)),
                                 baseline_f1=baseline.get("macro_f1")))
    return points


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int
    colour: str


def round_class_metrics(round: Round, labels: list[Label]) -> list[ClassMetrics]:
    """Per-class figures of a round, in the project's label order (labels added after the
    round, or renamed since, come last in the round's own order)."""
    per_class = (round.metrics or {}).get("per_class") or {}
    colours = {label.name: label.colour for label in labels}
    order = {label.name: i for i, label in enumerate(labels)}
    names = sorted(per_class, key=lambda n: (order.get(n, len(order)), n))
    return [
        ClassMetrics(
            name=name,
            precision=float(per_class[name].get("precision", 0.0)),
            recall=float(per_class[name].get("recall", 0.0)),
            f1=float(per_class[name].get("f1", 0.0)),
            support=int(per_class[name].get("support", 0)),
            colour=colours.get(name, "#8c959f"),
        )
        for name in names
    ]


def round_label_names(round: Round, labels: list[Label]) -> list[str]:
    """The class names in the order of the round's confusion matrix.

    The pipeline orders classes as the project's labels were at training time. A round
    that recorded them (config["labels"]) is read as recorded; otherwise the project's
    current labels are used when their number still matches. (jsonb does not keep the
    key order of metrics["per_class"], so that cannot be relied on.)
    """
    matrix = (round.metrics or {}).get("confusion_matrix") or []
    recorded = (round.config or {}).get("labels")
    if recorded and len(recorded) == len(matrix):
        return [str(name) for name in recorded]
    if len(labels) == len(matrix):
        return [label.name for label in labels]
    return [f"class {i + 1}" for i in range(len(matrix))]


@dataclass(frozen=True)
class Histogram:
    counts: list[int]
    edges: list[float]
    total: int


def confidence_histogram(round: Round, *, bins: int = 20) -> Histogram:
    """The round's pool predictions binned by confidence over [0, 1], counted in the
    database (one GROUP BY; a confidence of exactly 1 falls into the last bin). Labelled
    documents' predictions (score null: kept for the review queues) are not the pool."""
    counts = [0] * bins
    rows = (
        Prediction.objects.filter(round=round, score__isnull=False)
        .annotate(bucket=Floor(F("confidence") * bins))
        .values("bucket")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        bucket = min(max(int(row["bucket"]), 0), bins - 1)
        counts[bucket] += row["n"]
    return Histogram(counts=counts, edges=[i / bins for i in range(bins + 1)],
                     total=sum(counts))


# --- labels and annotators -----------------------------------------------------------------


@dataclass(frozen=True)
class LabelCount:
    name: str
    colour: str
    count: int


def label_distribution(project: Project) -> list[LabelCount]:
    """Final labels per class, in label order."""
    counts = annotate_selectors.label_counts(project)
    return [
        LabelCount(name=label.name, colour=label.colour, count=counts.get(label.pk, 0))
        for label in annotate_selectors.labels_of(project)
    ]


@dataclass(frozen=True)
class Throughput:
    username: str
    annotations: int
    active_hours: float  # time spent labelling, breaks left out (see annotator_throughput)
    per_hour: float | None  # annotations per active hour; None when no time was measured
    median_seconds: float | None  # time spent per annotation, from duration_ms


# A pause longer than this between two labels is a break, not work.
BREAK_AFTER = timedelta(minutes=5)


def annotator_throughput(project: Project, *, days: int = 7) -> list[Throughput]:
    """Each annotator's pace over the last `days` days: annotations per active hour, where
    active time is the time between consecutive labels, leaving out pauses longer than
    BREAK_AFTER; the first label after a break counts for the time it was on screen
    (duration_ms), where the page measured it.

    (Counting every clock hour that holds a label as a whole hour read a few minutes of
    fast work as an hour of slow work: 231 an hour for annotators labelling 1,800.)

    Read per (annotator, minute) from the database, first and last label and count each,
    so rows grow with the minutes worked, not the labels: the gaps inside a minute add up
    to its last label less its first."""
    since = timezone.now() - timedelta(days=days)
    rows = (
        Annotation.objects.filter(
            document__project=project, source=Annotation.Source.HUMAN, created_at__gte=since,
            annotator__isnull=False,
        )
        .annotate(minute=TruncMinute("created_at"))
        .values("annotator", "minute")
        .annotate(n=Count("id"), first=Min("created_at"), last=Max("created_at"),
                  on_screen_ms=Avg("duration_ms"))
        .order_by("annotator", "minute")
    )
    count: Counter = Counter()
    seconds: Counter = Counter()
    for user_id, group in itertools.groupby(rows, key=lambda r: r["annotator"]):
        previous = None
        for row in group:
            count[user_id] += row["n"]
            gap = row["first"] - previous if previous is not None else None
            if gap is not None and gap <= BREAK_AFTER:
                seconds[user_id] += gap.total_seconds()
            elif row["on_screen_ms"] is not None:
                # The session's first label: the time it was on screen (the minute's mean).
                seconds[user_id] += float(row["on_screen_ms"]) / 1000
            seconds[user_id] += (row["last"] - row["first"]).total_seconds()
            previous = row["last"]
    medians = _median_durations(project, since, list(count))
    names = dict(get_user_model().objects.filter(pk__in=count).values_list("pk", "username"))
    result = [
        Throughput(
            username=names.get(user_id, str(user_id)),
            annotations=count[user_id],
            active_hours=seconds[user_id] / 3600,
            per_hour=count[user_id] * 3600 / seconds[user_id] if seconds[user_id] else None,
            median_seconds=medians.get(user_id),
        )
        for user_id in count
    ]
    return sorted(result, key=lambda t: (-t.annotations, t.username))


def _median_durations(project: Project, since: object, user_ids: list[int]) -> dict[int, float]:
    """Median seconds per annotation per annotator, from a duration histogram in whole
    seconds (GROUP BY annotator, seconds) rather than every row."""
    rows = (
        Annotation.objects.filter(
            document__project=project, source=Annotation.Source.HUMAN, created_at__gte=since,
            annotator__in=user_ids, duration_ms__isnull=False,
        )
        .annotate(seconds=Floor(F("duration_ms") / 1000.0))
        .values("annotator", "seconds")
        .annotate(n=Count("id"))
        .order_by("annotator", "seconds")
    )
    medians: dict[int, float] = {}
    for user_id, group in itertools.groupby(rows, key=lambda r: r["annotator"]):
        buckets = [(float(r["seconds"]), r["n"]) for r in group]
        half = sum(n for _, n in buckets) / 2
        seen = 0
        for seconds, n in buckets:
            seen += n
            if seen >= half:
                medians[user_id] = seconds + 0.5  # the middle of the whole-second bucket
                break
    return medians


# --- agreement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PairAgreement:
    coder_a: str
    coder_b: str
    documents: int  # documents both labelled
    kappa: float | None  # None where undefined (e.g. both always gave the same label)
    observed: float  # share of those documents with identical answers


@dataclass(frozen=True)
class Agreement:
    pairs: list[PairAgreement]
    alpha: float | None  # Krippendorff's alpha (nominal) over documents with >= 2 answers
    documents: int  # documents with >= 2 human answers
    note: str  # how to read kappa and alpha for the project's task


def _units(project: Project) -> Iterator[list[tuple[int, frozenset[int]]]]:
    """Human answers per document, for documents with at least two, one document at a
    time: [(annotator id, label ids), ...]."""
    rows = (
        Annotation.objects.filter(
            document__project=project,
            document__n_annotations__gte=2,
            source=Annotation.Source.HUMAN,
        )
        .order_by("document_id", "annotator_id")
        .values_list("document_id", "annotator_id", "labels")
    )
    for _document, group in itertools.groupby(rows.iterator(chunk_size=5000),
                                              key=lambda r: r[0]):
        answers = [(annotator, frozenset(labels or [])) for _, annotator, labels in group]
        if len(answers) >= 2:
            yield answers


def agreement_of(project: Project) -> Agreement:
    """Cohen's kappa for every pair of annotators over the documents both labelled, and
    Krippendorff's alpha (nominal) over all documents with two or more answers.

    The task names the questions and each answer's value for them (single-label: one
    question, the label id; multi-label: per-label yes/no, see annotate/agreement.py for
    why); kappa and alpha are averaged over the questions. The tables are accumulated
    while streaming, so memory grows with annotators and labels only.
    """
    task = project.task
    label_ids = [label.pk for label in annotate_selectors.labels_of(project)]
    # (a, b) -> per question: Counter of (value_a, value_b).
    tables: dict[tuple[int, int], dict[object, Counter]] = {}
    same: Counter = Counter()
    shared: Counter = Counter()
    coincidences: dict[object, Counter] = {}
    questions = task.agreement_questions(label_ids)
    documents = 0
    value = task.agreement_value

    for answers in _units(project):
        documents += 1
        for question in questions:
            agreement.coincidences_add(
                coincidences.setdefault(question, Counter()),
                [value(labels, question) for _, labels in answers],
            )
        for (a, labels_a), (b, labels_b) in itertools.combinations(answers, 2):
            shared[(a, b)] += 1
            same[(a, b)] += labels_a == labels_b
            per_question = tables.setdefault((a, b), {})
            for question in questions:
                va, vb = value(labels_a, question), value(labels_b, question)
                if va is not None and vb is not None:
                    per_question.setdefault(question, Counter())[(va, vb)] += 1

    names = dict(
        get_user_model().objects.filter(pk__in={u for pair in shared for u in pair})
        .values_list("pk", "username")
    )
    pairs = [
        PairAgreement(
            coder_a=names.get(a, str(a)),
            coder_b=names.get(b, str(b)),
            documents=shared[(a, b)],
            kappa=agreement.mean_defined(
                agreement.kappa_from_table(t) for t in tables[(a, b)].values()
            ),
            observed=same[(a, b)] / shared[(a, b)],
        )
        for a, b in sorted(shared)
    ]
    alpha = agreement.mean_defined(
        agreement.alpha_from_coincidences(m) for m in coincidences.values()
    )
    return Agreement(pairs=pairs, alpha=alpha, documents=documents, note=task.agreement_note)


# Agreement streams every overlapping annotation; on a large project that is worth a short
# cache rather than a recount on every dashboard load.
AGREEMENT_TTL_SECONDS = 60


def agreement_cached(project: Project) -> Agreement:
    key = f"labelwise:agreement:{project.pk}"
    result = cache.get(key)
    if result is None:
        result = agreement_of(project)
        cache.set(key, result, AGREEMENT_TTL_SECONDS)
    return result


# --- monitoring ----------------------------------------------------------------------------


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The day's first instant and the next day's, in the server's time zone."""
    start = timezone.make_aware(datetime.combine(day, time.min))
    return start, timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))


def served_profile(round: Round, start: datetime, end: datetime) -> dict[str, Any]:
    """The round's predictions served in [start, end) as a profile drift compares with the
    holdout's (learner.ml.monitoring.profile_of): two GROUP BYs in the database."""
    rows = ServedPrediction.objects.filter(round=round, created_at__gte=start,
                                           created_at__lt=end)
    counts = [0] * CONFIDENCE_BINS
    for row in (rows.annotate(bucket=Floor(F("confidence") * CONFIDENCE_BINS))
                .values("bucket").annotate(n=Count("id")).order_by()):
        counts[min(max(int(row["bucket"]), 0), CONFIDENCE_BINS - 1)] += row["n"]
    predicted = dict(rows.values_list("label").annotate(n=Count("id")).order_by())
    return {"n": sum(counts), "bins": CONFIDENCE_BINS, "confidence": counts,
            "predicted": predicted}


def drift_between_profiles(reference: dict[str, Any], served: dict[str, Any], *,
                           threshold: float) -> Drift:
    return drift_between(reference.get("confidence") or [0] * CONFIDENCE_BINS,
                         reference.get("predicted") or {}, served["confidence"],
                         served["predicted"], threshold=threshold)


def drift_of_day(round: Round, day: date, *, threshold: float) -> Drift:
    """How far the round's predictions on `day` are from its holdout's."""
    return drift_between_profiles(round.holdout_profile or {},
                                  served_profile(round, *day_bounds(day)),
                                  threshold=threshold)


@dataclass(frozen=True)
class MonitoredDay:
    day: date
    volume: int  # every prediction the project served that day, whichever round
    profile: dict[str, Any]  # the monitored round's predictions that day
    drift: Drift


def monitoring_days(project: Project, round: Round | None, *, threshold: float,
                    days: int = 14) -> list[MonitoredDay]:
    """The last `days` days with predictions, newest first: the project's volume, and the
    monitored round's profile and drift from its holdout. Grouped in the database by day
    (three GROUP BYs over the window, whatever the number of rows)."""
    end = day_bounds(timezone.localdate())[1]
    start = end - timedelta(days=days)
    served = ServedPrediction.objects.filter(created_at__gte=start, created_at__lt=end)
    volume = dict(served.filter(project=project).annotate(day=TruncDate("created_at"))
                  .values_list("day").annotate(n=Count("id")).order_by())
    profiles: dict[date, dict[str, Any]] = {}

    def profile(day: date) -> dict[str, Any]:
        return profiles.setdefault(day, {"n": 0, "bins": CONFIDENCE_BINS,
                                         "confidence": [0] * CONFIDENCE_BINS,
                                         "predicted": {}})

    if round is not None:
        mine = served.filter(round=round).annotate(day=TruncDate("created_at"))
        for day, bucket, n in (mine.annotate(bucket=Floor(F("confidence") * CONFIDENCE_BINS))
                               .values_list("day", "bucket").annotate(n=Count("id"))
                               .order_by()):
            p = profile(day)
            p["confidence"][min(max(int(bucket), 0), CONFIDENCE_BINS - 1)] += n
            p["n"] += n
        for day, label, n in mine.values_list("day", "label").annotate(n=Count("id")).order_by():
            profile(day)["predicted"][label] = n
    reference = (round.holdout_profile or {}) if round is not None else {}
    return [
        MonitoredDay(day=day, volume=volume.get(day, 0), profile=profile(day),
                     drift=drift_between_profiles(reference, profile(day), threshold=threshold))
        for day in sorted(set(volume) | set(profiles), reverse=True)
    ]


def drift_alerts_open(project: Project) -> QuerySet[DriftAlert]:
    """The alerts that mark the project: raised and not cleared by a lead."""
    return (DriftAlert.objects.filter(project=project, cleared_at__isnull=True)
            .select_related("round", "queued_round").order_by("-day", "-id"))
