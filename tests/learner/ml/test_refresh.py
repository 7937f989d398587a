"""The fast refresh: a logistic-regression head on cached embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from learner.ml.refresh import EmbeddingHead, committee_proba, refresh_scores
from learner.ml.strategies import BALD, ContrastiveKNN, MarginSampling
from learner.ml.tasks import MULTI_LABEL


def blobs(n: int = 90, k: int = 3, h: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` embeddings around ``k`` well separated centres; labels 0..k-1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, h)) * 5
    y = np.arange(n) % k
    return centres[y] + rng.normal(size=(n, h)), y


def test_init_only_stores_settings() -> None:
    head = EmbeddingHead(C=3.0, class_weight=None)
    assert head.C == 3.0 and head.class_weight is None
    assert not [a for a in vars(head) if a.endswith("_")]


def test_fit_returns_self_and_learns_separable_classes() -> None:
    x, y = blobs()
    head = EmbeddingHead()
    assert head.fit(x, y.tolist()) is head
    probs = head.predict_proba(x)
    assert probs.shape == (90, 3)
    assert probs.sum(axis=1) == pytest.approx(np.ones(90))
    assert (probs.argmax(axis=1) == y).mean() > 0.95
    assert list(head.predict(x[:3])) == [0, 1, 2]


def test_string_labels_follow_the_given_class_order() -> None:
    x, y = blobs(k=2)
    names = np.array(["spam", "ham"])[y]
    head = EmbeddingHead(classes=["ham", "spam"]).fit(x, names.tolist())
    assert list(head.classes_) == ["ham", "spam"]
    assert head.predict_proba(x)[y == 1].argmax(axis=1).tolist() == [0] * int((y == 1).sum())


def test_only_one_class_labeled_gives_constant_probabilities() -> None:
    x, _ = blobs()
    head = EmbeddingHead(classes=[0, 1, 2]).fit(x[:4], [1, 1, 1, 1])
    probs = head.predict_proba(x)
    assert probs.shape == (90, 3)
    assert np.allclose(probs, probs[0])  # no signal yet: the same for every document
    assert probs[0] == pytest.approx([1 / 7, 5 / 7, 1 / 7])  # add-one smoothed frequencies


def test_unseen_classes_get_zero_columns() -> None:
    x, y = blobs(k=2)
    probs = EmbeddingHead(classes=[0, 1, 2]).fit(x, y.tolist()).predict_proba(x)
    assert probs.shape == (90, 3)
    assert (probs[:, 2] == 0).all()


def test_unknown_label_is_rejected() -> None:
    x, y = blobs(k=2)
    with pytest.raises(ValueError, match="not in classes"):
        EmbeddingHead(classes=[0, 1]).fit(x, [5] + y[1:].tolist())


def test_multi_label_is_one_vs_rest_and_survives_constant_labels() -> None:
    x, y = blobs(k=3)
    indicator = np.zeros((90, 3), dtype=int)
    indicator[np.arange(90), y] = 1
    indicator[:, 2] = 0  # label 2 never present so far
    head = EmbeddingHead(task=MULTI_LABEL).fit(x, indicator)
    probs = head.predict_proba(x)
    assert probs.shape == (90, 3)
    assert (probs[y == 0, 0] > 0.5).mean() > 0.9
    assert np.allclose(probs[:, 2], 1 / 92)  # (0 + 1) / (90 + 2)
    assert head.predict(x).shape == (90, 3)


def test_predict_before_fit_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        EmbeddingHead().predict_proba(np.zeros((2, 3)))


def test_refresh_scores_returns_probs_and_strategy_scores() -> None:
    x, y = blobs()
    head = EmbeddingHead().fit(x[:30], y[:30].tolist())
    probs, scores = refresh_scores(head, x[30:], MarginSampling())
    assert probs.shape == (60, 3) and scores.shape == (60,)
    _, cal = refresh_scores(head, x[30:], ContrastiveKNN(), labeled_embeddings=x[:30])
    assert cal.shape == (60,)


def test_committee_gives_bald_its_samples() -> None:
    x, y = blobs()
    head = EmbeddingHead().fit(x[:30], y[:30].tolist())
    mc = committee_proba(head, x[:30], y[:30].tolist(), x[30:], n_members=4, seed=1)
    assert mc.shape == (4, 60, 3)
    _, scores = refresh_scores(head, x[30:], BALD(), mc_probs=mc)
    assert (scores >= 0).all()


def test_refresh_scores_a_large_pool_in_one_call() -> None:
    # Its speed (< 2 s for 20,000 documents on 2 cores) is bench/refresh.py's figure, not
    # a test's: the machines are shared. Here: every document gets a finite score.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 384)).astype(np.float32)
    y = rng.integers(0, 4, 200)
    head = EmbeddingHead().fit(x[:200], y.tolist())
    probs, scores = refresh_scores(head, x, MarginSampling())
    assert probs.shape == (5000, 4) and scores.shape == (5000,)
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
