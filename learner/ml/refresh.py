"""The fast refresh: a logistic-regression head on cached embeddings.

Fine-tuning the encoder takes minutes on CPU; an annotator labels a document every few
seconds. Between fine-tuning rounds the pool is re-scored with a linear head on the
frozen (or last fine-tuned) encoder's cached embeddings: fit on every labeled document,
predict the pool, score with the query strategy. On 2 CPU cores that is well under the
2 s budget for a 20,000-document pool (``bench/refresh.py`` measures it).

scikit-learn shape: ``__init__`` stores settings, ``fit`` returns ``self``, learned
attributes end in ``_``, ``predict_proba`` returns an (n, k) array whose columns follow
``classes_``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from learner.ml.strategies import QueryStrategy, one_blas_thread
from learner.ml.tasks import SINGLE_LABEL, Task

_EPS = 1e-12


def _prepare(x: np.ndarray, normalize: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (n, h), got shape {x.shape}")
    if normalize:
        # Sentence encoders are trained for cosine geometry; unit rows also make one C
        # work across encoders whose raw embedding norms differ.
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)
    return x


class EmbeddingHead:
    """Logistic regression on embeddings, fitted as the task fits it
    (``Task.fit_embedding_head``): one softmax model for single-label, one-vs-rest for
    multi-label.

    ``fit(X, y)``: ``X`` is (n, h). Single-label ``y`` is a length-n sequence of class
    labels; multi-label ``y`` is an (n, k) 0/1 indicator matrix. Pass ``classes`` (all
    classes of the label schema, in column order) so that ``predict_proba`` has a
    column for every class even before each has been labeled; without it the classes
    are those seen in ``y`` (single-label) or ``range(k)`` (multi-label).

    Degenerate cases never crash: a class (or, multi-label, a label value) that has not
    been seen yet makes the prediction a constant: the add-one smoothed label frequency,
    the same for every document. Uncertainty strategies then tie everywhere and the
    seeded tie-break makes the pick random, which is the right thing to do with no
    signal.
    """

    # Learned by fit (``Task.fit_embedding_head``): the column order, the smoothed label
    # frequency (the prediction while nothing discriminates), the fitted sklearn models
    # (None where a label has nothing to learn) and, single-label, the columns they cover.
    classes_: np.ndarray
    n_features_in_: int
    prior_: np.ndarray
    models_: list[Any]
    columns_: np.ndarray

    def __init__(
        self,
        *,
        C: float = 1.0,
        class_weight: Literal["balanced"] | None = "balanced",
        task: Task = SINGLE_LABEL,
        classes: Sequence[Any] | None = None,
        normalize: bool = True,
        max_iter: int = 500,
        seed: int = 0,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.task = task
        self.classes = classes
        self.normalize = normalize
        self.max_iter = max_iter
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {
            "C": self.C,
            "class_weight": self.class_weight,
            "task": self.task,
            "classes": self.classes,
            "normalize": self.normalize,
            "max_iter": self.max_iter,
            "seed": self.seed,
        }

    def _new_lr(self) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(
            C=self.C,
            class_weight=self.class_weight,
            max_iter=self.max_iter,
            random_state=self.seed,
        )

    def fit(self, X: np.ndarray, y: Sequence[Any] | np.ndarray) -> EmbeddingHead:
        with one_blas_thread():
            return self._fit(X, y)

    def _fit(self, X: np.ndarray, y: Sequence[Any] | np.ndarray) -> EmbeddingHead:
        self.models_: list[Any] = []
        self.columns_: np.ndarray = np.array([], dtype=np.int64)
        self.task.fit_embedding_head(self, _prepare(X, self.normalize), y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, k) probabilities, columns in ``classes_`` order (the task's activation:
        single-label rows sum to 1, multi-label columns are independent)."""
        if not hasattr(self, "classes_"):
            raise RuntimeError("EmbeddingHead is not fitted yet: call fit() first")
        with one_blas_thread():
            return self._predict_proba(X)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.task.embedding_head_proba(self, _prepare(X, self.normalize))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The task's predictions: class labels (single-label) or an (n, k) 0/1 matrix
        at 0.5 (multi-label)."""
        return self.task.embedding_head_predict(self, self.predict_proba(X))


def committee_proba(
    head: EmbeddingHead,
    X_train: np.ndarray,
    y_train: Sequence[Any] | np.ndarray,
    X: np.ndarray,
    *,
    n_members: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """(T, n, k) probabilities from ``n_members`` heads fit on bootstrap resamples.

    The fast-refresh stand-in for MC dropout: a linear head has no dropout, but a
    bootstrap committee gives BALD the same kind of disagreement signal.
    """
    rng = np.random.default_rng(seed)
    y_arr = head.task.label_array(y_train)
    params = head.get_params()
    if params["classes"] is None and hasattr(head, "classes_"):
        params["classes"] = list(head.classes_)
    out = []
    for _ in range(n_members):
        idx = rng.integers(0, len(X_train), len(X_train))
        member = EmbeddingHead(**params).fit(np.asarray(X_train)[idx], y_arr[idx])
        out.append(member.predict_proba(X))
    return np.stack(out)


def refresh_scores(
    head: EmbeddingHead,
    pool_embeddings: np.ndarray,
    strategy: QueryStrategy,
    *,
    labeled_embeddings: np.ndarray | None = None,
    mc_probs: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score the pool with a fitted head: returns ``(probs (n, k), scores (n,))``.

    Both are returned because we store the full probability vector beside the
    strategy's score. ``labeled_embeddings`` feed CAL (its neighbours' predictions come
    from the same head); ``mc_probs`` feed BALD (see :func:`committee_proba`).
    """
    probs = head.predict_proba(pool_embeddings)
    labeled_probs = None if labeled_embeddings is None else head.predict_proba(labeled_embeddings)
    with one_blas_thread():
        scores = strategy.scores(
            probs,
            embeddings=pool_embeddings,
            mc_probs=mc_probs,
            labeled_embeddings=labeled_embeddings,
            labeled_probs=labeled_probs,
            rng=np.random.default_rng(seed),
        )
    return probs, scores
