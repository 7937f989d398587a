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

import numpy as np

from learner.ml.evaluate import expected_calibration_error

# log T is searched in this range: T from 1/50 (sharpen a lot) to 50 (flatten a lot).
_LOG_T_BOUNDS = (-np.log(50.0), np.log(50.0))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(_log_softmax(np.asarray(logits, dtype=np.float64)))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free


def nll(logits: np.ndarray, y: np.ndarray, *, multi_label: bool) -> float:
    """Mean negative log-likelihood of the truth: (n, k) logits, (n,) class indices or an
    (n, k) 0/1 matrix for multi-label (mean binary cross-entropy over every cell)."""
    z = np.asarray(logits, dtype=np.float64)
    if multi_label:
        t = np.asarray(y, dtype=np.float64)
        # log(1 + e^-|z|) + max(z, 0) - t z: stable binary cross-entropy with logits.
        return float(np.mean(np.logaddexp(0.0, z) - t * z))
    idx = np.asarray(y, dtype=np.int64)
    return float(-_log_softmax(z)[np.arange(len(z)), idx].mean())


def _soft_nll(logits: np.ndarray, y: np.ndarray, *, multi_label: bool, eps: float) -> float:
    """The NLL against targets that keep ``eps`` of their mass off the truth: spread over
    the other labels (single-label), or as a 1 - eps / eps pair per cell (multi-label)."""
    if multi_label:
        t = np.asarray(y, dtype=np.float64) * (1 - 2 * eps) + eps
        return float(np.mean(np.logaddexp(0.0, logits) - t * logits))
    n, k = logits.shape
    q = np.full((n, k), eps / max(k - 1, 1))
    q[np.arange(n), np.asarray(y, dtype=np.int64)] = 1 - eps
    return float(-(q * _log_softmax(logits)).sum(axis=1).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray, *, multi_label: bool = False
                    ) -> float:
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
        lambda log_t: _soft_nll(z / np.exp(log_t), y, multi_label=multi_label, eps=eps),
        bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4},
    )
    return float(np.exp(result.x)) if result.success else 1.0


def match_temperature(logits: np.ndarray, target_probs: np.ndarray, *,
                      multi_label: bool = False) -> float:
    """The temperature ``T > 0`` whose ``logits / T`` best match ``target_probs`` (n, k)
    by cross-entropy: softmax rows, or per-label sigmoids for multi-label. A student
    model is calibrated this way against its teacher's calibrated probabilities on
    texts neither has labels for. 1.0 when there is nothing to fit on."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    q = np.asarray(target_probs, dtype=np.float64)
    if len(z) < 2 or not np.isfinite(z).all():
        return 1.0

    def loss(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        if multi_label:
            return float(np.mean(np.logaddexp(0.0, scaled) - q * scaled))
        return float(-(q * _log_softmax(scaled)).sum(axis=1).mean())

    result = minimize_scalar(loss, bounds=_LOG_T_BOUNDS, method="bounded",
                             options={"xatol": 1e-4})
    return float(np.exp(result.x)) if result.success else 1.0


def activate(logits: np.ndarray, *, multi_label: bool) -> np.ndarray:
    return sigmoid(logits) if multi_label else softmax(logits)


def ece_of(logits: np.ndarray, y: np.ndarray, *, multi_label: bool,
           thresholds: np.ndarray | float = 0.5) -> float:
    """Expected calibration error (15 bins) of the probabilities these logits give:
    top-class confidence for single-label, every (text, label) cell for multi-label."""
    probs = activate(logits, multi_label=multi_label)
    if len(probs) == 0:
        return 0.0
    if multi_label:
        truth = np.asarray(y) > 0.5
        pred = probs >= thresholds
        confidence = np.where(pred, probs, 1 - probs).ravel()
        return expected_calibration_error(confidence, (pred == truth).ravel())
    idx = np.asarray(y, dtype=np.int64)
    return expected_calibration_error(probs.max(axis=1), probs.argmax(axis=1) == idx)


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
