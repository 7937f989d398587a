"""Drift scores and per-group metrics (learner.ml.monitoring), checked against sklearn and
against samples whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from learner.ml import monitoring
from learner.ml.monitoring import (
    CONFIDENCE_BINS,
    GROUP_MIN_COUNT,
    chi2_p_value,
    confidence_counts,
    drift_between,
    group_metrics,
    merged_groups,
    profile_of,
    psi,
    wilson_interval,
)
from learner.ml.tasks import MULTI_LABEL, SINGLE_LABEL


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    assert psi([10, 20, 30], [20, 40, 60]) == pytest.approx(0.0, abs=1e-3)
    small = psi([50, 50], [55, 45])
    large = psi([50, 50], [90, 10])
    assert 0 < small < 0.05 < 0.25 < large


def test_psi_matches_the_textbook_formula_without_smoothing() -> None:
    e, a = np.array([0.2, 0.3, 0.5]), np.array([0.3, 0.3, 0.4])
    assert psi(e * 100, a * 100, smoothing=0.0) == pytest.approx(
        float(np.sum((a - e) * np.log(a / e))))


def test_chi2_p_value_matches_scipy_and_is_one_without_data() -> None:
    from scipy.stats import chi2_contingency

    a, b = [30, 10, 5], [10, 25, 12]
    assert chi2_p_value(a, b) == pytest.approx(chi2_contingency([a, b], correction=False)[1])
    assert chi2_p_value([5, 5], [0, 0]) == 1.0


def test_confidence_counts_put_one_in_the_last_bin() -> None:
    counts = confidence_counts([0.0, 0.04, 0.05, 0.999, 1.0])
    assert len(counts) == CONFIDENCE_BINS and sum(counts) == 5
    assert counts[0] == 2 and counts[1] == 1 and counts[-1] == 2


def test_merged_groups_cover_every_bin_with_enough_reference_mass() -> None:
    reference = [0, 0, 1, 3, 8, 2, 0, 9, 30, 40]
    groups = merged_groups(reference, min_count=5, max_groups=4)
    assert groups[0][0] == 0 and groups[-1][1] == len(reference)
    assert all(a == b for (_, a), (b, _) in zip(groups, groups[1:], strict=False))
    assert all(sum(reference[a:b]) >= 5 for a, b in groups)
    assert merged_groups([1, 1, 0], min_count=5) == [(0, 3)]


def _profile(rng: np.random.Generator, n: int, concentration: list[float]) -> dict:
    probs = rng.dirichlet(concentration, size=n)
    return profile_of(probs, ["a", "b", "c"])


def test_a_sample_from_the_holdouts_distribution_does_not_drift() -> None:
    rng = np.random.default_rng(0)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        holdout = _profile(rng, 60, [4, 1, 1])
        served = _profile(rng, 200, [4, 1, 1])
        drift = drift_between(holdout["confidence"], holdout["predicted"],
                              served["confidence"], served["predicted"], threshold=0.25)
        assert drift.judged and not drift.drifted, (seed, drift)


def test_a_shifted_sample_drifts_and_a_small_one_is_not_judged() -> None:
    rng = np.random.default_rng(1)
    holdout = _profile(rng, 60, [8, 1, 1])
    unsure = _profile(rng, 200, [1, 1, 1])  # the model hesitating between labels
    drift = drift_between(holdout["confidence"], holdout["predicted"],
                          unsure["confidence"], unsure["predicted"], threshold=0.25)
    assert drift.drifted and drift.score >= 0.25 and drift.confidence_p < 0.01
    few = _profile(rng, 10, [1, 1, 1])
    small = drift_between(holdout["confidence"], holdout["predicted"],
                          few["confidence"], few["predicted"], threshold=0.25)
    assert not small.judged and not small.drifted


def test_a_label_shift_alone_drifts() -> None:
    reference = confidence_counts([0.9] * 60)
    drift = drift_between(reference, {"a": 20, "b": 20, "c": 20},
                          confidence_counts([0.9] * 90), {"a": 85, "b": 3, "c": 2},
                          threshold=0.25)
    assert drift.confidence_psi == pytest.approx(0.0, abs=1e-9)
    assert drift.label_psi > 0.25 and drift.drifted


def test_macro_f1_matches_sklearn_on_the_labels_present() -> None:
    truth = np.array([0, 0, 1, 1, 2, 2, 0])
    pred = np.array([0, 1, 1, 1, 2, 0, 0])
    assert SINGLE_LABEL.macro_f1(truth, pred) == pytest.approx(
        skm.f1_score(truth, pred, average="macro"))
    # A group where label 2 never occurs is not charged for it.
    assert SINGLE_LABEL.macro_f1(np.array([0, 1]), np.array([0, 1])) == 1.0
    t = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    p = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    assert MULTI_LABEL.macro_f1(t, p) == pytest.approx(
        skm.f1_score(t, p, average="macro", zero_division=0))


def test_wilson_interval_matches_statsmodels_figures() -> None:
    low, high = wilson_interval(8, 10)
    # Wilson 95% for 8/10, as statsmodels' proportion_confint(8, 10, method="wilson").
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0


def test_the_group_a_model_handles_badly_is_flagged_and_small_ones_are_not() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=120)
    pred = truth.copy()
    source = np.array(["news"] * 60 + ["forum"] * 50 + ["tiny"] * 10)
    # The forum texts are a coin toss for the model; the tiny group is all wrong.
    forum = np.flatnonzero(source == "forum")
    pred[forum] = rng.integers(0, 3, size=len(forum))
    pred[source == "tiny"] = (truth[source == "tiny"] + 1) % 3
    language = [None] * 120
    result = group_metrics(truth, pred, {"source": source.tolist(), "language": language},
                           task=SINGLE_LABEL, margin=0.1)
    rows = {row["value"]: row for row in result["fields"]["source"]}
    assert rows["forum"]["flagged"] and not rows["news"]["flagged"]
    assert rows["news"]["macro_f1"] == 1.0 and rows["news"]["n"] == 60
    assert rows["forum"]["macro_f1_low"] <= rows["forum"]["macro_f1"] \
        <= rows["forum"]["macro_f1_high"] < result["overall_macro_f1"]
    assert rows["tiny"]["n"] == 10 >= GROUP_MIN_COUNT and rows["tiny"]["flagged"]
    assert result["fields"]["language"] == [
        {**result["fields"]["language"][0], "value": "(none)", "n": 120, "flagged": False}]


def test_a_group_under_the_minimum_count_is_listed_but_not_flagged() -> None:
    truth = np.array([0, 1, 2] * 10 + [0, 1])
    pred = truth.copy()
    pred[-2:] = [1, 0]
    values = ["big"] * 30 + ["small"] * 2
    rows = {r["value"]: r for r in group_metrics(truth, pred, {"f": values},
                                                  task=SINGLE_LABEL, margin=0.1
                                                  )["fields"]["f"]}
    assert rows["small"]["macro_f1"] == 0.0 and not rows["small"]["judged"]
    assert not rows["small"]["flagged"]


@pytest.mark.parametrize("cells", [monitoring.BOOTSTRAP_CELLS, 50])
def test_bootstrap_interval_is_the_percentiles_of_resampled_macro_f1(cells, monkeypatch):
    """Every resample scored as scikit-learn scores it alone, however the resamples are
    chunked (50 cells: a chunk per resample)."""
    monkeypatch.setattr(monitoring, "BOOTSTRAP_CELLS", cells)
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, 40)
    pred = np.where(rng.random(40) < 0.6, truth, rng.integers(0, 4, 40))
    low, high = monitoring.bootstrap_interval(truth, pred, task=SINGLE_LABEL, samples=200,
                                              seed=7)
    resamples = np.random.default_rng(7).integers(0, 40, size=(200, 40))
    reference = [skm.f1_score(truth[rows], pred[rows], average="macro", zero_division=0)
                 for rows in resamples]
    assert (low, high) == pytest.approx(tuple(np.percentile(reference, [2.5, 97.5])))
    assert low < skm.f1_score(truth, pred, average="macro") < high
