"""The fast refresh between rounds: re-score the pool from the latest round's cached
embeddings with a logistic-regression head fitted on every label there is now.

A fine-tuning round takes minutes; an annotator labels a document every few seconds. The
round leaves each training-side document's pooled embedding on disk (learner.embeddings);
`refresh_project` fits learner.ml.refresh.EmbeddingHead on the embeddings of the documents
labelled so far, predicts the unlabelled pool, scores it with the project's strategy,
rewrites the round's Prediction rows and runs the strategy's batch selection again
(learner.selection), so the queue follows the new labels within seconds.

The worker calls `refresh_due` between rounds: it refreshes the projects whose labels
changed since their last refresh (or since their latest round read its labels).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction

from annotate import selectors
from annotate.models import Adjudication, Document, Project
from learner import selection
from learner.embeddings import cache_read
from learner.ml.queue import refresh_head
from learner.ml.refresh import committee_proba, refresh_scores
from learner.ml.strategies import get_strategy
from learner.ml.tasks import Task, task_for
from learner.models import LearnerSettings, Prediction, Round
from learner.services import training_label_count

log = logging.getLogger("labelwise.learner")

def predicted_and_confidence(
    probs: np.ndarray, label_ids: list[int], *, task: Task,
    thresholds: np.ndarray | float | None = None,
) -> tuple[list[list[int]], np.ndarray]:
    """Predicted Label ids per row (sorted) and a confidence in [0, 1] per row, as the
    task decodes them (``Task.predicted_lists``, ``Task.confidence``)."""
    predicted = [sorted(label_ids[j] for j in row)
                 for row in task.predicted_lists(probs, thresholds)]
    return predicted, task.confidence(probs, thresholds)


WRITE_BATCH = 2000
# Score and confidence changes below this are not written back (see refresh_project).
UNCHANGED = 1e-3


def latest_done_round(project_id: int) -> Round | None:
    return (
        Round.objects.with_models().filter(project_id=project_id, status=Round.Status.DONE)
        .order_by("-number").first()
    )


def refresh_project(project: Project, *, timings: dict[str, float] | None = None) -> int:
    """Re-scores the project's unlabelled pool from the latest done round's cached
    embeddings with a head fitted on all current training-side labels; rewrites that
    round's Prediction rows (labels, probs, confidence, score) and returns how many.

    0 when there is nothing to do: no done round, no cache, no labelled document in it.
    Documents imported after the round have no cached embedding and keep no prediction
    (the queue reaches them in random order, as before). `timings`, if given, receives
    the seconds of each phase (read, fit, score, write)."""
    clock = _Clock(timings)
    round = latest_done_round(project.pk)
    if round is None:
        return 0
    cached = cache_read(round.artifact_path)
    if cached is None:
        return 0
    labels = selectors.labels_of(project)
    label_ids = [label.pk for label in labels]
    task = task_for(project.task_type)
    index = {label_id: j for j, label_id in enumerate(label_ids)}

    labelled = [
        (doc_id, columns)
        for doc_id, final in Document.objects.filter(
            project=project, split=Document.Split.POOL, final_labels__isnull=False
        ).values_list("id", "final_labels").iterator(chunk_size=5000)
        # Labels deleted since are dropped; an answer the task cannot learn from (a
        # single-label answer whose label is gone) does not train the head.
        if task.accepts(columns := [index[i] for i in final if i in index])
    ]
    found, lab_rows = cached.rows_of(np.fromiter((d for d, _ in labelled), dtype=np.int64))
    if len(found) == 0:
        return 0
    x_lab = cached.take(lab_rows)
    y = task.targets([labelled[i][1] for i in found], len(label_ids))

    clock.lap("read_s")

    settings = LearnerSettings.objects.filter(project=project).first()
    seed = (settings.seed if settings else 0) + len(found)
    chosen = selection.strategy_for(project.pk, round, task=task)
    strategy = chosen
    if "mc_probs" in strategy.requires:
        # Per-document scores from a dropout committee mean nothing for a linear head: the
        # streamed scores use margin; the batch selection below runs BALD on a bootstrap
        # committee of heads.
        strategy = get_strategy("margin", task=task)
    # The head's columns are the label indices, in label_ids order.
    head = refresh_head(x_lab, y, task=task, classes=range(len(label_ids)), seed=seed)
    clock.lap("fit_s")
    wants_labelled = "labeled_embeddings" in strategy.requires
    sign = 1.0 if strategy.higher_is_more_informative else -1.0
    seen = written = 0
    # The pool streams through in chunks of predictions (keyset on their id): memory is
    # bounded by a chunk, not the pool, whatever its size.
    for pool in _open_predictions(round, POOL_CHUNK):
        pool_found, pool_rows = cached.rows_of(np.fromiter((r[1] for r in pool), dtype=np.int64))
        seen += len(pool_found)
        if len(pool_found) == 0:
            continue
        probs, scores = refresh_scores(
            head, cached.take(pool_rows), strategy,
            labeled_embeddings=x_lab if wants_labelled else None, seed=seed,
        )
        predicted, confidence = predicted_and_confidence(probs, label_ids, task=task)
        scores = sign * np.asarray(scores, dtype=np.float64)
        # Rewriting a row costs far more than computing it (PostgreSQL writes a new tuple
        # and its index entries), and one new label moves most scores by a hair: rows whose
        # score and confidence moved less than UNCHANGED and whose label did not change
        # keep their stored values, so the queue's order is off by at most that much.
        old = [pool[i] for i in pool_found]
        old_scores = np.array([np.nan if r[2] is None else r[2] for r in old], dtype=np.float64)
        old_confidence = np.array([r[3] for r in old], dtype=np.float64)
        changed = ~(
            (np.abs(scores - old_scores) < UNCHANGED)
            & (np.abs(confidence - old_confidence) < UNCHANGED)
            & np.array([r[4] == p for r, p in zip(old, predicted, strict=True)], dtype=bool)
        )
        rows = np.flatnonzero(changed)
        _write([old[i][0] for i in rows], [predicted[i] for i in rows],
               np.round(probs[rows], 5), confidence[rows], scores[rows])
        written += len(rows)
    clock.lap("score_write_s")
    if seen == 0:
        return 0
    selection.queue_select(
        round, chosen, cached, k=selection.batch_size(settings), seed=seed,
        probs_for=lambda _ids, emb: head.predict_proba(emb),
        labelled=selection.Labelled(x_lab, head.predict_proba(x_lab)),
        mc_for=lambda _ids, emb: committee_proba(head, x_lab, y, emb, seed=seed),
    )
    clock.lap("select_s")
    selectors.queue_plan_forget(project.pk)
    if timings is not None:
        timings["written"] = float(written)
    return seen


POOL_CHUNK = 20_000


def _open_predictions(round: Round, chunk: int) -> Iterator[list[tuple]]:
    """The round's predictions for documents still unlabelled on the training side, as
    (prediction id, document id, score, confidence, labels), a chunk at a time."""
    last = 0
    while True:
        rows = list(
            Prediction.objects.filter(
                round=round, id__gt=last, document__split=Document.Split.POOL,
                document__final_labels__isnull=True,
            ).order_by("id").values_list("id", "document_id", "score", "confidence", "labels")
            [:chunk]
        )
        if not rows:
            return
        yield rows
        last = rows[-1][0]


class _Clock:
    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[name] = now - self.last
        self.last = now


def _write(
    prediction_ids: list[int],
    predicted: list[list[int]],
    probs: np.ndarray,
    confidence: np.ndarray,
    scores: np.ndarray,
) -> None:
    """Rewrites the predictions in batches, one short transaction each, so annotators'
    writes are never held up for the whole pool."""
    for start in range(0, len(prediction_ids), WRITE_BATCH):
        end = start + WRITE_BATCH
        rows = [
            (
                prediction_ids[i],
                json.dumps(predicted[i]),
                json.dumps(probs[i].tolist()),
                float(confidence[i]),
                float(scores[i]),
            )
            for i in range(start, min(end, len(prediction_ids)))
        ]
        with transaction.atomic():
            _update_batch(rows)


def _update_batch(rows: list[tuple[int, str, str, float, float]]) -> None:
    table = Prediction._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement per batch: UPDATE ... FROM unnest(arrays). bulk_update's
            # CASE WHEN per row and field takes seconds for a 20,000-row pool.
            ids, labels, probs, confidence, scores = (list(col) for col in zip(*rows, strict=True))
            cursor.execute(
                f"UPDATE {table} AS p SET labels = v.labels::jsonb, probs = v.probs::jsonb,"
                " confidence = v.confidence, score = v.score"
                " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::float8[],"
                " %s::float8[]) AS v(id, labels, probs, confidence, score)"
                " WHERE p.id = v.id",
                [ids, labels, probs, confidence, scores],
            )
        else:
            # SQLite runs a prepared UPDATE per row in-process: fast with executemany.
            cursor.executemany(
                f"UPDATE {table} SET labels = %s, probs = %s, confidence = %s, score = %s"
                " WHERE id = %s",
                [(labels, probs, conf, score, pk) for pk, labels, probs, conf, score in rows],
            )


# --- when to refresh -----------------------------------------------------------------------


def _state_key(project_id: int) -> str:
    return f"labelwise:refresh-state:{project_id}"


def labels_state(round: Round) -> tuple[int, int]:
    """What the refresh compares: training-side final labels now, and decisions made since
    the round read its labels (an adjudication can change a label without changing the
    count)."""
    since = round.started_at or round.created_at
    return (
        training_label_count(round.project_id),
        Adjudication.objects.filter(
            document__project_id=round.project_id, created_at__gte=since
        ).count(),
    )


def refresh_due(*, should_stop: Callable[[], bool] = lambda: False) -> list[tuple[int, int]]:
    """Refreshes every project whose labels changed since its last refresh, or since its
    latest done round read its labels; returns (project id, predictions rewritten) pairs.

    Projects with a queued round are skipped (the round is about to replace the scores and
    must not wait); `should_stop` is asked before each project so a caller can cut the
    pass short."""
    latest: dict[int, int] = {}
    for project_id, round_id in (
        Round.objects.with_models().filter(status=Round.Status.DONE)
        .order_by("project_id", "-number").values_list("project_id", "id")
    ):
        latest.setdefault(project_id, round_id)
    queued = set(
        Round.objects.filter(status=Round.Status.QUEUED).values_list("project_id", flat=True)
    )
    refreshed = []
    for project_id, round_id in latest.items():
        if project_id in queued:
            continue
        if should_stop():
            break
        round = Round.objects.select_related("project").get(pk=round_id)
        state = labels_state(round)
        last = cache.get(_state_key(project_id))
        baseline = last[1] if last and last[0] == round_id else (round.n_train, 0)
        if state == baseline:
            continue
        started = time.perf_counter()
        n = refresh_project(round.project)
        cache.set(_state_key(project_id), (round_id, state), None)
        if n:
            log.info("project %s: refreshed %s predictions in %.2f s", project_id, n,
                     time.perf_counter() - started)
        refreshed.append((project_id, n))
    return refreshed
