from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from learner.ml.evaluate import (
    area_under_curve,
    evaluate,
    expected_calibration_error,
    labels_to_reach,
)
from learner.ml.tasks import MULTI_LABEL, SINGLE_LABEL

LABELS = ["a", "b", "c"]


def _probs_for(pred: list[int], k: int = 3, confidence: float = 0.7) -> np.ndarray:
    probs = np.full((len(pred), k), (1 - confidence) / (k - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_single_label_metrics_match_sklearn() -> None:
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2, 1]
    y_pred = [0, 1, 0, 1, 2, 2, 2, 0, 2, 1]
    result = evaluate(y_true, _probs_for(y_pred), LABELS, task=SINGLE_LABEL)

    assert result["n"] == 10
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert result["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert result["micro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="micro"))
    assert result["weighted_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, average="weighted")
    )
    assert result["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    for j, label in enumerate(LABELS):
        assert result["per_class"][label] == pytest.approx(
            {"precision": p[j], "recall": r[j], "f1": f[j], "support": s[j]}
        )


def test_class_never_predicted_gets_zero_precision_not_nan() -> None:
    y_true = [0, 1, 2, 2]
    y_pred = [0, 1, 1, 1]
    result = evaluate(y_true, _probs_for(y_pred), LABELS, task=SINGLE_LABEL)
    assert result["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert result["macro_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )


def test_result_is_plain_json() -> None:
    result = evaluate([0, 1], _probs_for([0, 0]), LABELS, task=SINGLE_LABEL)
    assert json.loads(json.dumps(result)) == result


def test_multi_label_metrics_match_sklearn_with_thresholds() -> None:
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    probs = np.array([
        [0.9, 0.2, 0.6], [0.3, 0.7, 0.4], [0.6, 0.4, 0.1], [0.1, 0.1, 0.35], [0.45, 0.5, 0.2],
    ])
    thresholds = np.array([0.5, 0.45, 0.3])
    y_pred = (probs >= thresholds).astype(int)
    result = evaluate(y_true, probs, LABELS, task=MULTI_LABEL, thresholds=thresholds)

    assert "confusion_matrix" not in result
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))  # subset
    assert result["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert result["micro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="micro"))
    assert result["per_class"]["b"]["support"] == 2


def test_ece_of_a_perfectly_calibrated_model_is_zero() -> None:
    # In each confidence level, exactly that fraction of predictions is right.
    confidence, correct = [], []
    for level, n_right in [(0.6, 6), (0.8, 8), (1.0, 10)]:
        confidence += [level] * 10
        correct += [True] * n_right + [False] * (10 - n_right)
    assert expected_calibration_error(np.array(confidence), np.array(correct)) == pytest.approx(
        0.0, abs=1e-12
    )


def test_ece_of_an_overconfident_model() -> None:
    # Always 0.9 sure, right half the time: the gap is 0.4 everywhere.
    ece = expected_calibration_error(np.full(100, 0.9), np.arange(100) % 2 == 0)
    assert ece == pytest.approx(0.4)


def test_evaluate_reports_ece_on_max_probability() -> None:
    probs = np.array([[0.75, 0.25], [0.75, 0.25], [0.75, 0.25], [0.25, 0.75]])
    result = evaluate([0, 0, 1, 1], probs, ["x", "y"], task=SINGLE_LABEL)
    assert result["expected_calibration_error"] == pytest.approx(0.0)  # 3/4 right at 0.75


def test_area_under_curve_is_a_normalised_trapezoid() -> None:
    assert area_under_curve([0, 10], [0.5, 0.5]) == pytest.approx(0.5)
    assert area_under_curve([100, 0, 50], [1.0, 0.0, 0.5]) == pytest.approx(0.5)  # unsorted
    assert area_under_curve([10, 20, 40], [0.2, 0.6, 0.6]) == pytest.approx(
        (10 * 0.4 + 20 * 0.6) / 30
    )
    assert area_under_curve([5], [0.7]) == pytest.approx(0.7)


def test_labels_to_reach_finds_the_first_x_at_target() -> None:
    xs, ys = [50, 100, 150, 200], [0.5, 0.7, 0.69, 0.8]
    assert labels_to_reach(xs, ys, 0.7) == 100
    assert labels_to_reach(xs, ys, 0.75) == 200
    assert labels_to_reach(xs, ys, 0.9) is None
