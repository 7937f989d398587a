"""One training round, from database rows to stored predictions.

Reads the project's final labels (training side and holdout), fine-tunes with learner/ml,
evaluates on the holdout, saves the artifact, then scores the training side in chunks
streamed from the database so memory does not grow with the pool: the unlabelled pool for
the queue, the labelled documents for the review pages, and every document's embedding
for the fast refresh. Returns the fields the worker writes onto the Round row.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from annotate import selectors
from annotate.bulk import ANALYZE_AFTER_ROWS, db_value, rows_insert, table_analyze
from annotate.models import Document
from learner.ml.artifact import data_fingerprint
from learner.ml.backends import get_backend
from learner.ml.config import ScoreConfig, TrainConfig
from learner.ml.evaluate import evaluate
from learner.ml.strategies import DEFAULT_STRATEGY, get_strategy
from learner.ml.train import TextClassifier
from learner.models import Prediction, Round
from learner.refresh import (
    EMBEDDING_DTYPE,
    EMBEDDING_IDS_FILE,
    EMBEDDINGS_FILE,
    predicted_and_confidence,
    write_embeddings_meta,
)

Progress = Callable[..., None]
PREDICTION_COLUMNS = ["document_id", "labels", "probs", "confidence", "score"]


class NotEnoughLabels(ValueError):
    """The project's labels cannot train a model yet (too few, or a single class)."""


def train_config_for(round: Round, *, multi_label: bool) -> TrainConfig:
    c = round.config
    return TrainConfig(
        model_name_or_path=c.get("model_name") or None,
        mode=c.get("mode", "full"),
        multi_label=multi_label,
        max_length=int(c.get("max_length", 128)),
        epochs=int(c.get("epochs", 3)),
        learning_rate=float(c.get("learning_rate", 5e-5)),
        batch_size=int(c.get("batch_size", 16)),
        seed=int(c.get("seed", 0)),
    )


def _labelled(project_id: int, split: str) -> tuple[list[int], list[str], list[list[int]]]:
    rows = Document.objects.filter(
        project_id=project_id, split=split, final_labels__isnull=False
    ).values_list("id", "text", "final_labels")
    ids, texts, finals = [], [], []
    for doc_id, text, final in rows.iterator(chunk_size=2000):
        ids.append(doc_id)
        texts.append(text)
        finals.append(final)
    return ids, texts, finals


def _targets(finals: list[list[int]], index: dict[int, int], multi_label: bool) -> Any:
    if multi_label:
        matrix = np.zeros((len(finals), len(index)), dtype=np.float32)
        for row, final in enumerate(finals):
            for label_id in final:
                matrix[row, index[label_id]] = 1.0
        return matrix
    return np.asarray([index[final[0]] for final in finals], dtype=np.int64)


def _training_side_chunks(
    project_id: int, chunk_size: int, max_id: int
) -> Iterator[tuple[list[int], list[str], list[bool]]]:
    """Training-side documents (ids up to `max_id`), labelled or not, a chunk at a time by
    keyset pagination (an OFFSET would rescan the skipped rows for every chunk). Yields
    (ids, texts, labelled flags)."""
    last_id = 0
    while True:
        rows = list(
            Document.objects.filter(
                project_id=project_id, split=Document.Split.POOL, id__gt=last_id,
                id__lte=max_id,
            ).order_by("id").values_list("id", "text", "final_labels")[:chunk_size]
        )
        if not rows:
            return
        yield [r[0] for r in rows], [r[1] for r in rows], [r[2] is not None for r in rows]
        last_id = rows[-1][0]


def artifact_dir(round: Round) -> Path:
    return Path(settings.LABELWISE_ARTIFACT_DIR) / f"project-{round.project_id}" / (
        f"round-{round.number}"
    )


