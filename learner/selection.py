"""The queue's batch selection: the configured strategy's own batch selection (its ranking,
diversity for BADGE and k-means, near-duplicate filtering), run after every round, every
fast refresh and the cold start, and written onto the round's predictions as `rank`.

The queue hands out the ranked batch first, in pick order, then follows the per-document
scores (annotate.selectors.queue_candidates), with the lead's share of random picks on top.
The selection is `learner.ml.strategies.QueryStrategy.select`, the code the simulation
runs, so what a benchmark measures is what annotators get.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.db import transaction

from annotate import selectors
from annotate.models import Document
from learner.embeddings import EmbeddingCache
from learner.ml.queue import select_batch
from learner.ml.strategies import QueryStrategy, get_strategy
from learner.ml.tasks import Task
from learner.models import LearnerSettings, Prediction, Round

# The selection looks at a random sample of at most this many open documents: the pool's
# rows are read into memory for it, and a batch of a few dozen is as good picked from
# 20,000 candidates as from a million.
CANDIDATES = 20_000
# The batch never holds fewer documents than this, whatever the round trigger.
MIN_BATCH = 10
READ_CHUNK = 2_000

ProbsFor = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``probs_for(document ids (n,), their cached embeddings (n, d)) -> (n, k) probabilities``."""


@dataclass(frozen=True)
class Labelled:
    """The labelled training documents as the model sees them (CAL compares with them)."""

    embeddings: np.ndarray
    probs: np.ndarray


def batch_size(settings: LearnerSettings | None) -> int:
    """How many documents one selection ranks: the labels until the next round."""
    every = settings.train_every_labels if settings else 0
    return max(MIN_BATCH, every or 50)


def strategy_for(project_id: int, round: Round, *, task: Task) -> QueryStrategy:
    settings = LearnerSettings.objects.filter(project_id=project_id).first()
    name = settings.strategy if settings else round.config.get("strategy", "least_confidence")
    return get_strategy(name, task=task)


def open_candidates(round: Round, *, seed: int) -> np.ndarray:
    """Sorted ids of the round's scored documents still open on the training side (a
    seeded random sample of CANDIDATES when there are more)."""
    ids = np.fromiter(
        Prediction.objects.filter(
            round=round, score__isnull=False, document__split=Document.Split.POOL,
            document__final_labels__isnull=True,
        ).values_list("document_id", flat=True).iterator(chunk_size=5000),
        dtype=np.int64,
    )
    if len(ids) > CANDIDATES:
        ids = np.random.default_rng(seed).choice(ids, CANDIDATES, replace=False)
    return np.sort(ids)


def stored_probs(round: Round) -> ProbsFor:
    """`probs_for` reading the probabilities the round stored for each document."""

    def probs_for(ids: np.ndarray, _: np.ndarray) -> np.ndarray:
        by_id: dict[int, list[float]] = {}
        for start in range(0, len(ids), READ_CHUNK):
            chunk = [int(i) for i in ids[start:start + READ_CHUNK]]
            by_id.update(Prediction.objects.filter(round=round, document_id__in=chunk)
                         .values_list("document_id", "probs"))
        return np.asarray([by_id[int(i)] for i in ids], dtype=np.float64)

    return probs_for


def queue_select(
    round: Round,
    strategy: QueryStrategy,
    cached: EmbeddingCache,
    *,
    k: int,
    seed: int,
    probs_for: ProbsFor | None = None,
    labelled: Labelled | None = None,
    mc_for: ProbsFor | None = None,
) -> list[int]:
    """Runs the strategy's batch selection (learner.ml.queue.select_batch) over the round's
    open documents and records the picks' order as `Prediction.rank` (clearing the round's
    earlier ranks); returns the picked document ids in order.

    `probs_for` gives probabilities for candidate ids, `mc_for` (T, n, k) stochastic ones
    (BALD), `labelled` the labelled documents' embeddings and probabilities (CAL); a
    strategy that needs one that is missing raises ValueError, as `select` does.
    """
    ids = open_candidates(round, seed=seed)
    found, rows = cached.rows_of(ids)
    ids = ids[found]
    if len(ids) == 0:
        rank_write(round, [])
        return []
    embeddings = cached.take(rows)
    probs = probs_for(ids, embeddings) if probs_for is not None and (
        strategy.requires & {"probs", "labeled_probs"}) else None
    selection = select_batch(
        strategy, ids.tolist(), embeddings, k=k, seed=seed, probs=probs,
        labelled_embeddings=labelled.embeddings if labelled else None,
        labelled_probs=labelled.probs if labelled else None,
        mc_for=None if mc_for is None else (lambda at: mc_for(ids[at], embeddings[at])),
    )
    picked = [int(i) for i in selection.ids]
    rank_write(round, picked)
    return picked


def rank_write(round: Round, picked: list[int]) -> None:
    """The round's batch: `picked[i]` gets rank i, every other prediction none."""
    with transaction.atomic():
        Prediction.objects.filter(round=round, rank__isnull=False).exclude(
            document_id__in=picked).update(rank=None)
        for position, doc_id in enumerate(picked):
            Prediction.objects.filter(round=round, document_id=doc_id).update(rank=position)
    selectors.queue_plan_forget(round.project_id)
