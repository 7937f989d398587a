"""Run training and pool scoring in this process (CPU, or the local GPU when present).

The interface is what a Ray backend implements too: ``train`` returns a fitted
``TextClassifier``; ``score_chunks`` streams the pool chunk by chunk, so memory is
bounded by one chunk however large the pool is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from learner.ml.config import ScoreConfig, TrainConfig
from learner.ml.train import ProgressFn, TextClassifier

Chunk = tuple[Sequence[Any], Sequence[str]]
"""(document ids, texts) of one slice of the pool."""

ScoredChunk = tuple[Sequence[Any], np.ndarray, np.ndarray]
"""(document ids, probabilities (n, k) float32, embeddings (n, d) float32)."""


class LocalBackend:
    """Executes in the calling process; holds no state between calls."""

    def __init__(self, score_config: ScoreConfig | None = None) -> None:
        self.score_config = score_config or ScoreConfig()

    def train(
        self,
        config: TrainConfig,
        labels: Sequence[str],
        texts: Sequence[str],
        y: Any,
        *,
        doc_ids: Sequence[Any] | None = None,
        progress: ProgressFn | None = None,
        warm_start: str | None = None,
    ) -> TextClassifier:
        """Fit a new classifier on the labeled texts (``y``, ``warm_start`` as in
        ``TextClassifier.fit``)."""
        return TextClassifier(config, labels).fit(texts, y, doc_ids=doc_ids, progress=progress,
                                                  warm_start=warm_start)

    def score_chunks(
        self,
        classifier: TextClassifier,
        chunks: Iterable[Chunk],
        *,
        progress: ProgressFn | None = None,
        total: int = 0,
    ) -> Iterator[ScoredChunk]:
        """Yield ``(ids, probs, embeddings)`` per chunk, from one forward pass each.

        ``chunks`` is consumed lazily (e.g. a database cursor read in slices); ``total``
        (texts in the pool, when known) is only used for ``progress("score", done,
        total)``.
        """
        cfg, done = self.score_config, 0
        for ids, texts in chunks:
            if len(ids) != len(texts):
                raise ValueError(f"chunk has {len(ids)} ids but {len(texts)} texts")
            if len(texts) == 0:
                continue
            report = None
            if progress is not None:
                # Every batch, not every chunk: a chunk of 2,000 long texts is a minute.
                def report(batch: int, batches: int, base: int = done, n: int = len(texts)
                           ) -> None:
                    progress("score", base + n * batch // batches, max(total, base + n))
            probs, embeddings = classifier.proba_and_embed(
                texts, batch_size=cfg.batch_size, max_length=cfg.max_length, report=report,
            )
            done += len(texts)
            yield ids, probs, embeddings
