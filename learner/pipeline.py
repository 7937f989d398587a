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
from learner import selection
from learner.embeddings import CacheWriter, cache_read
from learner.ml.artifact import data_fingerprint
from learner.ml.backends import get_backend
from learner.ml.calibration import ece_of
from learner.ml.config import ScoreConfig, TrainConfig
from learner.ml.evaluate import evaluate
from learner.ml.monitoring import group_metrics, profile_of
from learner.ml.progress import Phase, RoundEta
from learner.ml.strategies import DEFAULT_STRATEGY, get_strategy
from learner.ml.tasks import Task, task_for
from learner.ml.train import TextClassifier, crossfits, plan_epochs, refits
from learner.models import LearnerSettings, Prediction, Round
from learner.refresh import predicted_and_confidence

Progress = Callable[..., None]
Trainer = Callable[..., TextClassifier]
"""``train(config, labels, texts, y, *, doc_ids, progress, warm_start) -> TextClassifier``:
the round's fit. The backend's by default; a final model passes its search
(learner.finalmodel)."""
PREDICTION_COLUMNS = ["document_id", "labels", "probs", "confidence", "score"]


class NotEnoughLabels(ValueError):
    """The project's labels cannot train a model yet (too few, or a single class)."""


def train_config_for(round: Round, *, task_type: str) -> TrainConfig:
    """The round's typed configuration (stored by round_request); a round queued by an
    earlier version, with loose keys, is read with TrainConfig's defaults for the rest."""
    stored = round.config.get("train")
    if isinstance(stored, dict):
        return TrainConfig.from_dict({**stored, "task_type": task_type})
    c = round.config
    return TrainConfig(
        model_name_or_path=c.get("model_name") or None, task_type=task_type,
        max_length=int(c.get("max_length", TrainConfig.max_length)),
        seed=int(c.get("seed", TrainConfig.seed)),
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


def _targets(finals: list[list[int]], index: dict[int, int], task: Task) -> np.ndarray:
    """The task's targets of final answers (Label ids; ``index``: Label id -> column)."""
    return task.targets([[index[label_id] for label_id in final] for final in finals],
                        len(index))


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


def run_round(round: Round, progress: Progress, *, train: Trainer | None = None
              ) -> dict[str, Any]:
    project = round.project
    labels = selectors.labels_of(project)
    names = [label.name for label in labels]
    index = {label.pk: i for i, label in enumerate(labels)}
    task = task_for(project.task_type)
    timings: dict[str, float] = {}

    progress("loading data")
    train_ids, train_texts, train_finals = _labelled(project.pk, Document.Split.POOL)
    hold_ids, hold_texts, hold_finals = _labelled(project.pk, Document.Split.HOLDOUT)
    y = _targets(train_finals, index, task)
    if len(train_ids) < 4:
        raise NotEnoughLabels(f"Only {len(train_ids)} labelled documents outside the holdout; "
                              "a round needs at least 4.")
    if not task.learnable(y):
        raise NotEnoughLabels("Every labelled document has the same label; a round needs "
                              "at least two classes.")
    guideline = selectors.guideline_current(project)
    fingerprint = data_fingerprint(
        train_ids, [sorted(names[index[i]] for i in f) for f in train_finals]
    )

    config = train_config_for(round, task_type=task.name)
    started = time.perf_counter()
    pool_total = Document.objects.filter(project_id=project.pk,
                                         split=Document.Split.POOL).count()
    clock = _round_eta(config, len(train_ids), len(hold_ids), pool_total)

    def report(phase: str, step: int = 0, total: int = 0, _: float | None = None) -> None:
        clock.report(phase, step, total)
        progress(phase, step, total, clock.seconds_left())

    # The backend trains here, or data-parallel on a Ray cluster (LEARNER_BACKEND=ray with
    # LABELWISE_RAY_TRAIN_WORKERS > 1).
    classifier = (train or get_backend().train)(
        config, names, train_texts, y, doc_ids=train_ids, progress=report,
        warm_start=_previous_model(round) if config.warm_start else None,
    )
    timings["train_s"] = round_s(time.perf_counter() - started)

    metrics = None
    fit = _fit_summary(classifier)
    profile: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    if hold_ids:
        report("evaluating", 0, len(hold_ids))
        t0 = time.perf_counter()
        hold_targets = _targets(hold_finals, index, task)
        raw = classifier.logits(hold_texts, report=lambda b, n: report("evaluating", b, n))
        hold_probs = classifier.activate(raw)
        metrics = evaluate(hold_targets, hold_probs, names,
                           task=task, thresholds=classifier.thresholds_)
        # What the predictions endpoint's traffic is compared with (drift), and the
        # holdout broken down by the lead's metadata fields.
        profile = profile_of(hold_probs, names)
        groups = _group_metrics(round, hold_ids, hold_targets, hold_probs,
                                thresholds=classifier.thresholds_, task=task)
        # The holdout's calibration error before and after the temperature (the fit's own
        # figures are on the labels it calibrated with, so they flatter).
        before = ece_of(raw, hold_targets, task=task,
                        thresholds=0.5 if classifier.thresholds_ is None
                        else classifier.thresholds_)
        fit["calibration"].update(
            holdout_ece_before=float(np.round(before, 4)),
            holdout_ece_after=float(np.round(metrics["expected_calibration_error"], 4)),
        )
        # The frozen-embedding baseline on the same labels, for the learning curve: a
        # fine-tuned round that does not beat it is a round to question.
        if getattr(classifier, "probe_", None) is not None:
            baseline = evaluate(hold_targets, classifier.probe_proba(hold_texts), names,
                                task=task, thresholds=classifier.thresholds_)
            fit["baseline"] = {"macro_f1": round_s(baseline["macro_f1"]),
                               "accuracy": round_s(baseline["accuracy"])}
        timings["evaluate_s"] = round_s(time.perf_counter() - t0)

    t0 = time.perf_counter()
    path = classifier.save(artifact_dir(round), metrics={"holdout": metrics} if metrics else None)
    timings["save_s"] = round_s(time.perf_counter() - t0)

    t0 = time.perf_counter()
    scored = score_pool(round, classifier, label_ids=[label.pk for label in labels],
                        progress=report)
    timings["score_s"] = round_s(time.perf_counter() - t0)
    timings.update(scored)

    t0 = time.perf_counter()
    report("selecting")
    picked = select_after_round(round, classifier, seed=config.seed + len(train_ids))
    timings["select_s"] = round_s(time.perf_counter() - t0)
    timings["selected"] = len(picked)
    return {
        # The class order of every probability vector this round stored; labels renamed
        # later still read as they were trained.
        "config": {**round.config, "labels": names, "label_ids": [label.pk for label in labels],
                   "label_counts": _label_counts(train_finals, index, names)},
        "fit": fit,
        "n_train": len(train_ids),
        "n_holdout": len(hold_ids),
        "data_fingerprint": fingerprint,
        "guideline_version": guideline,
        "metrics": metrics,
        "holdout_profile": profile,
        "groups": groups,
        "timings": timings,
        "artifact_path": str(path),
    }


def _group_metrics(round: Round, hold_ids: list[int], truth: Any, probs: np.ndarray, *,
                   thresholds: Any, task: Task) -> dict[str, Any]:
    """Holdout metrics per value of each metadata field the lead named as a group
    (round.config["groups"], copied from the settings when the round was requested);
    {} when none is named."""
    asked = round.config.get("groups") or {}
    fields = [str(f) for f in asked.get("fields") or [] if str(f)]
    if not fields:
        return {}
    meta = dict(Document.objects.filter(project_id=round.project_id,
                                        split=Document.Split.HOLDOUT,
                                        final_labels__isnull=False)
                .values_list("id", "meta").iterator(chunk_size=2000))
    values = {field: [(meta.get(doc_id) or {}).get(field) for doc_id in hold_ids]
              for field in fields}
    return group_metrics(truth, task.decode(probs, thresholds), values, task=task,
                         margin=float(asked.get("margin", 0.1)), seed=round.number)


def _previous_model(round: Round) -> str | None:
    """The latest earlier round's model folder (not the cold start's: it has none)."""
    previous = (
        Round.objects.with_models().filter(project_id=round.project_id,
                                           status=Round.Status.DONE, number__lt=round.number)
        .exclude(trigger=Round.Trigger.COLD_START).exclude(artifact_path="")
        .order_by("-number").values_list("artifact_path", flat=True).first()
    )
    return previous if previous and (Path(previous) / "labelwise.json").exists() else None


def select_after_round(round: Round, classifier: TextClassifier, *, seed: int) -> list[int]:
    """The queue's next batch from the round's model (learner.selection): its stored
    probabilities and cached embeddings; dropout passes for BALD; the labelled documents'
    embeddings and probabilities for CAL."""
    cached = cache_read(artifact_dir(round))
    if cached is None:
        return []
    project = round.project
    strategy = selection.strategy_for(project.pk, round, task=task_for(project.task_type))
    probs_for = selection.stored_probs(round)
    labelled = None
    if "labeled_embeddings" in strategy.requires:
        ids = np.fromiter(
            Prediction.objects.filter(round=round, score__isnull=True)
            .values_list("document_id", flat=True).order_by("document_id")[:selection.CANDIDATES],
            dtype=np.int64,
        )
        found, rows = cached.rows_of(ids)
        embeddings = cached.take(rows)
        labelled = selection.Labelled(embeddings, probs_for(ids[found], embeddings))

    def mc_for(ids: np.ndarray, _: np.ndarray) -> np.ndarray:
        texts = dict(Document.objects.filter(pk__in=[int(i) for i in ids])
                     .values_list("id", "text"))
        return classifier.mc_dropout_proba([texts[int(i)] for i in ids],
                                           ScoreConfig().mc_dropout_samples, seed=seed)

    settings = LearnerSettings.objects.filter(project=project).first()
    return selection.queue_select(
        round, strategy, cached, k=selection.batch_size(settings), seed=seed,
        probs_for=probs_for, labelled=labelled, mc_for=mc_for,
    )


def _round_eta(config: TrainConfig, n_train: int, n_holdout: int, n_pool: int) -> RoundEta:
    """The phases a round will run, sized before it starts: the fine-tuning steps are the
    plan for the label count (the fit's own plan replaces it once it reports)."""
    fine_tunes = config.mode != "head" and (
        config.mode != "auto" or n_train >= config.ladder_min_labels)
    # The refit's steps are not known before the fine-tuning runs end; the plan for every
    # label is their upper bound.
    refit = plan_epochs(n_train, config)[2] if fine_tunes and refits(config, n_train) else 0
    if crossfits(config, n_train):
        folds = config.crossfit_folds
        steps = folds * plan_epochs(n_train * (folds - 1) // folds, config)[2]
    else:
        steps = plan_epochs(int(n_train * (1 - config.validation_fraction)), config)[2]
        refit = refit if config.validation_fraction > 0 else 0
    return RoundEta([
        Phase("features", n_train),
        Phase("train", steps if fine_tunes else 0, per_unit_texts=config.batch_size,
              backward=True),
        Phase("refit", refit,
              per_unit_texts=config.batch_size, backward=True),
        Phase("evaluating", n_holdout),
        Phase("scoring", n_pool),
    ])


def _fit_summary(classifier: TextClassifier) -> dict[str, Any]:
    """What the round shows of the fit: the rung kept, every candidate the ladder scored,
    calibration, and the validation metrics."""
    metrics = classifier.metrics_
    validation = metrics.get("validation") or {}
    return {
        "rung": classifier.rung_,
        "ladder": metrics.get("ladder", {}),
        "calibration": dict(metrics.get("calibration", {})),
        "n_train": metrics.get("n_train"),
        "n_validation": metrics.get("n_validation"),
        "validation_macro_f1": validation.get("macro_f1"),
        "fit_seconds": metrics.get("fit_seconds"),
        # A final model's hyperparameter search (learner.ml.search): space, trials, pick.
        **({"search": metrics["search"]} if metrics.get("search") else {}),
    }


def _label_counts(finals: list[list[int]], index: dict[int, int], names: list[str]
                  ) -> dict[str, int]:
    counts = dict.fromkeys(names, 0)
    for final in finals:
        for label_id in final:
            counts[names[index[label_id]]] += 1
    return counts


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

    The embeddings go to the round's embedding cache (learner.embeddings), chunk by
    chunk, so memory stays bounded by one chunk whatever the pool size.

    predict=False (the cold start: an encoder with no classifier yet) stores no labels or
    probabilities and a random score in (-1, 0] for every unlabelled document; the
    caller ranks its picks ahead of them.
    `backend` overrides LEARNER_BACKEND (the cold start's encoder runs in this process)."""
    score_config = score_config or ScoreConfig()
    task = classifier.config.task
    strategy = get_strategy(round.config.get("strategy", DEFAULT_STRATEGY), task=task)
    if not strategy.requires <= {"probs", "embeddings"}:
        # Strategies that need more than this chunk's own outputs (BALD's dropout samples,
        # CAL's labelled neighbours) fall back to margin scores for the streamed queue.
        strategy = get_strategy("margin", task=task)
    sign = 1.0 if strategy.higher_is_more_informative else -1.0
    thresholds = classifier.thresholds_
    side = Document.objects.filter(project_id=round.project_id, split=Document.Split.POOL)
    # Documents imported while this runs are left for the next round (and the random
    # order): fixing the id range up front fixes the cache's size.
    max_id = side.order_by("-id").values_list("id", flat=True).first() or 0
    total = side.filter(id__lte=max_id).count()
    done = {"scored": 0, "scored_labelled": 0}
    cache = CacheWriter(artifact_dir(round), total)
    if total == 0:
        cache.close()
        return done
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
    progress("scoring", 0, total)
    scored = backend.score_chunks(
        classifier, chunks(), total=total,
        progress=lambda _phase, step, of: progress("scoring", step, of))
    for ids, probs, embeddings in scored:
        labelled = flags.popleft()
        cache.append(ids, embeddings)
        open_rows = np.flatnonzero(~np.asarray(labelled))
        # No model yet (predict=False): a random order, so the queue's index walk never
        # meets a tied group; the cold start's picks are ranked ahead of it.
        scores = np.full(len(ids), np.nan) if predict else -no_model_order.random(len(ids))
        if len(open_rows) and predict:
            scores[open_rows] = sign * np.asarray(
                strategy.scores(probs[open_rows], embeddings=embeddings[open_rows]),
                dtype=np.float64,
            )
        if predict:
            predicted, confidence = predicted_and_confidence(
                probs, label_ids, task=task, thresholds=thresholds
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
        progress("scoring", cache.rows, total, elapsed / cache.rows * (total - cache.rows))
    if cache.rows >= ANALYZE_AFTER_ROWS:
        table_analyze(Prediction)
    cache.close()
    return done
