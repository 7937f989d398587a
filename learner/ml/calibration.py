"""Calibrated probabilities: temperature scaling, and per-label thresholds for multi-label.

A classifier fitted on a few hundred labels is rarely calibrated: a fine-tuned encoder is
often over-confident, a regularised linear head on normalised sentence vectors badly
under-confident (right nine times in ten at a top probability near 0.3). Temperature
scaling (Guo et al., ICML 2017) divides the logits by one scalar ``T`` fitted by
likelihood on data the model did not train on (the validation split, or cross-validated
out-of-fold logits): it changes no prediction, only how sure they read. Multi-label
projects get the same temperature on the sigmoid logits, then a decision threshold per
label tuned for that label's F1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from learner.ml.tasks import Task

# log T is searched in this range: T from 1/50 (sharpen a lot) to 50 (flatten a lot).
_LOG_T_BOUNDS = (-np.log(50.0), np.log(50.0))


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64)))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free


def nll(logits: np.ndarray, y: np.ndarray, *, task: Task) -> float:
    """Mean negative log-likelihood of the truth ``y`` (the task's targets) under (n, k)
    logits."""
    return task.nll(logits, y)


def fit_temperature(logits: np.ndarray, y: np.ndarray, *, task: Task) -> float:
    """The temperature ``T > 0`` that minimises the NLL of ``logits / T``; 1.0 when there
    is nothing to fit on. A bounded 1-D search over ``log T`` (the NLL is smooth and
    unimodal in it).

    The targets keep 1 / (n + 2) of their mass off the truth (Laplace's rule of
    succession): n held-out examples cannot show a model to be surer than that. Without
    it a validation split the model gets entirely right (a few dozen easy texts) drives
    T towards 0 and every probability to 1.0; with hundreds of examples it changes
    nothing that matters."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    if len(z) < 2 or not np.isfinite(z).all():
        return 1.0
    eps = 1.0 / (len(z) + 2)
    result = minimize_scalar(
        lambda log_t: task.nll(z / np.exp(log_t), y, eps=eps),
        bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4},
    )
    return float(np.exp(result.x)) if result.success else 1.0


def match_temperature(logits: np.ndarray, target_probs: np.ndarray, *, task: Task) -> float:
    """The temperature ``T > 0`` whose ``logits / T`` best match ``target_probs`` (n, k)
    by the task's cross-entropy. A student model is calibrated this way against its
    teacher's calibrated probabilities on texts neither has labels for. 1.0 when there
    is nothing to fit on."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    q = np.asarray(target_probs, dtype=np.float64)
    if len(z) < 2 or not np.isfinite(z).all():
        return 1.0
    result = minimize_scalar(lambda log_t: task.cross_entropy(z / np.exp(log_t), q),
                             bounds=_LOG_T_BOUNDS, method="bounded",
                             options={"xatol": 1e-4})
    return float(np.exp(result.x)) if result.success else 1.0


def ece_of(logits: np.ndarray, y: np.ndarray, *, task: Task,
           thresholds: np.ndarray | float = 0.5) -> float:
    """Expected calibration error (15 bins) of the probabilities these logits give, as the
    task measures it (``Task.ece``)."""
    return task.ece(task.activate(logits), y, thresholds)


def tune_thresholds(
    Y: np.ndarray, probs: np.ndarray, grid: np.ndarray | None = None
) -> np.ndarray:
    """Per-label decision threshold maximising that label's F1 on (Y, probs), (k,).

    Ties go to the threshold nearest 0.5; labels without a positive example keep 0.5.
    """
    grid = np.linspace(0.05, 0.95, 19) if grid is None else grid
    thresholds = np.full(Y.shape[1], 0.5)
    for j in range(Y.shape[1]):
        truth = Y[:, j] > 0.5
        if not truth.any():
            continue
        pred = probs[:, j][None, :] >= grid[:, None]  # (g, n)
        tp = (pred & truth).sum(axis=1)
        f1 = 2 * tp / np.maximum(pred.sum(axis=1) + truth.sum(), 1)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        thresholds[j] = grid[best[np.argmin(np.abs(grid[best] - 0.5))]]
    return thresholds
