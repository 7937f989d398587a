"""Query strategies: one shared mixin runs every strategy through the same checks, then
strategy-specific tests check that each one prefers what its paper says it should."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from learner.ml.strategies import (
    BADGE,
    BALD,
    DEFAULT_STRATEGY,
    STRATEGIES,
    ContrastiveKNN,
    EntropySampling,
    KMeansColdStart,
    LeastConfidence,
    MarginSampling,
    PoolExhausted,
    QueryStrategy,
    RandomSampling,
    Selection,
    draw_candidates,
    get_strategy,
)
from learner.ml.tasks import MULTI_LABEL, SINGLE_LABEL

N, K, H, T, M = 60, 3, 16, 4, 12


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def make_inputs(n: int = N, *, multi_label: bool = False, seed: int = 0) -> dict[str, Any]:
    """Model outputs for a pool of ``n``: probs, embeddings, MC samples, labeled views."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, K))
    mc_logits = logits[None] + rng.normal(scale=1.0, size=(T, n, K))
    if multi_label:
        probs = 1 / (1 + np.exp(-logits))
        mc = 1 / (1 + np.exp(-mc_logits))
        lab = 1 / (1 + np.exp(-rng.normal(size=(M, K))))
    else:
        probs, mc, lab = _softmax(logits), _softmax(mc_logits), _softmax(rng.normal(size=(M, K)))
    return {
        "probs": probs,
        "embeddings": rng.normal(size=(n, H)),
        "mc_probs": mc,
        "labeled_embeddings": rng.normal(size=(M, H)),
        "labeled_probs": lab,
    }


class StrategyChecks:
    """The contract every strategy meets. Subclasses set ``strategy_class``."""

    strategy_class: type[QueryStrategy]

    def make(self, **settings: Any) -> QueryStrategy:
        return self.strategy_class(**settings)

    def select(self, ids: list[Any] | None = None, k: int = 5, *, multi_label: bool = False,
               inputs: dict[str, Any] | None = None, **options: Any) -> Selection:
        ids = list(range(100, 100 + N)) if ids is None else ids
        inputs = make_inputs(len(ids), multi_label=multi_label) if inputs is None else inputs
        task = MULTI_LABEL if multi_label else SINGLE_LABEL
        return self.make(task=task).select(ids, k, **inputs, **options)

    def test_scores_one_per_pool_document(self) -> None:
        inputs = make_inputs()
        scores = self.make().scores(inputs.pop("probs"), **inputs,
                                    rng=np.random.default_rng(0))
        assert scores.shape == (N,)
        assert np.isfinite(scores).all()

    def test_selection_scores_every_pool_document(self) -> None:
        sel = self.select()
        assert len(sel.scored_ids) == N == len(sel.scores)
        assert set(sel.score_by_id()) == set(range(100, 100 + N))

    def test_picks_only_pool_ids_without_repeats(self) -> None:
        # Labeled and holdout documents are never passed in, so a pick outside the pool
        # ids would mean an index mix-up.
        ids = [f"doc-{i}" for i in range(N)]
        sel = self.select(ids, k=10)
        assert len(sel.ids) == 10 == len(set(sel.ids))
        assert set(sel.ids) <= set(ids)

    def test_same_seed_same_picks(self) -> None:
        assert self.select(seed=3).ids == self.select(seed=3).ids

    def test_empty_pool_raises_pool_exhausted(self) -> None:
        with pytest.raises(PoolExhausted):
            self.make().select([], 5, **make_inputs(0))

    def test_small_pool_returns_what_is_left(self) -> None:
        sel = self.select(list(range(3)), k=5)
        assert sorted(sel.ids) == [0, 1, 2]

    def test_multi_label_inputs_work(self) -> None:
        sel = self.select(k=6, multi_label=True)
        assert len(sel.ids) == 6
        assert np.isfinite(sel.scores).all()

    def test_random_share_is_respected(self) -> None:
        sel = self.select(k=10, random_share=0.3)
        assert len(sel.ids) == 10
        assert len(sel.random_ids) == 3
        assert sel.ids[-3:] == sel.random_ids  # informed picks first

    def test_near_duplicates_are_not_picked_together(self) -> None:
        # Every document has an exact twin (same embedding, same prediction): without
        # the check a score-ranked batch would take both copies of the top documents.
        base = make_inputs(N // 2)
        twin = {k: np.concatenate([v, v], axis=1 if k == "mc_probs" else 0)
                if k.startswith(("probs", "embeddings", "mc")) else v for k, v in base.items()}
        ids = list(range(N // 2)) * 2
        sel = self.select(ids, k=8, inputs=twin, dedup_threshold=0.95)
        assert len(sel.ids) == len(set(sel.ids)) == 8

    def test_candidate_subsample_is_respected(self) -> None:
        sel = self.select(k=4, candidate_size=20)
        assert len(sel.scored_ids) == 20
        assert set(sel.ids) <= set(sel.scored_ids)


class TestRandomSampling(StrategyChecks):
    strategy_class = RandomSampling

    def test_needs_no_model_outputs(self) -> None:
        sel = RandomSampling().select(list(range(10)), 3, seed=1)
        assert len(sel.ids) == 3


class TestLeastConfidence(StrategyChecks):
    strategy_class = LeastConfidence

    def test_picks_the_least_confident(self) -> None:
        probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.6, 0.3, 0.1]])
        assert LeastConfidence().select([0, 1, 2], 1, probs=probs).ids == [1]


