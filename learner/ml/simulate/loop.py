"""The ``loop`` mode: the product's own loop, replayed on a labelled dataset.

Annotators take documents in the order the queue hands them out, and the learner does what
the worker does, through the same functions (``learner.ml.queue`` and ``TextClassifier``):

1. the cold start: before any label, the k-means batch over the base encoder's embeddings;
2. the fast refresh every ``refresh_every`` labels: a head on the latest cached embeddings
   of the labelled documents, the pool re-scored, the strategy's batch selected again;
3. a fine-tuning round at each label count in ``rounds_at``: ``TextClassifier`` with the
   round's configuration (by default the ladder), evaluated on the test split (the point
   on the learning curve is this model, the one a lead exports), then the whole training
   pool scored by it: its embeddings become the cache, its probabilities pick the batch.

Handing out follows ``annotate.selectors.QueuePlan``: with probability ``random_share`` a
document in random order, else the selected batch in pick order, then the per-document
scores, then random order. The random baseline (strategy ``random``) is labelling in
random order with the same rounds: no cold start, no selection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from learner.ml.config import TrainConfig
from learner.ml.evaluate import evaluate
from learner.ml.queue import cold_start_batch, refresh_head, select_batch
from learner.ml.refresh import committee_proba
from learner.ml.simulate.data import Dataset
from learner.ml.simulate.report import CurvePoint
from learner.ml.strategies import QueryStrategy, RandomSampling, get_strategy

# Label counts of the rounds: each about 1.4x the last, as label counts grow and rounds
# take longer (what a lead gets from "Train every N labels" with the fast refresh between).
DEFAULT_ROUNDS = (50, 75, 100, 150, 200, 300, 400, 600, 800, 1100, 1500, 2000, 3000)


@dataclass(frozen=True)
class LoopSettings:
    """How the replay runs; the defaults are the product's (LearnerSettings)."""

    rounds_at: tuple[int, ...] = DEFAULT_ROUNDS
    refresh_every: int = 10  # labels between fast refreshes
    random_share: float = 0.1  # the queue's exploration share
    batch_size: int = 50  # documents one selection ranks
    config: TrainConfig = field(default_factory=TrainConfig)
    stop_at: float | None = None  # stop once a round's macro-F1 reaches this


class _Queue:
    """The hand-out order of annotate.selectors.QueuePlan over pool positions."""

    def __init__(self, n: int, rng: np.random.Generator, random_share: float) -> None:
        self.rng = rng
        self.random_share = random_share
        self.random_order = rng.permutation(n)  # the documents' random import order
        self.open = np.ones(n, dtype=bool)
        self.batch: list[int] = []
        self.by_score: np.ndarray | None = None  # positions, best first

    def take(self) -> int:
        if self.batch is not None and self.rng.random() >= self.random_share:
            for order in (self.batch, self.by_score):
                if order is None:
                    continue
                for position in order:
                    if self.open[position]:
                        return self._close(int(position))
        for position in self.random_order:
            if self.open[position]:
                return self._close(int(position))
        raise IndexError("the pool is exhausted")

    def _close(self, position: int) -> int:
        self.open[position] = False
        return position


