"""The queue before any model exists: an embedding k-means cold start.

A project's first round needs labels, and random first labels waste the annotators' time
on near-duplicates of the commonest kind of text. So when a project has unlabelled
documents and has never had a round, the worker runs a cold-start round: it embeds the
training side with the (not yet fine-tuned) base encoder, caches the embeddings exactly as
a round does, and orders the pool by learner.ml.strategies.KMeansColdStart (one document
nearest each cluster centre, biggest clusters first). The cache also lets the fast refresh
start as soon as the first labels arrive, so the queue adapts long before the first
fine-tuning round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from django.db import transaction

from annotate.models import Document, Project
from learner.models import LearnerSettings, Prediction, Round
from learner.refresh import embedding_cache

# How many documents the k-means picks (one per cluster); the rest of the pool keeps the
# random order behind them. Clustering runs on at most CANDIDATES documents.
PICKS = 100
CANDIDATES = 20_000


class FrozenEncoder:
    """The base encoder in the shape score_pool expects of a classifier: embeddings from
    masked mean pooling, and no probabilities (there is no model to have any)."""

    def __init__(self, model_name: str | None, *, max_length: int, n_labels: int,
                 multi_label: bool) -> None:
        from types import SimpleNamespace

        self.model_name = model_name
        self.max_length = max_length
        self.n_labels = n_labels
        self.config = SimpleNamespace(multi_label=multi_label)
        self.thresholds_ = None

    def proba_and_embed(self, texts: list[str], **_: Any) -> tuple[np.ndarray, np.ndarray]:
        from learner.ml.encoder import embed, load_encoder

        if not hasattr(self, "tokenizer_"):
            self.tokenizer_, self.model_ = load_encoder(self.model_name)
        embeddings = embed(texts, tokenizer=self.tokenizer_, model=self.model_,
                           max_length=self.max_length)
        return np.full((len(texts), self.n_labels), np.nan, dtype=np.float32), embeddings


def cold_start_due(project: Project) -> bool:
    """True for a project that has never had a round and has documents to label."""
    return (
        not Round.objects.filter(project=project).exists()
        and Document.objects.filter(
            project=project, split=Document.Split.POOL, final_labels__isnull=True
        ).exists()
    )


def rounds_request_cold_start() -> list[Round]:
    from learner.services import RoundBusy, round_request

    requested = []
    for settings in LearnerSettings.objects.select_related("project"):
        if cold_start_due(settings.project):
            try:
                requested.append(round_request(project=settings.project,
                                               trigger=Round.Trigger.COLD_START))
            except RoundBusy:
                continue
    return requested


def run_cold_start(round: Round, progress: Callable[..., None]) -> dict[str, Any]:
    from learner import pipeline  # torch: only where a cold start actually runs

    project = round.project
    labels = list(project.labels.all())
    encoder = FrozenEncoder(
        round.config.get("model_name") or None,
        max_length=int(round.config.get("max_length", 128)),
        n_labels=len(labels), multi_label=project.is_multi_label,
    )
    from learner.ml.backends.local import LocalBackend

    counts = pipeline.score_pool(round, encoder, label_ids=[label.pk for label in labels],
                                 progress=progress, predict=False, backend=LocalBackend())
    round.artifact_path = str(pipeline.artifact_dir(round))
    cached = embedding_cache(round)
    picked = 0
    if cached is not None:
        progress("clustering")
        picked = _order_by_kmeans(round, cached, seed=int(round.config.get("seed", 0)))
    return {
        "artifact_path": round.artifact_path,
        "timings": {**counts, "picked": picked},
    }


def _order_by_kmeans(round: Round, cached: Any, *, seed: int) -> int:
    from learner.ml.strategies import get_strategy

    open_ids = np.fromiter(
        Prediction.objects.filter(round=round, score__isnull=False)
        .values_list("document_id", flat=True).iterator(chunk_size=5000),
        dtype=np.int64,
    )
    rng = np.random.default_rng(seed)
    if len(open_ids) > CANDIDATES:
        # Cluster a random sample: reading every embedding of a huge pool into memory
        # would make memory grow with the pool.
        open_ids = rng.choice(open_ids, CANDIDATES, replace=False)
    open_ids = np.sort(open_ids)
    found, rows = cached.rows_of(open_ids)
    if len(found) == 0:
        return 0
    selection = get_strategy("kmeans").select(
        open_ids[found].tolist(), min(PICKS, len(found)), embeddings=cached.take(rows),
        seed=seed,
    )
    # The picks come first, in pick order; every other document keeps the random score
    # in (-1, 0] that score_pool gave it, so the queue takes them in random order after.
    with transaction.atomic():
        for rank, doc_id in enumerate(selection.ids):
            Prediction.objects.filter(round=round, document_id=doc_id).update(
                score=float(len(selection.ids) - rank)
            )
    return len(selection.ids)