class TestMarginSampling(StrategyChecks):
    strategy_class = MarginSampling

    def test_picks_the_smallest_margin(self) -> None:
        # Row 2 has the smaller top-two margin although row 1 has the higher entropy.
        probs = np.array([[0.8, 0.1, 0.1], [0.34, 0.33, 0.33], [0.5, 0.49, 0.01]])
        sel = MarginSampling().select([0, 1, 2], 1, probs=probs)
        assert sel.ids == [2]
        assert not sel.higher_is_more_informative
        assert sel.scores == pytest.approx([0.7, 0.01, 0.01])

    def test_ties_are_broken_by_the_seed_not_by_position(self) -> None:
        probs = np.full((50, 2), 0.5)  # an untrained model: everything ties
        firsts = {MarginSampling().select(list(range(50)), 1, probs=probs, seed=s).ids[0]
                  for s in range(10)}
        assert len(firsts) > 1
        again = MarginSampling().select(list(range(50)), 5, probs=probs, seed=4).ids
        assert again == MarginSampling().select(list(range(50)), 5, probs=probs, seed=4).ids

    def test_multi_label_margin_is_the_mean_over_labels(self) -> None:
        probs = np.array([[0.5, 0.9], [0.9, 0.9]])
        scores = MarginSampling(task=MULTI_LABEL).scores(probs)
        assert scores == pytest.approx([(0.0 + 0.8) / 2, 0.8])


class TestEntropySampling(StrategyChecks):
    strategy_class = EntropySampling

    def test_orders_by_entropy(self) -> None:
        probs = np.array([[1 / 3, 1 / 3, 1 / 3], [0.98, 0.01, 0.01], [0.6, 0.2, 0.2]])
        sel = EntropySampling().select([0, 1, 2], 3, probs=probs)
        assert sel.ids == [0, 2, 1]
        assert sel.scores[0] == pytest.approx(np.log(3))


class TestBALD(StrategyChecks):
    strategy_class = BALD

    def test_zero_when_all_samples_agree(self) -> None:
        probs = _softmax(np.random.default_rng(0).normal(size=(7, K)))
        scores = BALD().scores(None, mc_probs=np.stack([probs] * 5))
        assert scores == pytest.approx(np.zeros(7), abs=1e-9)

    def test_prefers_disagreement_over_agreed_uncertainty(self) -> None:
        agreed = np.array([[0.5, 0.5]] * 4)  # uncertain, but every pass says so
        disagree = np.array([[0.99, 0.01], [0.01, 0.99]] * 2)
        mc = np.stack([agreed, disagree], axis=1)  # (T=4, n=2, k=2)
        assert BALD().select(["agreed", "disagree"], 1, mc_probs=mc).ids == ["disagree"]

    def test_requires_mc_samples(self) -> None:
        with pytest.raises(ValueError, match="mc_probs"):
            BALD().select([0, 1], 1, probs=np.full((2, 2), 0.5))


