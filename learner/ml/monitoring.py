"""Drift between a model's holdout and what it is asked in production, and the model's
quality per metadata group: plain NumPy/SciPy over counts and arrays (no Django), so the
worker, the dashboard and notebooks compute the same figures.

Drift compares two profiles of the same round's model, each a histogram of the top
label's probability over ``CONFIDENCE_BINS`` equal bins of [0, 1] and a count per
predicted (top) label: the holdout's, stored on the round, and a day of predictions
served by it. Each of the two is scored by the population stability index (PSI) and a
chi-square two-sample test of the same table; one drifts when its PSI reaches the
threshold *and* the test says the difference is not noise (p < ``DRIFT_ALPHA``), so a
few dozen texts against a small holdout cannot raise the flag by chance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from learner.ml.evaluate import present_macro_f1

if TYPE_CHECKING:
    from learner.ml.tasks import Task

CONFIDENCE_BINS = 20
# Production predictions a day needs before it is judged at all.
DRIFT_MIN_TEXTS = 30
# The two-sample test's level: a PSI over the threshold with p above this is noise.
DRIFT_ALPHA = 0.01
# Confidence bins are merged until each holds this many holdout texts (a chi-square test
# needs expected counts of about five), into at most MAX_GROUPS groups.
MIN_BIN_COUNT = 5
MAX_GROUPS = 10
# Half a count added to every cell, so that an empty bin does not make the PSI infinite.
SMOOTHING = 0.5


def confidence_counts(confidence: Sequence[float] | np.ndarray,
                      bins: int = CONFIDENCE_BINS) -> list[int]:
    """Counts of `confidence` (top-label probabilities) in `bins` equal bins of [0, 1];
    1.0 falls into the last bin (as the database's FLOOR(confidence * bins) is read)."""
    values = np.asarray(confidence, dtype=np.float64)
    index = np.clip(np.floor(values * bins).astype(np.int64), 0, bins - 1)
    return np.bincount(index, minlength=bins).astype(int).tolist()


def psi(expected: Sequence[float], actual: Sequence[float],
        smoothing: float = SMOOTHING) -> float:
    """Population stability index of `actual` against `expected` (two count vectors over
    the same bins): sum of (a - e) * ln(a / e) over the bins' shares. 0 for identical
    shares; 0.1 is a small shift, 0.25 a large one (the usual reading)."""
    e = np.asarray(expected, dtype=np.float64) + smoothing
    a = np.asarray(actual, dtype=np.float64) + smoothing
    if len(e) != len(a):
        raise ValueError("expected and actual need the same bins")
    if len(e) < 2:
        return 0.0
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def chi2_p_value(expected: Sequence[float], actual: Sequence[float]) -> float:
    """p-value of a chi-square test that two samples (count vectors over the same bins)
    come from one distribution; 1.0 when there is nothing to compare."""
    from scipy.stats import chi2

    table = np.asarray([expected, actual], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    rows, cols = table.sum(axis=1, keepdims=True), table.sum(axis=0, keepdims=True)
    fitted = rows * cols / table.sum()
    statistic = float(((table - fitted) ** 2 / fitted).sum())
    return float(chi2.sf(statistic, table.shape[1] - 1))


def merged_groups(reference: Sequence[int], *, min_count: int = MIN_BIN_COUNT,
                  max_groups: int = MAX_GROUPS) -> list[tuple[int, int]]:
    """Contiguous runs [start, end) of bins, each with at least about total/max_groups and
    at least `min_count` reference counts (roughly equal-frequency groups); the leftover
    at the top joins the last run. One run when the reference is too small to split."""
    counts = [int(c) for c in reference]
    total = sum(counts)
    target = max(min_count, math.ceil(total / max_groups))
    groups: list[tuple[int, int]] = []
    start, held = 0, 0
    for i, count in enumerate(counts):
        held += count
        if held >= target:
            groups.append((start, i + 1))
            start, held = i + 1, 0
    if start < len(counts):
        if groups:
            groups[-1] = (groups[-1][0], len(counts))
        else:
            groups.append((0, len(counts)))
    return groups


def _merge(counts: Sequence[int], groups: Sequence[tuple[int, int]]) -> list[int]:
    return [int(sum(counts[a:b])) for a, b in groups]


@dataclass(frozen=True)
class Drift:
    """One comparison of production predictions with the holdout's."""

    n: int  # production predictions compared
    n_reference: int  # holdout texts
    score: float  # the larger of the two PSIs
    confidence_psi: float
    confidence_p: float
    label_psi: float
    label_p: float
    threshold: float
    judged: bool  # enough predictions (DRIFT_MIN_TEXTS) and a holdout profile to judge
    drifted: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift_between(
    reference_confidence: Sequence[int], reference_labels: Mapping[str, int],
    confidence: Sequence[int], labels: Mapping[str, int], *,
    threshold: float, min_texts: int = DRIFT_MIN_TEXTS, alpha: float = DRIFT_ALPHA,
) -> Drift:
    """Drift of production (`confidence` counts per bin, `labels` counts per predicted
    label) from the holdout's profile (the same for the holdout). The confidence bins are
    merged by the holdout's mass (merged_groups) before both the PSI and the test."""
    n_ref, n = int(sum(reference_confidence)), int(sum(confidence))
    groups = merged_groups(reference_confidence)
    ref_c, prod_c = _merge(reference_confidence, groups), _merge(confidence, groups)
    names = sorted(set(reference_labels) | set(labels))
    ref_l = [int(reference_labels.get(name, 0)) for name in names]
    prod_l = [int(labels.get(name, 0)) for name in names]
    c_psi, l_psi = (psi(ref_c, prod_c), psi(ref_l, prod_l)) if n and n_ref else (0.0, 0.0)
    c_p, l_p = (chi2_p_value(ref_c, prod_c), chi2_p_value(ref_l, prod_l)) if n and n_ref \
        else (1.0, 1.0)
    judged = n >= min_texts and n_ref > 0
    drifted = judged and ((c_psi >= threshold and c_p < alpha)
                          or (l_psi >= threshold and l_p < alpha))
    return Drift(n=n, n_reference=n_ref, score=round(max(c_psi, l_psi), 4),
                 confidence_psi=round(c_psi, 4), confidence_p=float(f"{c_p:.3g}"),
                 label_psi=round(l_psi, 4), label_p=float(f"{l_p:.3g}"),
                 threshold=threshold, judged=judged, drifted=drifted)


def top_label(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of an (n, k) probability matrix: the top label's index and probability
    (multi-label rows too: the most probable label, whatever the thresholds)."""
    probs = np.asarray(probs, dtype=np.float64)
    index = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    return index, probs[np.arange(len(probs)), index] if len(probs) else np.zeros(0)


def profile_of(probs: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """The profile drift compares with: the confidence histogram and the count per
    predicted (top) label of an (n, k) probability matrix; JSON-able, stored on a round."""
    index, confidence = top_label(probs)
    predicted = {name: 0 for name in labels}
    for j in index.tolist():
        predicted[labels[j]] += 1
    return {"n": int(len(index)), "bins": CONFIDENCE_BINS,
            "confidence": confidence_counts(confidence), "predicted": predicted}


# --- groups --------------------------------------------------------------------------------

# Holdout documents a group value needs before it can be flagged (fewer are listed only).
GROUP_MIN_COUNT = 5
# Values per field that get their own row; the rest are pooled as OTHER.
GROUP_MAX_VALUES = 20
OTHER = "(other)"
MISSING = "(none)"
BOOTSTRAP_SAMPLES = 1000
# Indicator cells one scoring call of the bootstrap holds (int8: this many bytes, twice).
BOOTSTRAP_CELLS = 4_000_000


def bootstrap_interval(truth: np.ndarray, pred: np.ndarray, *, task: Task,
                       samples: int = BOOTSTRAP_SAMPLES, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the task's macro-F1 (``Task.macro_f1``; documents
    resampled with replacement)."""
    n = len(truth)
    if n == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    k = task.label_count(truth, pred)
    truth, pred = task.indicator(truth, k), task.indicator(pred, k)
    resamples = rng.integers(0, n, size=(samples, n))
    # Scored a chunk of resamples at a time: (n, chunk, k) indicator cells, bounded.
    chunk = max(1, BOOTSTRAP_CELLS // max(n * k, 1))
    values = np.concatenate([
        present_macro_f1(truth[rows].transpose(1, 0, 2), pred[rows].transpose(1, 0, 2))
        for rows in np.array_split(resamples, range(chunk, samples, chunk))])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (accuracy): sound at small n and at 0 or 1."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - level) / 2))
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _value_name(value: Any) -> str:
    if value is None or value == "":
        return MISSING
    return value if isinstance(value, str) else str(value)


def group_metrics(
    truth: np.ndarray, pred: np.ndarray, values: Mapping[str, Sequence[Any]], *,
    task: Task, margin: float, seed: int = 0,
) -> dict[str, Any]:
    """Holdout quality per metadata group: for each field in `values` (one value per
    holdout document, None where the document lacks the field) and each of its values,
    the count, macro-F1 with a 95% bootstrap interval, accuracy with its Wilson interval,
    and whether the group is flagged: macro-F1 more than `margin` below the whole
    holdout's, with at least GROUP_MIN_COUNT documents. JSON-able.

    truth, pred: the task's targets and decoded predictions (``Task.decode``)."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    overall = task.macro_f1(truth, pred)
    correct = task.exact(truth, pred)
    fields: dict[str, list[dict[str, Any]]] = {}
    for field, raw in values.items():
        names = np.asarray([_value_name(v) for v in raw], dtype=object)
        unique, counts = np.unique(names, return_counts=True)
        order = sorted(zip(counts.tolist(), unique.tolist(), strict=True),
                       key=lambda c: (-c[0], c[1]))
        kept = {name for _, name in order[:GROUP_MAX_VALUES]}
        if len(order) > GROUP_MAX_VALUES:
            names = np.asarray([n if n in kept else OTHER for n in names], dtype=object)
            rest = sum(c for c, _ in order[GROUP_MAX_VALUES:])
            order = [*order[:GROUP_MAX_VALUES], (rest, OTHER)]
        rows = []
        for count, name in order:
            members = names == name
            f1 = task.macro_f1(truth[members], pred[members])
            low, high = bootstrap_interval(truth[members], pred[members], task=task,
                                           seed=seed)
            hits = int(correct[members].sum())
            acc_low, acc_high = wilson_interval(hits, int(count))
            judged = count >= GROUP_MIN_COUNT
            rows.append({
                "value": name, "n": int(count), "macro_f1": round(f1, 4),
                "macro_f1_low": round(low, 4), "macro_f1_high": round(high, 4),
                "accuracy": round(hits / count, 4), "accuracy_low": round(acc_low, 4),
                "accuracy_high": round(acc_high, 4), "judged": judged,
                "flagged": bool(judged and f1 < overall - margin),
            })
        fields[field] = rows
    return {"overall_macro_f1": round(overall, 4), "margin": margin, "n": int(len(truth)),
            "min_count": GROUP_MIN_COUNT, "fields": fields}