def run_round(round: Round, progress: Progress) -> dict[str, Any]:
    project = round.project
    labels = selectors.labels_of(project)
    names = [label.name for label in labels]
    index = {label.pk: i for i, label in enumerate(labels)}
    multi = project.is_multi_label
    timings: dict[str, float] = {}

    progress("loading data")
    train_ids, train_texts, train_finals = _labelled(project.pk, Document.Split.POOL)
    hold_ids, hold_texts, hold_finals = _labelled(project.pk, Document.Split.HOLDOUT)
    y = _targets(train_finals, index, multi)
    if len(train_ids) < 4:
        raise NotEnoughLabels(f"Only {len(train_ids)} labelled documents outside the holdout; "
                              "a round needs at least 4.")
    if not multi and len(set(y.tolist())) < 2:
        raise NotEnoughLabels("Every labelled document has the same label; a round needs "
                              "at least two classes.")
    guideline = selectors.guideline_current(project)
    fingerprint = data_fingerprint(
        train_ids, [sorted(names[index[i]] for i in f) for f in train_finals]
    )

    config = train_config_for(round, multi_label=multi)
    started = time.perf_counter()

    def train_progress(phase: str, step: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        eta = elapsed / step * (total - step) if step else None
        progress(phase, step, total, eta)

    # The backend trains here, or data-parallel on a Ray cluster (LEARNER_BACKEND=ray with
    # LABELWISE_RAY_TRAIN_WORKERS > 1).
    classifier = get_backend().train(
        config, names, train_texts, y, doc_ids=train_ids, progress=train_progress
    )
    timings["train_s"] = round_s(time.perf_counter() - started)

    metrics = None
    if hold_ids:
        progress("evaluating", 0, len(hold_ids))
        t0 = time.perf_counter()
        probs = classifier.predict_proba(hold_texts)
        metrics = evaluate(_targets(hold_finals, index, multi), probs, names,
                           multi_label=multi, thresholds=classifier.thresholds_)
        timings["evaluate_s"] = round_s(time.perf_counter() - t0)

    t0 = time.perf_counter()
    path = classifier.save(artifact_dir(round), metrics={"holdout": metrics} if metrics else None)
    timings["save_s"] = round_s(time.perf_counter() - t0)

    t0 = time.perf_counter()
    scored = score_pool(round, classifier, label_ids=[label.pk for label in labels],
                        progress=progress)
    timings["score_s"] = round_s(time.perf_counter() - t0)
    timings.update(scored)
    return {
        # The class order of every probability vector this round stored; labels renamed
        # later still read as they were trained.
        "config": {**round.config, "labels": names, "label_ids": [label.pk for label in labels]},
        "n_train": len(train_ids),
        "n_holdout": len(hold_ids),
        "data_fingerprint": fingerprint,
        "guideline_version": guideline,
        "metrics": metrics,
        "timings": timings,
        "artifact_path": str(path),
    }


def round_s(seconds: float) -> float:
    return float(f"{seconds:.3f}")


def score_pool(
    round: Round,
    classifier: TextClassifier,
    *,
    label_ids: list[int],
    progress: Progress,
    score_config: ScoreConfig | None = None,
    predict: bool = True,
    backend: Any = None,
) -> dict[str, int]:
    """Stores a Prediction (labels, probability vector, confidence, strategy score) for
    every training-side document, and caches its pooled embedding for the fast refresh.

    Unlabelled documents get the strategy's score, stored so that higher always means
    "ask sooner" whatever the strategy's own direction. Labelled ones get score None:
    the review pages compare their prediction with the human label, and the queue (which
    only hands out unlabelled documents, and only scored ones in score order) never sees
    them. Returns {"scored": unlabelled, "scored_labelled": labelled}.

    The embeddings go to an (n, h) float16 .npy written chunk by chunk through a memory
    map, so memory stays bounded by one chunk whatever the pool size.

    predict=False (the cold start: an encoder with no classifier yet) stores no labels or
    probabilities and a random score in (-1, 0] for every unlabelled document, for the
    caller to raise the documents it picks above.
    `backend` overrides LEARNER_BACKEND (the cold start's encoder runs in this process)."""
    score_config = score_config or ScoreConfig()
    multi = classifier.config.multi_label
    strategy = get_strategy(round.config.get("strategy", DEFAULT_STRATEGY), multi_label=multi)
    if not strategy.requires <= {"probs", "embeddings"}:
        # Strategies that need more than this chunk's own outputs (BALD's dropout samples,
        # CAL's labelled neighbours) fall back to margin scores for the streamed queue.
        strategy = get_strategy("margin", multi_label=multi)
    sign = 1.0 if strategy.higher_is_more_informative else -1.0
    thresholds = classifier.thresholds_ if classifier.thresholds_ is not None else 0.5
    side = Document.objects.filter(project_id=round.project_id, split=Document.Split.POOL)
    # Documents imported while this runs are left for the next round (and the random
    # order): fixing the id range up front fixes the cache's size.
    max_id = side.order_by("-id").values_list("id", flat=True).first() or 0
    total = side.filter(id__lte=max_id).count()
    folder = artifact_dir(round)
    folder.mkdir(parents=True, exist_ok=True)
    done = {"scored": 0, "scored_labelled": 0}
    if total == 0:
        write_embeddings_meta(folder, rows=0, total=0)
        return done
    ids_out = np.lib.format.open_memmap(
        folder / EMBEDDING_IDS_FILE, mode="w+", dtype=np.int64, shape=(total,)
    )
    ids_out[:] = -1
    embeddings_out = None
    row = 0
    started = time.perf_counter()
    # The backend (LEARNER_BACKEND: this process, or a Ray cluster) scores the chunks and
    # yields them back in order; each chunk's labelled flags wait here for its results.
    flags: deque[list[bool]] = deque()

    def chunks() -> Iterator[tuple[list[int], list[str]]]:
        left = total
        for ids, texts, labelled in _training_side_chunks(
            round.project_id, score_config.chunk_size, max_id
        ):
            ids, texts, labelled = ids[:left], texts[:left], labelled[:left]
            if not ids:
                return
            left -= len(ids)
            flags.append(labelled)
            yield ids, texts

    backend = backend or get_backend(score_config)
    no_model_order = np.random.default_rng(round.pk)
    for ids, probs, embeddings in backend.score_chunks(classifier, chunks()):
        labelled = flags.popleft()
        if embeddings_out is None:
            embeddings_out = np.lib.format.open_memmap(
                folder / EMBEDDINGS_FILE, mode="w+", dtype=EMBEDDING_DTYPE,
                shape=(total, embeddings.shape[1]),
            )
        embeddings_out[row: row + len(ids)] = embeddings
        ids_out[row: row + len(ids)] = ids
        row += len(ids)
        open_rows = np.flatnonzero(~np.asarray(labelled))
        # No model yet (predict=False): a random order, below the cold start's picks
        # (which get positive scores), so the queue's index walk never meets a tied group.
        scores = np.full(len(ids), np.nan) if predict else -no_model_order.random(len(ids))
        if len(open_rows) and predict:
            scores[open_rows] = sign * np.asarray(
                strategy.scores(probs[open_rows], embeddings=embeddings[open_rows]),
                dtype=np.float64,
            )
        if predict:
            predicted, confidence = predicted_and_confidence(
                probs, label_ids, multi_label=multi, thresholds=thresholds
            )
        else:
            predicted, confidence = [[] for _ in ids], np.zeros(len(ids))
        # COPY on PostgreSQL (annotate.bulk): a pool's worth of bulk_create keeps a core
        # busy preparing values, a core the annotators' requests need while a round runs.
        template = Prediction(round=round, labels=[], probs=[], confidence=0.0)
        with transaction.atomic():
            rows_insert(template, PREDICTION_COLUMNS, (
                (doc_id, db_value(Prediction, "labels", predicted[i]),
                 db_value(Prediction, "probs",
                          [float(f"{p:.5f}") for p in probs[i]] if predict else []),
                 float(confidence[i]), None if labelled[i] else float(scores[i]))
                for i, doc_id in enumerate(ids)
            ))
        done["scored_labelled"] += int(sum(labelled))
        done["scored"] += len(ids) - int(sum(labelled))
        elapsed = time.perf_counter() - started
        progress("scoring", row, total, elapsed / row * (total - row))
    if row >= ANALYZE_AFTER_ROWS:
        table_analyze(Prediction)
    for memmap in (ids_out, embeddings_out):
        if memmap is not None:
            memmap.flush()
    del ids_out, embeddings_out
    write_embeddings_meta(folder, rows=row, total=total)
    return done
