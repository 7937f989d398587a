"""Single-label classification: every document has exactly one label of the schema.

Targets are (n,) int64 label indices; the head is a softmax over the labels, decoded by
its argmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from learner.ml.calibration import log_softmax, softmax
from learner.ml.evaluate import expected_calibration_error
from learner.ml.tasks.base import Task, Thresholds, logistic_regression

if TYPE_CHECKING:
    import torch
    from torch import nn

    from learner.ml.refresh import EmbeddingHead

# The logit given to a class with no labeled example yet: it is never predicted, and no
# plausible temperature lifts it to a visible probability.
UNSEEN_CLASS_BIAS = -30.0


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced single-label weights ``n / (k * count_c)``, float32 (k,).

    Classes absent from ``y`` get 1.0 (no example carries them, so the value is unused).
    Cross-entropy with ``weight=`` and mean reduction divides by the summed weights, so
    only the ratios matter.
    """
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    weights = np.ones(n_classes, dtype=np.float64)
    present = counts > 0
    weights[present] = counts.sum() / (n_classes * counts[present])
    return weights.astype(np.float32)


class SingleLabel(Task):
    name = "single_label"
    card_name = "single_label_classification"
    score_key = "macro_f1"

    # -- targets ------------------------------------------------------------------

    def targets(self, label_lists: Sequence[Sequence[int]], n_labels: int) -> np.ndarray:
        for labels in label_lists:
            if len(labels) != 1:
                raise ValueError(f"a single-label document needs one label, got {list(labels)}")
        out = np.asarray([labels[0] for labels in label_lists], dtype=np.int64)
        if ((out < 0) | (out >= n_labels)).any():
            raise ValueError(f"label index out of range for {n_labels} labels")
        return out

    def label_lists(self, targets: np.ndarray) -> list[list[int]]:
        return [[int(i)] for i in np.asarray(targets).reshape(-1)]

    def accepts(self, label_list: Sequence[int]) -> bool:
        return len(label_list) == 1

    def check_schema(self, n_labels: int) -> None:
        if n_labels < 2:
            raise ValueError("single-label classification needs at least two labels")

    def label_array(self, y: Any) -> np.ndarray:
        return np.asarray(list(y), dtype=object)

    # -- head and loss ----------------------------------------------------------------

    def tensor(self, targets: np.ndarray) -> torch.Tensor:
        import torch

        return torch.as_tensor(targets, dtype=torch.long)

    def loss(self, train_targets: np.ndarray, n_labels: int, *, class_weighting: bool,
             label_smoothing: float = 0.0) -> nn.Module:
        import torch
        from torch import nn

        weight = torch.as_tensor(class_weights(train_targets, n_labels)) if (
            class_weighting) else None
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

    def fit_linear(self, X: np.ndarray, targets: np.ndarray, n_labels: int, *, C: float,
                   balanced: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Softmax weights of a logistic regression; unseen classes get a zero row and a
        very low bias."""
        weight = np.zeros((n_labels, X.shape[1]))
        bias = np.full(n_labels, UNSEEN_CLASS_BIAS)
        present = np.unique(targets)
        if len(present) == 1:
            bias[present[0]] = 0.0
            return weight, bias
        lr = logistic_regression(C, balanced, seed).fit(X, targets)
        classes = lr.classes_.astype(np.int64)
        if len(classes) == 2:
            # sklearn's binary model is one logit z for the second class; as a softmax over
            # two classes that is the pair (-z/2, z/2).
            half_w, half_b = lr.coef_[0] / 2, lr.intercept_[0] / 2
            weight[classes[0]], bias[classes[0]] = -half_w, -half_b
            weight[classes[1]], bias[classes[1]] = half_w, half_b
        else:
            weight[classes], bias[classes] = lr.coef_, lr.intercept_
        return weight, bias

    def learnable(self, targets: np.ndarray) -> bool:
        return len(np.unique(targets)) >= 2

    def fit_embedding_head(self, head: EmbeddingHead, x: np.ndarray, y: Any) -> None:
        y_arr = np.asarray(list(y), dtype=object)
        if len(y_arr) != len(x):
            raise ValueError(f"{len(x)} embeddings but {len(y_arr)} labels")
        seen = list(dict.fromkeys(y_arr.tolist()))  # first-seen order
        if head.classes is not None:
            classes = list(head.classes)
            unknown = [c for c in seen if c not in classes]
            if unknown:
                raise ValueError(f"labels {unknown} are not in classes {classes}")
        else:
            classes = sorted(seen, key=str)
        head.classes_ = np.array(classes, dtype=object)
        head.n_features_in_ = x.shape[1]
        counts = np.array([(y_arr == c).sum() for c in classes], dtype=np.float64)
        # Add-one smoothing: the constant used when there is nothing to discriminate.
        head.prior_ = (counts + 1.0) / (counts.sum() + len(classes))
        head.models_ = []
        head.columns_ = np.array([], dtype=np.int64)
        if len(seen) >= 2:
            index = {c: i for i, c in enumerate(classes)}
            codes = np.array([index[c] for c in y_arr.tolist()], dtype=np.int64)
            model = head._new_lr().fit(x, codes)
            head.models_ = [model]
            head.columns_ = np.asarray(model.classes_, dtype=np.int64)

    def embedding_head_proba(self, head: EmbeddingHead, x: np.ndarray) -> np.ndarray:
        n, k = len(x), len(head.classes_)
        if not head.models_:
            return np.tile(head.prior_, (n, 1))
        out = np.zeros((n, k))
        # Classes with no labeled example yet get probability 0, as a softmax over the
        # seen classes would give them.
        out[:, head.columns_] = head.models_[0].predict_proba(x)
        return out

    def embedding_head_predict(self, head: EmbeddingHead, probs: np.ndarray) -> np.ndarray:
        return head.classes_[probs.argmax(axis=1)]

    def sklearn_head(self, weight: np.ndarray, bias: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression

        k, d = weight.shape
        X = np.random.default_rng(0).normal(size=(k, d))
        head = LogisticRegression().fit(X, np.arange(k))
        if k == 2:
            # A binary sklearn model is one logit for class 1: the softmax pair's difference.
            head.coef_ = (weight[1] - weight[0])[None, :]
            head.intercept_ = np.array([bias[1] - bias[0]])
        else:
            head.coef_, head.intercept_ = weight.copy(), bias.copy()
        return head

    def setfit_labels(self, labels: Sequence[str]) -> list[str] | None:
        return list(labels)

    # -- activation and decoding ------------------------------------------------------

    def activate(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits)

    def activate_tensor(self, logits: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.softmax(logits, dim=-1)

    def decode(self, probs: np.ndarray, thresholds: Thresholds = None) -> np.ndarray:
        probs = np.asarray(probs)
        return probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)

    def confidence(self, probs: np.ndarray, thresholds: Thresholds = None) -> np.ndarray:
        """The top label's probability."""
        probs = np.asarray(probs)
        return probs.max(axis=1) if len(probs) else np.zeros(0)

    def agreement(self, a: np.ndarray, b: np.ndarray, thresholds: Thresholds = None
                  ) -> float:
        """Share of documents whose top label is the same."""
        if len(a) == 0:
            return float("nan")
        return float(np.mean(np.asarray(a).argmax(axis=1) == np.asarray(b).argmax(axis=1)))

    # -- metrics and calibration ------------------------------------------------------

    def confusion(self, y_true: Any, probs: np.ndarray, thresholds: Thresholds = None
                  ) -> list[list[int]] | None:
        from sklearn.metrics import confusion_matrix

        k = probs.shape[1]
        if len(probs) == 0:
            return np.zeros((k, k), dtype=np.int64).tolist()
        return confusion_matrix(np.asarray(y_true, dtype=np.int64).reshape(len(probs)),
                                self.decode(probs), labels=np.arange(k)).tolist()

    def label_count(self, *decoded: np.ndarray) -> int:
        return max(int(np.asarray(a, dtype=np.int64).max(initial=-1)) for a in decoded) + 1

    def exact(self, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
        return np.asarray(truth) == np.asarray(pred)

    def nll(self, logits: np.ndarray, y: np.ndarray, eps: float = 0.0) -> float:
        """Cross-entropy against the truth with ``eps`` spread over the other labels."""
        z = np.asarray(logits, dtype=np.float64)
        idx = np.asarray(y, dtype=np.int64)
        if eps == 0.0:
            return float(-log_softmax(z)[np.arange(len(z)), idx].mean())
        n, k = z.shape
        q = np.full((n, k), eps / max(k - 1, 1))
        q[np.arange(n), idx] = 1 - eps
        return float(-(q * log_softmax(z)).sum(axis=1).mean())

    def cross_entropy(self, logits: np.ndarray, q: np.ndarray) -> float:
        return float(-(np.asarray(q) * log_softmax(np.asarray(logits, dtype=np.float64))
                       ).sum(axis=1).mean())

    def ece(self, probs: np.ndarray, y: np.ndarray, thresholds: Thresholds = None) -> float:
        """Of the top-label confidence."""
        if len(probs) == 0:
            return 0.0
        idx = np.asarray(y, dtype=np.int64)
        return expected_calibration_error(probs.max(axis=1), probs.argmax(axis=1) == idx)

    def fit_thresholds(self, y: np.ndarray, probs: np.ndarray) -> np.ndarray | None:
        return None  # the argmax decides

    # -- distillation -----------------------------------------------------------------

    def hard_rows(self, targets: np.ndarray, n_labels: int) -> np.ndarray:
        return np.eye(n_labels, dtype=np.float32)[np.asarray(targets, dtype=np.int64)]

    def soft_loss(self, scaled_logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        from torch.nn import functional as F

        return F.kl_div(F.log_softmax(scaled_logits, dim=-1), soft, reduction="batchmean")

    def hard_loss(self, logits: torch.Tensor, hard_rows: torch.Tensor) -> torch.Tensor:
        from torch.nn import functional as F

        return F.cross_entropy(logits, hard_rows.argmax(dim=-1))

    # -- query strategies -------------------------------------------------------------

    def uncertainty_inputs(self, probs: np.ndarray) -> np.ndarray:
        """One question per document: the softmax row itself."""
        return np.asarray(probs)[..., None, :]

    def gradient_factor(self, probs: np.ndarray) -> np.ndarray:
        """``p - onehot(argmax p)``."""
        a = np.array(probs, dtype=np.float64)
        a[np.arange(len(a)), a.argmax(axis=1)] -= 1.0
        return a

