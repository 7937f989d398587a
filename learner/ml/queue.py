"""The queue's decisions as plain functions: what the learner worker runs on database rows
(learner.selection, learner.refresh, learner.coldstart) and the simulation's ``loop`` mode
runs on arrays, so a benchmark of the loop measures what annotators get.

- ``cold_start_batch``: before any label, one document nearest each k-means centre of the
  base encoder's embeddings, biggest clusters first.
- ``refresh_head``: between rounds, a logistic regression on the latest round's cached
  embeddings of every labelled document (seconds).
- ``select_batch``: the configured strategy's batch selection over the open documents
  (its ranking, BADGE's and k-means' diversity, near-duplicate filtering).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from learner.ml.refresh import EmbeddingHead
from learner.ml.strategies import (
    QUEUE_DEDUP_THRESHOLD,
    KMeansColdStart,
    QueryStrategy,
    Selection,
)
from learner.ml.tasks import Task

# How many documents the cold start ranks (one per k-means cluster).
COLD_START_PICKS = 100
# BALD's stochastic passes (MC dropout of a round's model, or the refresh's bootstrap
# committee) run on at most this many candidates: T forward passes each.
MC_CANDIDATES = 1_000

McFor = Callable[[np.ndarray], np.ndarray]
"""``mc_for(candidate positions) -> (T, n, k)`` stochastic probabilities."""


def cold_start_batch(ids: Sequence[Any], embeddings: np.ndarray, *, seed: int,
                     k: int = COLD_START_PICKS) -> Selection:
    return select_batch(KMeansColdStart(), ids, embeddings, k=k, seed=seed)


def refresh_head(embeddings: np.ndarray, y: Any, *, task: Task,
                 classes: Sequence[Any], seed: int) -> EmbeddingHead:
    """The fast refresh's head, fitted on the labelled documents' cached embeddings."""
    return EmbeddingHead(task=task, classes=list(classes), seed=seed).fit(
        embeddings, y)


def select_batch(
    strategy: QueryStrategy,
    ids: Sequence[Any],
    embeddings: np.ndarray,
    *,
    k: int,
    seed: int,
    probs: np.ndarray | None = None,
    labelled_embeddings: np.ndarray | None = None,
    labelled_probs: np.ndarray | None = None,
    mc_for: McFor | None = None,
) -> Selection:
    """The next ``k`` documents to ask about, in order, among the open ``ids`` (aligned
    with ``embeddings`` and ``probs``). BALD runs on a seeded sample of MC_CANDIDATES
    candidates, the others on all of them. No random share here: the queue mixes in its
    own exploration picks when it hands documents out."""
    ids = list(ids)
    rows = np.arange(len(ids))
    mc = None
    if "mc_probs" in strategy.requires:
        if mc_for is None:
            raise ValueError(f"the {strategy.name!r} strategy needs stochastic passes")
        if len(rows) > MC_CANDIDATES:
            rows = np.sort(np.random.default_rng(seed).choice(len(rows), MC_CANDIDATES,
                                                              replace=False))
        mc = mc_for(rows)
    return strategy.select(
        [ids[i] for i in rows], min(k, len(rows)),
        probs=None if probs is None else probs[rows],
        embeddings=embeddings[rows], mc_probs=mc,
        labeled_embeddings=labelled_embeddings, labeled_probs=labelled_probs,
        dedup_threshold=QUEUE_DEDUP_THRESHOLD, seed=seed,
    )
