"""The interface every task type implements, so the training loop, calibration, metrics,
query strategies, distillation and export never ask which task they are running.

A task is stateless: one instance per kind (``learner.ml.tasks.task_for``). Arrays in
the contracts below:

- ``targets``: what the loss and the metrics compare against, built by ``targets``
  from per-document label index lists.
- ``logits`` and ``probs``: (n, k), one column per label of the schema.
- ``thresholds``: per-label decision cuts (k,) where the task decodes by thresholds,
  else None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from learner.ml.evaluate import present_macro_f1

if TYPE_CHECKING:
    import torch
    from torch import nn

    from learner.ml.refresh import EmbeddingHead

Thresholds = np.ndarray | Sequence[float] | float | None


class Task(ABC):
    """One kind of annotation the model learns (single-label, multi-label, ...)."""

    name: ClassVar[str]
    # The model card's name for the task, and what its reader needs to know to use the
    # probabilities beyond "columns as labels" (Markdown; "" when nothing).
    card_name: ClassVar[str]
    card_note: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- targets ------------------------------------------------------------------

    @abstractmethod
    def targets(self, label_lists: Sequence[Sequence[int]], n_labels: int) -> np.ndarray:
        """Targets of documents given as lists of label indices (0..k-1), one list each."""

    @abstractmethod
    def label_lists(self, targets: np.ndarray) -> list[list[int]]:
        """Inverse of ``targets``: the label indices of each document."""

    @abstractmethod
    def accepts(self, label_list: Sequence[int]) -> bool:
        """Whether one document's labels are a complete answer this task can learn from."""

    @abstractmethod
    def check_schema(self, n_labels: int) -> None:
        """Raise ValueError when a label schema of ``n_labels`` cannot be trained."""

    def label_array(self, y: Any) -> np.ndarray:
        """Labels as given to ``EmbeddingHead.fit``, as an array rows can be taken from."""
        return np.asarray(y)

    # -- head and loss ----------------------------------------------------------------

    @abstractmethod
    def tensor(self, targets: np.ndarray) -> torch.Tensor:
        """The targets as the tensor the loss takes."""

    @abstractmethod
    def loss(self, train_targets: np.ndarray, n_labels: int, *, class_weighting: bool,
             label_smoothing: float = 0.0) -> nn.Module:
        """The fine-tuning loss, weighted from the training split's targets only."""

    @abstractmethod
    def fit_linear(self, X: np.ndarray, targets: np.ndarray, n_labels: int, *, C: float,
                   balanced: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Weights (k, d) and bias (k,) of the linear head fitted on vectors ``X`` (n, d)."""

    @abstractmethod
    def learnable(self, targets: np.ndarray) -> bool:
        """Whether these targets hold enough variety to fit a classifier (and to
        cross-validate its head)."""

    @abstractmethod
    def fit_embedding_head(self, head: EmbeddingHead, x: np.ndarray, y: Any) -> None:
        """Fit ``head`` (its learned attributes) on unit vectors ``x`` and labels ``y``."""

    @abstractmethod
    def embedding_head_proba(self, head: EmbeddingHead, x: np.ndarray) -> np.ndarray:
        """(n, k) probabilities of a fitted ``EmbeddingHead``."""

    @abstractmethod
    def embedding_head_predict(self, head: EmbeddingHead, probs: np.ndarray) -> np.ndarray:
        """``EmbeddingHead.predict`` from its probabilities."""

    @abstractmethod
    def sklearn_head(self, weight: np.ndarray, bias: np.ndarray) -> Any:
        """The (calibrated) linear head as a fitted scikit-learn estimator whose
        ``predict_proba`` equals ``activate(x @ weight.T + bias)``."""

    @abstractmethod
    def setfit_labels(self, labels: Sequence[str]) -> list[str] | None:
        """The ``labels`` SetFit maps predictions to (None: it predicts indicator rows)."""

    # -- activation and decoding ------------------------------------------------------

    @abstractmethod
    def activate(self, logits: np.ndarray) -> np.ndarray:
        """(n, k) probabilities of (n, k) logits (float64)."""

    @abstractmethod
    def activate_tensor(self, logits: torch.Tensor) -> torch.Tensor:
        """``activate`` inside a torch graph (the ONNX export traces it)."""

    @abstractmethod
    def decode(self, probs: np.ndarray, thresholds: Thresholds = None) -> np.ndarray:
        """Predictions in the shape of ``targets``: (n,) indices, or an (n, k) 0/1 matrix."""

    def predicted_lists(self, probs: np.ndarray, thresholds: Thresholds = None
                        ) -> list[list[int]]:
        """The predicted label indices of each document."""
        return self.label_lists(self.decode(probs, thresholds))

    @abstractmethod
    def confidence(self, probs: np.ndarray, thresholds: Thresholds = None) -> np.ndarray:
        """(n,) how sure each prediction is, in [0, 1]."""

    @abstractmethod
    def agreement(self, a: np.ndarray, b: np.ndarray, thresholds: Thresholds = None
                  ) -> float:
        """Share of decisions two probability matrices make alike."""

    # -- metrics and calibration ------------------------------------------------------

    @abstractmethod
    def confusion(self, y_true: Any, probs: np.ndarray, thresholds: Thresholds = None
                  ) -> list[list[int]] | None:
        """The k x k confusion matrix (rows true, columns predicted) where the task has
        one, else None."""

    score_key: ClassVar[str]
    """The ``evaluate`` key a validation split is judged by."""

    def indicator(self, values: Any, n_labels: int) -> np.ndarray:
        """(n, k) 0/1 int8 matrix of targets or decoded predictions: the form
        scikit-learn's metrics take for every task."""
        return (self.hard_rows(np.asarray(values), n_labels) > 0.5).astype(np.int8)

    @abstractmethod
    def label_count(self, *decoded: np.ndarray) -> int:
        """How many labels these targets or decoded predictions need, at least."""

    def macro_f1(self, truth: np.ndarray, pred: np.ndarray) -> float:
        """Macro-F1 of decoded predictions over the labels present in the truth or the
        predictions (scikit-learn's default label set), so a group of documents without
        some label is not charged for it."""
        k = self.label_count(truth, pred)
        t, p = self.indicator(truth, k), self.indicator(pred, k)
        return float(present_macro_f1(t[:, None], p[:, None])[0])

    @abstractmethod
    def exact(self, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """(n,) bool: the decoded prediction equals the truth."""

    @abstractmethod
    def nll(self, logits: np.ndarray, y: np.ndarray, eps: float = 0.0) -> float:
        """Mean negative log-likelihood of the truth, with ``eps`` of its mass moved off
        the truth (label smoothing; 0: plain NLL)."""

    @abstractmethod
    def cross_entropy(self, logits: np.ndarray, q: np.ndarray) -> float:
        """Mean cross-entropy of ``logits`` against target probabilities ``q`` (n, k)."""

    @abstractmethod
    def ece(self, probs: np.ndarray, y: np.ndarray, thresholds: Thresholds = None) -> float:
        """Expected calibration error of these probabilities against the truth."""

    def default_thresholds(self, n_labels: int) -> np.ndarray | None:
        """The thresholds of a model not calibrated on held-out data."""
        return None

    @abstractmethod
    def fit_thresholds(self, y: np.ndarray, probs: np.ndarray) -> np.ndarray | None:
        """Decision thresholds tuned on held-out (targets, probabilities), or None."""

    # -- distillation -----------------------------------------------------------------

    @abstractmethod
    def hard_rows(self, targets: np.ndarray, n_labels: int) -> np.ndarray:
        """(n, k) float32 rows of the truth, as packed beside the teacher's."""

    @abstractmethod
    def soft_loss(self, scaled_logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        """The student's loss against the teacher's softened probabilities."""

    @abstractmethod
    def hard_loss(self, logits: torch.Tensor, hard_rows: torch.Tensor) -> torch.Tensor:
        """The student's loss against ``hard_rows`` of the truth."""

    # -- query strategies -------------------------------------------------------------

    @abstractmethod
    def uncertainty_inputs(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities as categorical distributions, shape (..., q, c): q questions per
        document (one for single-label, one per label for multi-label), each a
        distribution over c outcomes. Uncertainty scores are computed per question on
        the last axis and averaged over the questions; ``...`` keeps leading axes (MC
        samples)."""

    @abstractmethod
    def gradient_factor(self, probs: np.ndarray) -> np.ndarray:
        """(n, k) the loss gradient w.r.t. the logits under the model's own prediction
        (BADGE's gradient embedding is this times the pooled vector)."""


def logistic_regression(C: float, balanced: bool, seed: int, max_iter: int = 2000) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight="balanced" if balanced else None,
                              max_iter=max_iter, random_state=seed)