def replay(
    data: Dataset,
    base_embeddings: np.ndarray,
    strategy: QueryStrategy,
    *,
    seed: int,
    settings: LoopSettings,
    on_point: Callable[[CurvePoint], None] = lambda point: None,
) -> list[CurvePoint]:
    """One strategy, one seed, up to the last round in ``settings.rounds_at`` (or the
    pool's size). ``base_embeddings`` (n_texts, d): the frozen encoder's vectors of every
    text, the cold start's cache."""
    from learner.ml.train import TextClassifier

    started = time.perf_counter()
    train = data.train_idx
    n = len(train)
    rng = np.random.default_rng(seed)
    baseline = isinstance(strategy, RandomSampling)
    queue = _Queue(n, rng, 1.0 if baseline else settings.random_share)
    cache = np.asarray(base_embeddings[train], dtype=np.float32)
    classes = list(range(data.n_classes))
    per_doc = strategy if strategy.requires <= {"probs", "embeddings"} else get_strategy(
        "margin", task=data.task)
    sign = 1.0 if per_doc.higher_is_more_informative else -1.0
    if not baseline:
        queue.batch = [int(i) for i in cold_start_batch(list(range(n)), cache, seed=seed).ids]
    labelled: list[int] = []
    rounds = sorted(r for r in settings.rounds_at if r <= n) or [n]
    config = replace(settings.config, task_type=data.task.name, seed=seed)
    curve: list[CurvePoint] = []

    def y_of(positions: list[int]) -> Any:
        return data.y[train[positions]]

    def reselect(probs: np.ndarray, mc_for: Callable[[np.ndarray], np.ndarray],
                 step_seed: int) -> None:
        open_positions = np.flatnonzero(queue.open)
        if len(open_positions) == 0:
            return
        if per_doc.requires & {"probs"}:
            scores = sign * per_doc.scores(probs[open_positions],
                                           embeddings=cache[open_positions])
            queue.by_score = open_positions[np.argsort(-scores, kind="stable")]
        queue.batch = [int(i) for i in select_batch(
            strategy, open_positions.tolist(), cache[open_positions], k=settings.batch_size,
            seed=step_seed, probs=probs[open_positions],
            labelled_embeddings=cache[labelled], labelled_probs=probs[labelled],
            mc_for=lambda rows: mc_for(open_positions[rows]),
        ).ids]

    for target in rounds:
        while len(labelled) < target:
            labelled.append(queue.take())
            due_refresh = len(labelled) % settings.refresh_every == 0
            if not baseline and due_refresh and len(labelled) < target:
                head = refresh_head(cache[labelled], y_of(labelled),
                                    task=data.task, classes=classes, seed=seed)
                reselect(head.predict_proba(cache),
                         _committee(head, cache, labelled, y_of(labelled), seed),
                         seed + len(labelled))
        # A fine-tuning round on every label so far: the model a lead would export.
        texts = [data.texts[i] for i in train[labelled]]
        clf = TextClassifier(config, data.classes).fit(
            texts, y_of(labelled), doc_ids=[int(i) for i in train[labelled]])
        test_probs = clf.predict_proba([data.texts[i] for i in data.test_idx])
        result = evaluate(data.y[data.test_idx], test_probs, data.classes,
                          task=data.task)
        point = CurvePoint(strategy.name, seed, len(labelled), float(result["macro_f1"]),
                           float(result["accuracy"]), time.perf_counter() - started,
                           ece=float(result["expected_calibration_error"]), rung=clf.rung_)
        curve.append(point)
        on_point(point)
        if settings.stop_at is not None and point.macro_f1 >= settings.stop_at:
            break
        if not baseline and len(labelled) < n and target != rounds[-1]:
            # The round scores the whole training pool: its vectors become the cache (not
            # after the last round: nothing would read them).
            pool_texts = [data.texts[i] for i in train]
            probs, cache = clf.proba_and_embed(pool_texts)
            reselect(probs.astype(np.float64), _dropout(clf, pool_texts, seed),
                     seed + len(labelled))
    return curve


def _committee(head: Any, cache: np.ndarray, labelled: list[int], y: Any, seed: int
               ) -> Callable[[np.ndarray], np.ndarray]:
    """BALD's stochastic passes for the refresh: a bootstrap committee of heads."""
    x = cache[labelled]
    return lambda at: committee_proba(head, x, y, cache[at], seed=seed)


def _dropout(clf: Any, texts: list[str], seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """BALD's stochastic passes for a round: MC dropout of its model."""
    return lambda at: clf.mc_dropout_proba([texts[i] for i in at], seed=seed)
