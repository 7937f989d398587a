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
    """Logistic regression on embeddings; one-vs-rest for multi-label.

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

    def __init__(
        self,
        *,
        C: float = 1.0,
        class_weight: Literal["balanced"] | None = "balanced",
        multi_label: bool = False,
        classes: Sequence[Any] | None = None,
        normalize: bool = True,
        max_iter: int = 500,
        seed: int = 0,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.multi_label = multi_label
        self.classes = classes
        self.normalize = normalize
        self.max_iter = max_iter
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {
            "C": self.C,
            "class_weight": self.class_weight,
            "multi_label": self.multi_label,
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
        x = _prepare(X, self.normalize)
        if self.multi_label:
            return self._fit_multi(x, np.asarray(y))
        y_arr = np.asarray(list(y), dtype=object)
        if len(y_arr) != len(x):
            raise ValueError(f"{len(x)} embeddings but {len(y_arr)} labels")
        seen = list(dict.fromkeys(y_arr.tolist()))  # first-seen order
        if self.classes is not None:
            classes = list(self.classes)
            unknown = [c for c in seen if c not in classes]
            if unknown:
                raise ValueError(f"labels {unknown} are not in classes {classes}")
        else:
            classes = sorted(seen, key=str)
        self.classes_ = np.array(classes, dtype=object)
        self.n_features_in_ = x.shape[1]
        counts = np.array([(y_arr == c).sum() for c in classes], dtype=np.float64)
        # Add-one smoothing: the constant used when there is nothing to discriminate.
        self.prior_ = (counts + 1.0) / (counts.sum() + len(classes))
        self.model_: Any = None
        self.columns_: np.ndarray = np.array([], dtype=np.int64)
        if len(seen) >= 2:
            index = {c: i for i, c in enumerate(classes)}
            codes = np.array([index[c] for c in y_arr.tolist()], dtype=np.int64)
            self.model_ = self._new_lr().fit(x, codes)
            self.columns_ = np.asarray(self.model_.classes_, dtype=np.int64)
        return self

    def _fit_multi(self, x: np.ndarray, y: np.ndarray) -> EmbeddingHead:
        if y.ndim != 2 or len(y) != len(x):
            raise ValueError(f"multi-label y must be (n, k) for n={len(x)}, got {y.shape}")
        k = y.shape[1]
        classes = list(self.classes) if self.classes is not None else list(range(k))
        if len(classes) != k:
            raise ValueError(f"{k} label columns but {len(classes)} classes")
        self.classes_ = np.array(classes, dtype=object)
        self.n_features_in_ = x.shape[1]
        yb = (y > 0).astype(np.int64)
        self.prior_ = (yb.sum(axis=0) + 1.0) / (len(yb) + 2.0)
        self.models_: list[Any] = []
        for j in range(k):
            col = yb[:, j]
            # A label always (or never) present so far: keep its smoothed frequency.
            self.models_.append(self._new_lr().fit(x, col) if 0 < col.sum() < len(col) else None)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, k) probabilities, columns in ``classes_`` order.

        Single-label rows sum to 1; multi-label columns are independent probabilities.
        """
        if not hasattr(self, "classes_"):
            raise RuntimeError("EmbeddingHead is not fitted yet: call fit() first")
        with one_blas_thread():
            return self._predict_proba(X)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        x = _prepare(X, self.normalize)
        n, k = len(x), len(self.classes_)
        if self.multi_label:
            out = np.tile(self.prior_, (n, 1))
            for j, model in enumerate(self.models_):
                if model is not None:
                    out[:, j] = model.predict_proba(x)[:, 1]
            return out
        if self.model_ is None:
            return np.tile(self.prior_, (n, 1))
        out = np.zeros((n, k))
        # Classes with no labeled example yet get probability 0, as a softmax over the
        # seen classes would give them.
        out[:, self.columns_] = self.model_.predict_proba(x)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels (single-label) or an (n, k) 0/1 matrix at 0.5 (multi-label)."""
        p = self.predict_proba(X)
        if self.multi_label:
            return (p >= 0.5).astype(np.int64)
        return self.classes_[p.argmax(axis=1)]


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
    y_arr = np.asarray(y_train) if head.multi_label else np.asarray(list(y_train), dtype=object)
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
