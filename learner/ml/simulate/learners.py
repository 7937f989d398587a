"""The ``fast`` and ``full`` modes: one loop (``simulate_one``) with a model behind it that
is refit after every batch, the fast refresh's head or a fine-tuning from scratch."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from learner.ml.refresh import EmbeddingHead, committee_proba
from learner.ml.simulate.data import Dataset
from learner.ml.simulate.report import CurvePoint, score
from learner.ml.strategies import (
    KMeansColdStart,
    PoolExhausted,
    QueryStrategy,
    RandomSampling,
    draw_candidates,
)


class Learner(Protocol):
    """What the loop needs from a model; ``fast`` and ``full`` each implement it."""

    def fit(self, labeled: np.ndarray, seed: int) -> None: ...

    def pool_outputs(
        self, pool: np.ndarray, labeled: np.ndarray, strategy: QueryStrategy, seed: int
    ) -> dict[str, np.ndarray]: ...

    def test_probs(self) -> np.ndarray: ...


class FastLearner:
    """EmbeddingHead refit on cached frozen embeddings (the app's fast refresh)."""

    def __init__(self, data: Dataset, embeddings: np.ndarray, *, committee: int = 5) -> None:
        self.data = data
        self.emb = embeddings
        self.committee = committee
        self.head = EmbeddingHead()

    def fit(self, labeled: np.ndarray, seed: int) -> None:
        self.head = EmbeddingHead(task=self.data.task,
                                  classes=list(range(self.data.n_classes)), seed=seed)
        self.head.fit(self.emb[labeled], self._y(labeled))

    def _y(self, idx: np.ndarray) -> Any:
        return self.data.y[idx]

    def pool_outputs(
        self, pool: np.ndarray, labeled: np.ndarray, strategy: QueryStrategy, seed: int
    ) -> dict[str, np.ndarray]:
        out = {"probs": self.head.predict_proba(self.emb[pool]), "embeddings": self.emb[pool]}
        if "labeled_probs" in strategy.requires:
            out["labeled_embeddings"] = self.emb[labeled]
            out["labeled_probs"] = self.head.predict_proba(self.emb[labeled])
        if "mc_probs" in strategy.requires:
            out["mc_probs"] = committee_proba(
                self.head, self.emb[labeled], self._y(labeled), self.emb[pool],
                n_members=self.committee, seed=seed,
            )
        return out

    def test_probs(self) -> np.ndarray:
        return self.head.predict_proba(self.emb[self.data.test_idx])


class FullLearner:
    """A TextClassifier fine-tuned from the base model on the labeled set each round.

    Frozen embeddings still drive near-duplicate avoidance (cheap, already cached);
    strategies that need embeddings or MC samples get them from the fine-tuned model.
    """

    def __init__(self, data: Dataset, embeddings: np.ndarray, config: Any,
                 mc_samples: int = 10) -> None:
        self.data = data
        self.emb = embeddings
        self.config = config
        self.mc_samples = mc_samples
        self.clf: Any = None

    def fit(self, labeled: np.ndarray, seed: int) -> None:
        from dataclasses import replace

        from learner.ml.train import TextClassifier

        texts = [self.data.texts[i] for i in labeled]
        y = self.data.y[labeled]
        self.clf = TextClassifier(replace(self.config, seed=seed), self.data.classes)
        self.clf.fit(texts, y)

    def pool_outputs(
        self, pool: np.ndarray, labeled: np.ndarray, strategy: QueryStrategy, seed: int
    ) -> dict[str, np.ndarray]:
        # Frozen embeddings serve near-duplicate avoidance unless the strategy itself
        # needs embeddings (BADGE, CAL): those come from the fine-tuned model. Random
        # sampling and BALD skip the plain forward pass over the pool.
        out: dict[str, np.ndarray] = {"embeddings": self.emb[pool]}
        texts = [self.data.texts[i] for i in pool]
        if strategy.requires & {"probs", "embeddings"}:
            probs, model_emb = self.clf.proba_and_embed(texts)
            out["probs"] = probs
            if "embeddings" in strategy.requires:
                out["embeddings"] = model_emb
        if "labeled_probs" in strategy.requires:
            lp, le = self.clf.proba_and_embed([self.data.texts[i] for i in labeled])
            out["labeled_probs"], out["labeled_embeddings"] = lp, le
        if "mc_probs" in strategy.requires:
            out["mc_probs"] = self.clf.mc_dropout_proba(texts, self.mc_samples, seed=seed)
        return out

    def test_probs(self) -> np.ndarray:
        return np.asarray(self.clf.predict_proba([self.data.texts[i] for i in self.data.test_idx]))


def eval_points(
    *, seed_size: int, batch_size: int | None, budget: int | None, budgets: Sequence[int] | None,
    pool_size: int,
) -> list[int]:
    """Label counts at which the model is evaluated, capped at the pool size.

    ``budgets`` (e.g. 25,50,100) wins; else ``seed_size`` then every ``batch_size``
    labels up to ``budget``.
    """
    if budgets:
        points = sorted({int(b) for b in budgets if b > 0})
    else:
        step = batch_size or 25
        top = budget or 1000
        points = list(range(seed_size, top + 1, step))
        if not points or points[-1] != top:
            points.append(top)
    capped = sorted({min(p, pool_size) for p in points})
    return [p for p in capped if p > 0]


def simulate_one(
    data: Dataset,
    learner: Learner,
    strategy: QueryStrategy,
    *,
    points: Sequence[int],
    seed_size: int,
    batch_size: int | None,
    seed: int,
    frozen_embeddings: np.ndarray,
    random_share: float,
    dedup_threshold: float | None,
    candidate_size: int | None,
    on_point: Callable[[CurvePoint], None],
) -> list[CurvePoint]:
    """One strategy, one seed: seed set, then query/refit/evaluate up to ``points[-1]``.

    The seed set (``min(seed_size, points[0])`` labels) is a k-means cold start on the frozen
    embeddings, or uniformly random for the random strategy (its honest baseline).
    """
    started = time.perf_counter()
    train = data.train_idx
    first = min(seed_size, points[0])
    if isinstance(strategy, RandomSampling):
        seed_pos = np.random.default_rng(seed).choice(len(train), first, replace=False)
    else:
        sel = KMeansColdStart().select(
            list(range(len(train))), first, embeddings=frozen_embeddings[train],
            dedup_threshold=None, seed=seed,
        )
        seed_pos = np.array(sel.ids, dtype=np.int64)
    is_labeled = np.zeros(len(train), dtype=bool)
    is_labeled[seed_pos] = True
    order: list[int] = [int(i) for i in seed_pos]  # labeled positions, in labeling order
    fitted_on = -1

    def refit() -> None:
        # One fit per label count: the model evaluated at a point also picks the next
        # batch (in full mode a fit is a whole fine-tuning run).
        nonlocal fitted_on
        if fitted_on != len(order):
            learner.fit(train[np.array(order)], seed)
            fitted_on = len(order)

    curve: list[CurvePoint] = []
    step = 0
    for target in points:
        while len(order) < target:
            refit()
            pool = np.flatnonzero(~is_labeled)
            k = min(target - len(order), batch_size or target)
            query_seed = seed * 100003 + step
            cand = pool[draw_candidates(len(pool), candidate_size, k=k, seed=query_seed)]
            labeled = train[np.array(order)]
            outputs: dict[str, Any] = learner.pool_outputs(train[cand], labeled, strategy, seed)
            try:
                sel = strategy.select(
                    cand.tolist(), k, random_share=random_share,
                    dedup_threshold=dedup_threshold, seed=query_seed, **outputs,
                )
            except PoolExhausted:
                break
            is_labeled[sel.ids] = True
            order.extend(int(i) for i in sel.ids)
            step += 1
        refit()
        metrics = score(data, learner.test_probs())
        point = CurvePoint(strategy.name, seed, len(order), metrics["macro_f1"],
                           metrics["accuracy"], time.perf_counter() - started)
        curve.append(point)
        on_point(point)
    return curve


