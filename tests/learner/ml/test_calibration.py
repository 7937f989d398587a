from __future__ import annotations

import numpy as np
import pytest

from learner.ml.calibration import (
    ece_of,
    fit_temperature,
    nll,
    sigmoid,
    softmax,
)
from learner.ml.tasks import MULTI_LABEL, SINGLE_LABEL
from learner.ml.train import fit_linear_head


def _overconfident(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a 3-class model that is right 70% of the time but says 95%+."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    predicted = np.where(rng.random(n) < 0.7, y, (y + rng.integers(1, 3, n)) % 3)
    logits = rng.normal(0, 0.3, (n, 3))
    logits[np.arange(n), predicted] += 4.0
    return logits, y


def test_temperature_scaling_fixes_an_overconfident_model_without_changing_a_prediction(
) -> None:
    logits, y = _overconfident()
    temperature = fit_temperature(logits, y, task=SINGLE_LABEL)
    assert temperature > 1.5  # it has to flatten
    assert nll(logits / temperature, y, task=SINGLE_LABEL) < nll(logits, y, task=SINGLE_LABEL)
    assert ece_of(logits, y, task=SINGLE_LABEL) > 0.2
    assert ece_of(logits / temperature, y, task=SINGLE_LABEL) < 0.05
    np.testing.assert_array_equal((logits / temperature).argmax(1), logits.argmax(1))


def test_temperature_generalises_to_new_data_of_the_same_model() -> None:
    fit_logits, fit_y = _overconfident(seed=0)
    new_logits, new_y = _overconfident(seed=1)
    temperature = fit_temperature(fit_logits, fit_y, task=SINGLE_LABEL)
    assert ece_of(new_logits / temperature, new_y, task=SINGLE_LABEL) < 0.05


def test_an_underconfident_model_is_sharpened() -> None:
    logits, y = _overconfident()
    timid = logits / 8.0  # right 70% of the time, but says about 40%
    assert fit_temperature(timid, y, task=SINGLE_LABEL) < 1.0


def test_multi_label_temperature_uses_binary_cross_entropy() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((1000, 4)) < 0.3
    logits = np.where(truth, 6.0, -6.0) + rng.normal(0, 1, (1000, 4))
    flip = rng.random((1000, 4)) < 0.1
    Y = np.where(flip, ~truth, truth).astype(np.float64)  # 10% label noise: 6 is too sure
    temperature = fit_temperature(logits, Y, task=MULTI_LABEL)
    assert temperature > 1.2
    assert nll(logits / temperature, Y, task=MULTI_LABEL) < nll(logits, Y, task=MULTI_LABEL)


def test_nothing_to_fit_on_keeps_the_logits() -> None:
    assert fit_temperature(np.zeros((1, 3)), np.array([0]), task=SINGLE_LABEL) == 1.0
    assert fit_temperature(np.full((4, 2), np.nan), np.array([0, 1, 0, 1]),
                           task=SINGLE_LABEL) == 1.0


def test_activations_are_stable_at_extreme_logits() -> None:
    probs = softmax(np.array([[1000.0, 0.0, -1000.0]]))
    np.testing.assert_allclose(probs, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])
    assert np.isfinite(nll(np.array([[1000.0, -1000.0]]), np.array([1]), task=SINGLE_LABEL))


def test_the_linear_probe_picks_its_strength_by_cross_validation_and_returns_held_out_logits(
) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    y = rng.integers(0, 3, 240)
    X = centres[y] + rng.normal(0, 1.5, (240, 16))
    head = fit_linear_head(X, y, n_labels=3, labels=["a", "b", "c"], task=SINGLE_LABEL)
    assert len(head.cv) == 6  # every C of the grid was scored out of fold
    assert head.cv[str(head.C)] >= max(head.cv.values()) - 0.005
    assert head.oof_logits is not None and head.oof_logits.shape == (240, 3)
    # Out-of-fold logits are honest: less accurate than the refitted head on its own data.
    in_sample = (head.logits(X).argmax(1) == y).mean()
    assert (head.oof_logits.argmax(1) == y).mean() <= in_sample
    assert head.weight.shape == (3, 16) and head.bias.shape == (3,)


def test_the_probe_gives_unseen_classes_a_vanishing_probability() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0, 2] * 20)
    X = rng.normal(size=(40, 8)) + y[:, None]
    head = fit_linear_head(X, y, n_labels=3, labels=["a", "b", "c"], task=SINGLE_LABEL,
                           C=1.0, out_of_fold=False)
    probs = softmax(head.logits(X) / 5.0)  # even after a generous temperature
    assert probs[:, 1].max() < 1e-2


def test_binary_probe_logits_match_scikit_learns_probabilities() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 100)
    X = rng.normal(size=(100, 5)) + y[:, None]
    head = fit_linear_head(X, y, n_labels=2, labels=["a", "b"], task=SINGLE_LABEL, C=2.0,
                           out_of_fold=False, class_weighting=False)
    expected = LogisticRegression(C=2.0, max_iter=2000).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(softmax(head.logits(X)), expected, atol=1e-6)


@pytest.mark.parametrize("multi_label", [False, True])
def test_ece_is_zero_for_a_perfectly_calibrated_toy(multi_label: bool) -> None:
    if multi_label:
        Y = np.array([[1, 0], [0, 1]])
        assert ece_of(np.array([[50.0, -50.0], [-50.0, 50.0]]), Y, task=MULTI_LABEL) < 1e-9
    else:
        assert ece_of(np.array([[50.0, 0.0], [0.0, 50.0]]), np.array([0, 1]),
                      task=SINGLE_LABEL) < 1e-9


def test_a_validation_split_the_model_gets_all_right_does_not_make_it_certain() -> None:
    """23 easy validation texts, all right: plain NLL would push T towards 0 and every
    probability to 1.0 (the demo's first round fitted T = 0.03)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 23)
    logits = rng.normal(0, 0.5, (23, 5))
    logits[np.arange(23), y] += 3.0
    temperature = fit_temperature(logits, y, task=SINGLE_LABEL)
    top = softmax(logits / temperature).max(axis=1)
    assert temperature > 0.3
    assert top.mean() < 1 - 1 / (23 + 2) + 0.02  # about as sure as 23 examples allow
    # With hundreds of examples the smoothing is negligible: the overconfident model above
    # still gets its flattening temperature.
    many, many_y = _overconfident()
    plain = fit_temperature(many, many_y, task=SINGLE_LABEL)
    assert ece_of(many / plain, many_y, task=SINGLE_LABEL) < 0.05
