"""Multi-label classification: a document has any number of the schema's labels.

Targets are (n, k) 0/1 indicator matrices; each label is an independent sigmoid, decoded
by its own threshold (0.5 until calibration tunes one per label).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from learner.ml.calibration import sigmoid, tune_thresholds
from learner.ml.evaluate import expected_calibration_error
from learner.ml.tasks.base import Task, Thresholds, logistic_regression

if TYPE_CHECKING:
    import torch
    from torch import nn

    from learner.ml.refresh import EmbeddingHead


def pos_weights(Y: np.ndarray, max_weight: float = 100.0) -> np.ndarray:
    """Multi-label BCE ``pos_weight`` per label: ``negatives / positives``, float32 (k,).

    Labels with no positive (or no negative) example get 1.0; the cap keeps one rare
    label from dominating the loss.
    """
    Y = np.asarray(Y, dtype=np.float64)
    pos = Y.sum(axis=0)
    neg = len(Y) - pos
    weights = np.ones(Y.shape[1], dtype=np.float64)
    ok = (pos > 0) & (neg > 0)
    weights[ok] = np.minimum(neg[ok] / pos[ok], max_weight)
    return weights.astype(np.float32)


def _cut(thresholds: Thresholds) -> np.ndarray | float:
    return 0.5 if thresholds is None else np.asarray(thresholds, dtype=np.float64)


def _binary(p: np.ndarray) -> np.ndarray:
    """(..., k) independent sigmoids -> (..., k, 2) binary distributions [1 - p, p]."""
    p = np.clip(p, 0.0, 1.0)
    return np.stack([1.0 - p, p], axis=-1)


class MultiLabel(Task):
    name = "multi_label"
    card_name = "multi_label_classification"
    card_note = ("Multi-label: each column is an independent probability; predict every label "
                 "whose probability reaches its threshold (`thresholds` in model_card.json, "
                 "tuned on held-out labels). SetFit's `predict` cuts at 0.5 instead.")
    score_key = "micro_f1"

    # -- targets ------------------------------------------------------------------

    def targets(self, label_lists: Sequence[Sequence[int]], n_labels: int) -> np.ndarray:
        out = np.zeros((len(label_lists), n_labels), dtype=np.float32)
        for row, labels in enumerate(label_lists):
            for j in labels:
                if not 0 <= j < n_labels:
                    raise ValueError(f"label index {j} out of range for {n_labels} labels")
                out[row, j] = 1.0
        return out

    def label_lists(self, targets: np.ndarray) -> list[list[int]]:
        return [np.flatnonzero(np.asarray(row) > 0.5).tolist() for row in targets]

    def accepts(self, label_list: Sequence[int]) -> bool:
        return True  # no label at all is an answer too

    def check_schema(self, n_labels: int) -> None:
        if n_labels < 1:
            raise ValueError("multi-label classification needs at least one label")

    # -- head and loss ----------------------------------------------------------------

    def tensor(self, targets: np.ndarray) -> torch.Tensor:
        import torch

        return torch.as_tensor(targets, dtype=torch.float32)

    def loss(self, train_targets: np.ndarray, n_labels: int, *, class_weighting: bool,
             label_smoothing: float = 0.0) -> nn.Module:
        import torch
        from torch import nn

        weight = torch.as_tensor(pos_weights(train_targets)) if class_weighting else None
        return nn.BCEWithLogitsLoss(pos_weight=weight)

    def fit_linear(self, X: np.ndarray, targets: np.ndarray, n_labels: int, *, C: float,
                   balanced: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """One binary logistic regression per label; a label always (or never) present so
        far keeps the log-odds of its smoothed frequency."""
        weight, bias = np.zeros((n_labels, X.shape[1])), np.zeros(n_labels)
        for j in range(n_labels):
            col = (targets[:, j] > 0.5).astype(np.int64)
            if 0 < col.sum() < len(col):
                lr = logistic_regression(C, balanced, seed).fit(X, col)
                weight[j], bias[j] = lr.coef_[0], lr.intercept_[0]
            else:
                p = (col.sum() + 1.0) / (len(col) + 2.0)
                bias[j] = math.log(p / (1 - p))
        return weight, bias

    def learnable(self, targets: np.ndarray) -> bool:
        return True

    def fit_embedding_head(self, head: EmbeddingHead, x: np.ndarray, y: Any) -> None:
        y = np.asarray(y)
        if y.ndim != 2 or len(y) != len(x):
            raise ValueError(f"multi-label y must be (n, k) for n={len(x)}, got {y.shape}")
        k = y.shape[1]
        classes = list(head.classes) if head.classes is not None else list(range(k))
        if len(classes) != k:
            raise ValueError(f"{k} label columns but {len(classes)} classes")
        head.classes_ = np.array(classes, dtype=object)
        head.n_features_in_ = x.shape[1]
        yb = (y > 0).astype(np.int64)
        head.prior_ = (yb.sum(axis=0) + 1.0) / (len(yb) + 2.0)
        # A label always (or never) present so far: None keeps its smoothed frequency.
        head.models_ = [head._new_lr().fit(x, yb[:, j]) if 0 < yb[:, j].sum() < len(yb)
                        else None for j in range(k)]

    def embedding_head_proba(self, head: EmbeddingHead, x: np.ndarray) -> np.ndarray:
        out = np.tile(head.prior_, (len(x), 1))
        for j, model in enumerate(head.models_):
            if model is not None:
                out[:, j] = model.predict_proba(x)[:, 1]
        return out

    def embedding_head_predict(self, head: EmbeddingHead, probs: np.ndarray) -> np.ndarray:
        return (probs >= 0.5).astype(np.int64)

    def sklearn_head(self, weight: np.ndarray, bias: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        k, d = weight.shape
        Y = np.vstack([np.eye(k, dtype=np.int64), np.zeros((1, k), dtype=np.int64)])
        X = np.random.default_rng(0).normal(size=(len(Y), d))
        head = OneVsRestClassifier(LogisticRegression()).fit(X, Y)
        for j, estimator in enumerate(head.estimators_):
            estimator.coef_ = weight[j][None, :].copy()
            estimator.intercept_ = bias[j:j + 1].copy()
        return head

    def setfit_labels(self, labels: Sequence[str]) -> list[str] | None:
        return None  # the head predicts indicator rows: no names to map to

    # -- activation and decoding ------------------------------------------------------

    def activate(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(logits)

    def activate_tensor(self, logits: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.sigmoid(logits)

    def decode(self, probs: np.ndarray, thresholds: Thresholds = None) -> np.ndarray:
        return (np.asarray(probs) >= _cut(thresholds)).astype(np.int64)

    def confidence(self, probs: np.ndarray, thresholds: Thresholds = None) -> np.ndarray:
        """The mean distance of each label's probability from 0.5, rescaled to [0, 1]."""
        probs = np.asarray(probs)
        if probs.size == 0:
            return np.zeros(len(probs))
        return np.abs(probs - 0.5).mean(axis=1) * 2

    def agreement(self, a: np.ndarray, b: np.ndarray, thresholds: Thresholds = None
                  ) -> float:
        """Share of (document, label) cells decided alike."""
        if len(a) == 0:
            return float("nan")
        cut = _cut(thresholds)
        return float(np.mean((np.asarray(a) >= cut) == (np.asarray(b) >= cut)))

    # -- metrics and calibration ------------------------------------------------------

    def confusion(self, y_true: Any, probs: np.ndarray, thresholds: Thresholds = None
                  ) -> list[list[int]] | None:
        return None  # labels are not exclusive: no one predicted label per true one

    def label_count(self, *decoded: np.ndarray) -> int:
        return int(np.shape(decoded[0])[1])

    def exact(self, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
        return (np.asarray(truth) == np.asarray(pred)).all(axis=1)

    def nll(self, logits: np.ndarray, y: np.ndarray, eps: float = 0.0) -> float:
        """Mean binary cross-entropy over every cell, each target a 1 - eps / eps pair."""
        z = np.asarray(logits, dtype=np.float64)
        t = np.asarray(y, dtype=np.float64) * (1 - 2 * eps) + eps
        # log(1 + e^-|z|) + max(z, 0) - t z: stable binary cross-entropy with logits.
        return float(np.mean(np.logaddexp(0.0, z) - t * z))

    def cross_entropy(self, logits: np.ndarray, q: np.ndarray) -> float:
        z = np.asarray(logits, dtype=np.float64)
        return float(np.mean(np.logaddexp(0.0, z) - np.asarray(q) * z))

    def ece(self, probs: np.ndarray, y: np.ndarray, thresholds: Thresholds = None) -> float:
        """Over every (text, label) cell as a binary prediction."""
        if len(probs) == 0:
            return 0.0
        truth = np.asarray(y) > 0.5
        pred = probs >= _cut(thresholds)
        confidence = np.where(pred, probs, 1 - probs).ravel()
        return expected_calibration_error(confidence, (pred == truth).ravel())

    def default_thresholds(self, n_labels: int) -> np.ndarray | None:
        return np.full(n_labels, 0.5)

    def fit_thresholds(self, y: np.ndarray, probs: np.ndarray) -> np.ndarray | None:
        return tune_thresholds(np.asarray(y), probs)

    # -- distillation -----------------------------------------------------------------

    def hard_rows(self, targets: np.ndarray, n_labels: int) -> np.ndarray:
        return np.asarray(targets, dtype=np.float32)

    def soft_loss(self, scaled_logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        from torch.nn import functional as F

        return F.binary_cross_entropy_with_logits(scaled_logits, soft)

    def hard_loss(self, logits: torch.Tensor, hard_rows: torch.Tensor) -> torch.Tensor:
        from torch.nn import functional as F

        return F.binary_cross_entropy_with_logits(logits, hard_rows)

    # -- query strategies -------------------------------------------------------------

    def uncertainty_inputs(self, probs: np.ndarray) -> np.ndarray:
        """One yes/no question per label: its sigmoid ``p`` as ``[1 - p, p]``."""
        return _binary(probs)

    def gradient_factor(self, probs: np.ndarray) -> np.ndarray:
        """The binary cross-entropy gradient ``p - 1[p > 0.5]`` per label."""
        p = np.asarray(probs, dtype=np.float64)
        return p - (p > 0.5)