class TestBADGE(StrategyChecks):
    strategy_class = BADGE

    def test_picks_diverse_points(self) -> None:
        # Three tight clusters of equally uncertain documents, the first one much
        # bigger: top-k by uncertainty would fill the batch from it; BADGE spreads.
        rng = np.random.default_rng(0)
        centres = np.eye(3) * 10
        sizes = [40, 5, 5]
        emb = np.concatenate([c + rng.normal(scale=0.01, size=(s, 3))
                              for c, s in zip(centres, sizes, strict=True)])
        cluster = np.repeat([0, 1, 2], sizes)
        probs = np.tile([0.5, 0.5], (len(emb), 1))
        probs[:40] = [0.45, 0.55]  # slightly larger gradients in the big cluster
        sel = BADGE().select(list(range(len(emb))), 3, probs=probs, embeddings=emb,
                             dedup_threshold=None)
        assert sorted(cluster[sel.ids]) == [0, 1, 2]

    def test_score_is_the_gradient_embedding_norm(self) -> None:
        probs = np.array([[0.7, 0.3]])
        emb = np.array([[3.0, 4.0]])
        # p - onehot(argmax) = [-0.3, 0.3]; ||.|| = 0.3*sqrt(2); ||h|| = 5
        assert BADGE().scores(probs, embeddings=emb) == pytest.approx([0.3 * 2**0.5 * 5])


class TestContrastiveKNN(StrategyChecks):
    strategy_class = ContrastiveKNN

    def test_prefers_a_prediction_unlike_its_labeled_neighbours(self) -> None:
        lab_emb = np.array([[1.0, 0.0], [0.0, 1.0]])
        lab_probs = np.array([[0.9, 0.1], [0.1, 0.9]])
        emb = np.array([[1.0, 0.05], [0.05, 1.0]])  # near labeled 0 and 1 respectively
        probs = np.array([[0.88, 0.12], [0.85, 0.15]])  # the second contradicts its neighbour
        sel = ContrastiveKNN(n_neighbors=1).select(
            ["agrees", "contrasts"], 1, probs=probs, embeddings=emb,
            labeled_embeddings=lab_emb, labeled_probs=lab_probs,
        )
        assert sel.ids == ["contrasts"]


class TestKMeansColdStart(StrategyChecks):
    strategy_class = KMeansColdStart

    def test_picks_one_per_cluster_without_a_model(self) -> None:
        rng = np.random.default_rng(1)
        centres = rng.normal(size=(4, 8)) * 10
        emb = np.concatenate([c + rng.normal(scale=0.05, size=(15, 8)) for c in centres])
        cluster = np.repeat(np.arange(4), 15)
        sel = KMeansColdStart().select(list(range(60)), 4, embeddings=emb)
        assert sorted(cluster[sel.ids]) == [0, 1, 2, 3]


def test_registry_names_every_strategy() -> None:
    assert set(STRATEGIES) == {"random", "least_confidence", "margin", "entropy", "bald",
                               "badge", "cal", "kmeans"}
    assert DEFAULT_STRATEGY in STRATEGIES
    assert isinstance(get_strategy("margin", task=MULTI_LABEL), MarginSampling)
    with pytest.raises(ValueError, match="unknown strategy"):
        get_strategy("nope")


def test_changing_random_share_keeps_the_candidate_set() -> None:
    inputs = make_inputs()
    a = MarginSampling().select(list(range(N)), 5, candidate_size=30, **inputs)
    b = MarginSampling().select(list(range(N)), 5, candidate_size=30, random_share=0.4,
                                **inputs)
    assert a.scored_ids == b.scored_ids


def test_draw_candidates_never_fewer_than_a_batch() -> None:
    assert len(draw_candidates(100, 10, k=25)) == 25
    assert len(draw_candidates(100, None)) == 100
    assert list(draw_candidates(5, 10)) == [0, 1, 2, 3, 4]


def test_misaligned_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="rows"):
        MarginSampling().select([0, 1, 2], 1, probs=np.full((2, 2), 0.5))
