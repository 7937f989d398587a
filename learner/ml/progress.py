"""A round's remaining time, from the measured rates of the phases still to run.

A round runs phases of known size: the labelled texts' forward pass ("features"), the
fine-tuning steps ("train"), the holdout's forward pass ("evaluating"), the pool's
("scoring"). The rate of a forward pass is measured in the first phase and reused for the
later ones; a training step is estimated at three forward passes of its batch until steps
have been timed. The estimate after every report is the current phase's remainder at its
own measured rate plus every later phase at the rate expected for it, so it falls as the
round advances instead of jumping from phase to phase.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# A training step (forward, backward, optimizer) against a forward pass of its batch.
STEP_COST_IN_FORWARDS = 3.0


@dataclass
class Phase:
    name: str
    units: int  # texts for forward passes, optimizer steps for training
    per_unit_texts: int = 1  # texts one unit processes (a step: the batch size)
    backward: bool = False


@dataclass
class RoundEta:
    """Feed it every progress report; ``seconds_left()`` is the estimate."""

    phases: list[Phase]
    clock: Callable[[], float] = time.perf_counter
    _forward_rate: float | None = field(default=None, init=False)  # texts per second
    _step_rate: float | None = field(default=None, init=False)  # steps per second
    _current: str | None = field(default=None, init=False)
    _started: float = field(default=0.0, init=False)
    _done: int = field(default=0, init=False)
    _total: int = field(default=0, init=False)

    def report(self, phase: str, step: int, total: int) -> None:
        """``step`` of ``total`` done in ``phase`` (its own units: batches, steps or
        texts). Phases not in the plan (a validation pass, a few seconds of fitting the
        probe) leave the estimate as it was."""
        known = self._phase(phase)
        if known is None:
            return
        now = self.clock()
        if phase != self._current:
            self._current, self._started = phase, now
        self._done, self._total = step, total
        if known.backward and total:
            known.units = total  # the fit's own plan replaces the caller's guess
        elapsed = now - self._started
        if step > 0 and elapsed > 0:
            if known.backward:
                self._step_rate = step / elapsed
            else:
                texts_per_report_unit = known.units / total if total else 1.0
                self._forward_rate = step * texts_per_report_unit / elapsed

    def seconds_left(self) -> float | None:
        """None until a forward pass has been timed."""
        if self._forward_rate is None:
            return None
        names = [p.name for p in self.phases]
        here = names.index(self._current) if self._current in names else -1
        left = 0.0
        for i, phase in enumerate(self.phases):
            if i < here:
                continue
            fraction = 1.0
            if i == here and self._total:
                fraction = max(0.0, 1.0 - self._done / self._total)
            left += fraction * self._seconds(phase)
        return left

    def _phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    def _seconds(self, phase: Phase) -> float:
        assert self._forward_rate is not None
        if phase.backward:
            rate = self._step_rate or self._forward_rate / (
                STEP_COST_IN_FORWARDS * phase.per_unit_texts)
            return phase.units / rate
        return phase.units * phase.per_unit_texts / self._forward_rate
