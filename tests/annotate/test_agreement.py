"""Agreement coefficients against hand-computed values and published examples."""

from __future__ import annotations

import pytest
from sklearn.metrics import cohen_kappa_score

from annotate import agreement

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four
# observers, twelve units, nominal data with missing values; alpha = 0.743.
K2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def test_krippendorff_alpha_reproduces_the_published_nominal_example() -> None:
    units = [list(unit) for unit in zip(*K2011, strict=True)]
    assert agreement.krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_two_coders_by_hand() -> None:
    # Units: (a, a), (a, b), (b, b), (b, b). Coincidences: o_aa = 2, o_ab = o_ba = 1,
    # o_bb = 4; n_a = 3, n_b = 5, n = 8. D_o = 2; D_e = (64 - 9 - 25) / 7 = 30 / 7.
    # alpha = 1 - 2 / (30 / 7) = 1 - 14 / 30 = 0.5333...
    units = [["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]]
    assert agreement.krippendorff_alpha_nominal(units) == pytest.approx(1 - 14 / 30)


def test_krippendorff_alpha_ignores_units_with_one_value_and_is_none_without_variation() -> None:
    assert agreement.krippendorff_alpha_nominal([["x", None], ["y"]]) is None
    assert agreement.krippendorff_alpha_nominal([["x", "x"], ["x", "x", "x"]]) is None
    assert agreement.krippendorff_alpha_nominal([["x", "x"], ["y", "y"]]) == pytest.approx(1.0)


def test_cohen_kappa_by_hand() -> None:
    # 10 units: agree on 7 (4 yes, 3 no). Coder a: 6 yes 4 no; coder b: 5 yes 5 no.
    # p_o = 0.7; p_e = 0.6 * 0.5 + 0.4 * 0.5 = 0.5; kappa = 0.2 / 0.5 = 0.4.
    a = ["y", "y", "y", "y", "y", "y", "n", "n", "n", "n"]
    b = ["y", "y", "y", "y", "n", "n", "n", "n", "n", "y"]
    assert agreement.cohen_kappa(a, b) == pytest.approx(0.4)


def test_cohen_kappa_matches_scikit_learn() -> None:
    a = [1, 2, 3, 1, 2, 3, 1, 1, 2, 3, 3, 2, 1]
    b = [1, 2, 3, 2, 2, 3, 1, 3, 2, 3, 1, 2, 1]
    assert agreement.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_cohen_kappa_skips_missing_and_is_none_when_undefined() -> None:
    assert agreement.cohen_kappa([1, None, 2], [1, 2, None]) is None  # one unit, one value
    assert agreement.cohen_kappa([], []) is None
    assert agreement.cohen_kappa([1, 2, None], [1, 2, 1]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        agreement.cohen_kappa([1], [1, 2])


def test_per_label_kappa_averages_the_per_label_binary_kappas() -> None:
    a = [{1}, {1, 2}, {2}, set()]
    b = [{1}, {1}, {2}, {2}]
    # Label 1: a = [T, T, F, F], b = [T, T, F, F] -> kappa 1.
    # Label 2: a = [F, T, T, F], b = [F, F, T, T] -> p_o = 0.5, p_e = 0.5 -> kappa 0.
    assert agreement.per_label_kappa(a, b, labels=[1, 2]) == pytest.approx(0.5)
    # A label neither coder ever used has no defined kappa and is left out of the mean.
    assert agreement.per_label_kappa(a, b, labels=[1, 2, 3]) == pytest.approx(0.5)
