"""Inter-annotator agreement: Cohen's kappa for a pair, Krippendorff's alpha for any number.

Plain functions over lists and counters, no Django, so the numbers can be checked by hand.
The selector that feeds them (learner.selectors.agreement) streams annotations one
document at a time and accumulates the tables below, so memory does not grow with the
number of documents.

Values are any hashable category (a Label id, a bool); None means "this coder gave no
value for this unit" and is ignored.

Multi-label projects: each label is treated as its own binary question ("does the
document have label L?"), kappa and alpha are computed per label and averaged over the
labels where they are defined (macro average). This keeps the scale of single-label
kappa/alpha, and a rare label counts as much as a frequent one; a Jaccard overlap would
not correct for chance agreement, which is the point of these coefficients.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence

Table = Counter  # Counter[(value_a, value_b)] -> count


def contingency(a: Sequence[Hashable | None], b: Sequence[Hashable | None]) -> Table:
    """The pair's agreement table over the units both coded: (value_a, value_b) -> count."""
    if len(a) != len(b):
        raise ValueError("both coders' lists must have one entry per unit")
    return Counter((x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None)


def kappa_from_table(table: Mapping[tuple[Hashable, Hashable], int]) -> float | None:
    """Cohen's kappa, (p_o - p_e) / (1 - p_e), from a contingency table.

    None when undefined: no units, or chance agreement is 1 (both coders used one and the
    same value everywhere, so agreement says nothing about reliability).
    """
    n = sum(table.values())
    if n == 0:
        return None
    observed = sum(count for (x, y), count in table.items() if x == y) / n
    row: Counter = Counter()
    col: Counter = Counter()
    for (x, y), count in table.items():
        row[x] += count
        col[y] += count
    expected = sum(row[v] * col[v] for v in row) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def cohen_kappa(a: Sequence[Hashable | None], b: Sequence[Hashable | None]) -> float | None:
    """Cohen's kappa of two coders; `a[i]` and `b[i]` are their values for unit i."""
    return kappa_from_table(contingency(a, b))


def coincidences_add(matrix: Counter, values: Iterable[Hashable | None]) -> None:
    """Adds one unit's values to a coincidence matrix (Krippendorff's o_ck).

    A unit with m values contributes every ordered pair of values from different coders,
    each weighted 1 / (m - 1); units with fewer than two values are not pairable and add
    nothing.
    """
    present = [v for v in values if v is not None]
    m = len(present)
    if m < 2:
        return
    counts = Counter(present)
    for c, n_c in counts.items():
        for k, n_k in counts.items():
            pairs = n_c * (n_k - 1) if c == k else n_c * n_k
            if pairs:
                matrix[(c, k)] += pairs / (m - 1)


def alpha_from_coincidences(matrix: Mapping[tuple[Hashable, Hashable], float]) -> float | None:
    """Krippendorff's alpha for nominal data, 1 - D_o / D_e, from a coincidence matrix.

    None when undefined: fewer than two pairable values, or a single value used
    throughout (no expected disagreement).
    """
    marginals: Counter = Counter()
    for (c, _k), weight in matrix.items():
        marginals[c] += weight
    n = sum(marginals.values())
    if n <= 1:
        return None
    observed = sum(w for (c, k), w in matrix.items() if c != k)
    expected = (n * n - sum(n_c * n_c for n_c in marginals.values())) / (n - 1)
    if expected <= 0:
        return None
    return 1.0 - observed / expected


def krippendorff_alpha_nominal(units: Iterable[Sequence[Hashable | None]]) -> float | None:
    """Krippendorff's alpha (nominal) over units; each unit is the list of its coders'
    values (None = missing). Any number of coders, missing values allowed."""
    matrix: Counter = Counter()
    for values in units:
        coincidences_add(matrix, values)
    return alpha_from_coincidences(matrix)


def binary_values(labelsets: Sequence[Iterable[Hashable] | None], label: Hashable) -> list:
    """One label's yes/no question over multi-label answers (None stays missing)."""
    return [None if s is None else label in set(s) for s in labelsets]


def mean_defined(values: Iterable[float | None]) -> float | None:
    """The mean of the values that are not None; None if there are none."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def per_label_kappa(
    a: Sequence[Iterable[Hashable] | None],
    b: Sequence[Iterable[Hashable] | None],
    labels: Sequence[Hashable],
) -> float | None:
    """Per-label binary kappa of two coders' label sets, averaged over the labels."""
    return mean_defined(
        cohen_kappa(binary_values(a, label), binary_values(b, label)) for label in labels
    )
