"""Metrics for a classifier's probabilities, and learning-curve bookkeeping.

Everything returned is plain JSON-able data (floats, ints, lists, dicts of them), so it
can be stored on a Round row or in ``labelwise.json`` as is. Precision, recall and F1 are
scikit-learn's (imported where used, so importing this module stays cheap); expected
calibration error, which scikit-learn lacks, is computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from learner.ml.tasks import Task

ECE_BINS = 15


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """Weighted mean |accuracy - confidence| over ``n_bins`` equal-width bins of (0, 1].

    ``confidence``: (n,) the probability of the predicted class; ``correct``: (n,) bool.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return 0.0
    # Right-closed bins, (lo, hi]; a confidence of exactly 0 goes into the first bin.
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        members = bins == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def evaluate(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    *,
    task: Task,
    thresholds: np.ndarray | Sequence[float] | float | None = None,
) -> dict[str, Any]:
    """Metrics of ``probs`` (n, k) against the truth ``y_true`` (the task's targets),
    decoded as the task decodes (``thresholds`` where it uses them).

    Keys: n, accuracy, macro_f1, micro_f1, weighted_f1, per_class {label: {precision,
    recall, f1, support}}, expected_calibration_error (15 bins), and confusion_matrix (k x
    k list, rows = true, columns = predicted) where the task has one. What accuracy and
    calibration mean per task: ``Task.counts``.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    probs = np.asarray(probs, dtype=np.float64)
    k = len(labels)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise ValueError(f"probs must be (n, {k}), got {probs.shape}")
    n = len(probs)
    # Both tasks as (n, k) indicator matrices: scikit-learn scores the labels of a
    # single-label task one-hot exactly as it scores the class indices.
    truth = task.indicator(y_true, k)
    pred = task.indicator(task.decode(probs, thresholds), k)
    if n and k:
        precision, recall, f1, support = precision_recall_fscore_support(
            truth, pred, average=None, zero_division=0)
        micro_f1 = precision_recall_fscore_support(
            truth, pred, average="micro", zero_division=0)[2]
    else:
        precision = recall = f1 = np.zeros(k)
        support = np.zeros(k, dtype=np.int64)
        micro_f1 = 0.0
    total_support = support.sum()
    result: dict[str, Any] = {
        "n": int(n),
        "accuracy": float(accuracy_score(truth, pred)) if n else 0.0,
        "macro_f1": float(f1.mean()) if k else 0.0,
        "micro_f1": float(micro_f1),
        "weighted_f1": float((f1 * support).sum() / total_support) if total_support else 0.0,
        "per_class": {
            label: {
                "precision": float(precision[j]),
                "recall": float(recall[j]),
                "f1": float(f1[j]),
                "support": int(support[j]),
            }
            for j, label in enumerate(labels)
        },
        "expected_calibration_error": task.ece(probs, np.asarray(y_true), thresholds)
        if n else 0.0,
    }
    confusion = task.confusion(y_true, probs, thresholds)
    if confusion is not None:
        result["confusion_matrix"] = confusion
    return result


def present_macro_f1(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Macro-F1 of each of ``s`` stacked samples, ``truth`` and ``pred`` (n, s, k)
    indicator arrays, over the labels present in that sample's truth or predictions
    (scikit-learn's default label set, so a group of documents without some label is not
    charged for it); (s,). One scikit-learn call scores every sample's labels side by side
    as columns, since a call per sample costs milliseconds and a bootstrap makes a
    thousand."""
    from sklearn.metrics import precision_recall_fscore_support

    n, s, k = truth.shape
    if n == 0 or k == 0:
        return np.zeros(s)
    columns = truth.reshape(n, s * k), pred.reshape(n, s * k)
    f1 = precision_recall_fscore_support(*columns, average=None, zero_division=0)[2]
    present = (columns[0].sum(axis=0) + columns[1].sum(axis=0)).reshape(s, k) > 0
    return np.where(present, f1.reshape(s, k), 0.0).sum(axis=1) / np.maximum(
        present.sum(axis=1), 1)


def area_under_curve(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Trapezoid area under a learning curve divided by its x-range (a mean y).

    ``xs`` (e.g. number of labels) need not be sorted; a single point gives its y.
    Comparable across runs only when they cover the same x-range.
    """
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("xs and ys must be non-empty and of equal length")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    span = x[-1] - x[0]
    if span == 0:
        return float(y.mean())
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / span)


def labels_to_reach(xs: Sequence[float], ys: Sequence[float], target: float) -> float | None:
    """The smallest x whose y is >= ``target`` (points taken in x order), else None."""
    for x, y in sorted(zip(xs, ys, strict=True)):
        if y >= target:
            return x
    return None
