from __future__ import annotations

import pytest

from learner.ml.progress import STEP_COST_IN_FORWARDS, Phase, RoundEta


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_estimate_uses_the_measured_forward_rate_for_every_phase_still_to_run() -> None:
    clock = Clock()
    eta = RoundEta([Phase("features", 200), Phase("train", 100, per_unit_texts=16,
                                                   backward=True),
                    Phase("evaluating", 400), Phase("scoring", 2000)], clock=clock)
    assert eta.seconds_left() is None  # nothing timed yet
    eta.report("features", 0, 4)
    clock.now = 10.0
    eta.report("features", 2, 4)  # 2 of 4 batches of 50 texts in 10 s: 10 texts/s
    step_s = STEP_COST_IN_FORWARDS * 16 / 10.0
    expected = 10.0 + 100 * step_s + 400 / 10 + 2000 / 10
    assert eta.seconds_left() == pytest.approx(expected)

    # Training steps, once timed, use their own rate; the fit's plan replaces the guess.
    eta.report("train", 0, 80)
    clock.now = 20.0
    eta.report("train", 20, 80)  # 2 steps/s
    assert eta.seconds_left() == pytest.approx(60 / 2.0 + 400 / 10 + 2000 / 10)


def test_unplanned_phases_leave_the_estimate_alone_and_it_falls_as_work_is_done() -> None:
    clock = Clock()
    eta = RoundEta([Phase("scoring", 1000)], clock=clock)
    eta.report("scoring", 0, 1000)
    clock.now = 5.0
    eta.report("scoring", 100, 1000)
    first = eta.seconds_left()
    eta.report("validate", 1, 3)
    assert eta.seconds_left() == first
    clock.now = 10.0
    eta.report("scoring", 300, 1000)
    later = eta.seconds_left()
    assert first is not None and later is not None and later < first
    assert later == pytest.approx(700 / 30)
