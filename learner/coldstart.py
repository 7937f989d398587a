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

from annotate.models import Document, Project
from learner import selection
from learner.base_models import BaseModelUnavailable
from learner.embeddings import cache_read
from learner.ml.queue import COLD_START_PICKS
from learner.ml.strategies import KMeansColdStart
from learner.ml.tasks import task_for
from learner.models import LearnerSettings, Round


class FrozenEncoder:
    """The base encoder in the shape score_pool expects of a model: pooled embeddings as the
    checkpoint defines them, and no probabilities (an (n, 0) array: there is no classifier
    to have any)."""

    def __init__(self, model_name: str | None, *, max_length: int, task_type: str) -> None:
        from types import SimpleNamespace

        self.model_name = model_name
        self.max_length = max_length
        self.config = SimpleNamespace(task=task_for(task_type))
        self.thresholds_ = None

    def proba_and_embed(self, texts: list[str], **_: Any) -> tuple[np.ndarray, np.ndarray]:
        from learner.ml.encoder import default_model_path, embed, load_encoder
        from learner.ml.pooling import Pooling

        if not hasattr(self, "tokenizer_"):
            path = self.model_name or default_model_path()
            self.tokenizer_, self.model_ = load_encoder(path)
            self.pooling_ = Pooling.of_checkpoint(path)
        embeddings = embed(texts, tokenizer=self.tokenizer_, model=self.model_,
                           pooling=self.pooling_, max_length=self.max_length)
        return np.zeros((len(texts), 0), dtype=np.float32), embeddings


def cold_start_due(project: Project) -> bool:
    """True for a project that has never had a round and has documents to label."""
    return (
        not Round.objects.with_models().filter(project=project).exists()
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
            except (RoundBusy, BaseModelUnavailable):
                continue
    return requested


def run_cold_start(round: Round, progress: Callable[..., None]) -> dict[str, Any]:
    from learner import pipeline  # torch: only where a cold start actually runs
    from learner.ml.backends.local import LocalBackend

    project = round.project
    train = pipeline.train_config_for(round, task_type=project.task_type)
    encoder = FrozenEncoder(train.model_name_or_path, max_length=train.max_length,
                            task_type=project.task_type)
    counts = pipeline.score_pool(round, encoder, label_ids=[], progress=progress,
                                 predict=False, backend=LocalBackend())
    round.artifact_path = str(pipeline.artifact_dir(round))
    cached = cache_read(round.artifact_path)
    picked = 0
    if cached is not None:
        progress("clustering")
        # One document nearest each k-means centre, biggest clusters first: the same batch
        # selection as every round's, with the strategy that needs no model.
        picked = len(selection.queue_select(
            round, KMeansColdStart(), cached, k=COLD_START_PICKS, seed=train.seed))
    return {
        "artifact_path": round.artifact_path,
        "timings": {**counts, "picked": picked},
    }
