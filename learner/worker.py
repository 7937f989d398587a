"""The loop behind `python manage.py learner`: recover, trigger, claim, run, record.

`Worker.run_once()` does one pass and says whether it ran a round, so tests drive the
worker step by step; `run_forever()` just repeats it with a sleep when idle.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from learner import selectors, services
from learner.coldstart import rounds_request_cold_start
from learner.export import export_jobs_run_once
from learner.models import Round

log = logging.getLogger("labelwise.learner")

RoundRunner = Callable[[Round, Callable[..., None]], dict]


def default_runner(round: Round, progress: Callable[..., None]) -> dict:
    if round.trigger == Round.Trigger.COLD_START:
        from learner.coldstart import run_cold_start

        return run_cold_start(round, progress)
    if round.trigger == Round.Trigger.ADAPT:
        from learner.adaptation import run_adaptation

        return run_adaptation(round, progress)
    if round.trigger == Round.Trigger.FINAL:
        from learner.finalmodel import run_final_model

        return run_final_model(round, progress)
    from learner.pipeline import run_round

    return run_round(round, progress)


@dataclass
class Worker:
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    heartbeat_timeout: timedelta = timedelta(minutes=2)
    # Progress writes are throttled: a training step every few hundred ms must not turn
    # into a database write each.
    progress_interval: float = 1.0
    runner: RoundRunner = default_runner
    # The fast refresh between rounds (learner/refresh.py). Once a round is queued, no
    # further project is refreshed after this many seconds of refreshing, so a round never
    # waits long behind refreshes (each takes about a second for a 20,000-document pool).
    refresh: bool = True
    refresh_budget_seconds: float = 3.0
    # While idle, how often to look for new labels to refresh on (a cheap count per
    # project); this bounds the delay from a label to a re-scored queue.
    refresh_poll_seconds: float = 0.5
    # How often the predictions served are judged for drift (learner.services.drift_check):
    # a day's figures move slowly, and the check costs a few GROUP BYs per project.
    drift_check_seconds: float = 60.0
    # Whether a waiting export goes before the next round (set after each round).
    _export_turn: bool = field(default=False, init=False, repr=False)
    _drift_checked: float | None = field(default=None, init=False, repr=False)
    _drift_since: datetime | None = field(default=None, init=False, repr=False)

    def run_once(self) -> bool:
        """Recovers stale rounds, queues the rounds whose triggers fired, refreshes the
        scores of projects with new labels, then claims and runs one queued round. True if
        it ran one."""
        for round_id in services.rounds_recover_stale(heartbeat_timeout=self.heartbeat_timeout):
            log.warning("round %s: its worker stopped responding; requeued or failed", round_id)
        for requested in [*services.rounds_request_due(), *rounds_request_cold_start()]:
            log.info("round %s queued for %s (%s)", requested.pk, requested.project,
                     requested.get_trigger_display())
        self.refresh_scores()
        self.check_drift()
        # Model exports are background jobs too. Rounds and exports take turns: after a
        # round, a waiting export runs before the next round, so a project whose labels
        # keep queueing rounds cannot starve its own (or another project's) exports.
        if self._export_turn and export_jobs_run_once(worker=self.name):
            self._export_turn = False
            return True
        round = services.round_claim(worker=self.name)
        if round is None:
            return export_jobs_run_once(worker=self.name)
        log.info("round %s (%s #%s): claimed by %s", round.pk, round.project, round.number,
                 self.name)
        self._run(round)
        self._export_turn = True
        return True

    def check_drift(self) -> None:
        """Judges the projects that served predictions since the last check, at most every
        `drift_check_seconds`; the first check looks back to the start of the day."""
        now = time.monotonic()
        if self._drift_checked is not None and now - self._drift_checked < self.drift_check_seconds:
            return
        since = self._drift_since or selectors.day_bounds(timezone.localdate())[0]
        self._drift_checked, self._drift_since = now, timezone.now()
        for alert in services.drift_checks_run(since=since):
            log.warning("round %s: predictions drifted on %s (alert %s, %s texts queued)",
                        alert.round_id, alert.day, alert.pk, alert.queued_documents)

    def refresh_scores(self) -> None:
        """Fast-refreshes the projects with new labels; a failure is logged, never raised
        (the rounds must go on)."""
        if not self.refresh:
            return
        from learner.refresh import refresh_due

        started = time.monotonic()

        def should_stop() -> bool:
            return (time.monotonic() - started > self.refresh_budget_seconds
                    and Round.objects.filter(status=Round.Status.QUEUED).exists())

        try:
            refresh_due(should_stop=should_stop)
        except Exception:  # noqa: BLE001 - a refresh is an optimisation, never fatal
            log.exception("fast refresh failed; the queue keeps the round's scores")

    def _run(self, round: Round) -> None:
        last_write = 0.0

        def progress(phase: str, step: int = 0, total: int = 0,
                     eta_seconds: float | None = None) -> None:
            nonlocal last_write
            now = time.monotonic()
            if now - last_write < self.progress_interval and 0 < step < total:
                return
            last_write = now
            services.round_progress(round_id=round.pk, phase=phase, step=step,
                                    total_steps=total, eta_seconds=eta_seconds)

        beating = threading.Event()
        heart = threading.Thread(target=self._beat, args=(round.pk, beating), daemon=True)
        heart.start()
        try:
            results = self.runner(round, progress)
            services.round_finish(round=round, **results)
            log.info("round %s: done", round.pk)
        except services.RoundCancelled:
            services.round_mark_cancelled(round=round)
            log.info("round %s: cancelled", round.pk)
        except Exception as exc:  # noqa: BLE001 - any failure is recorded on the row
            services.round_fail(round=round, error=f"{type(exc).__name__}: {exc}",
                                traceback=traceback.format_exc())
            log.exception("round %s: failed", round.pk)
        finally:
            beating.set()
            heart.join()

    def _beat(self, round_id: int, stop: threading.Event) -> None:
        """Keeps the heartbeat fresh while a long step (loading a model, an epoch) runs
        without reporting progress; it dies with the process, which is the point."""
        interval = max(self.heartbeat_timeout.total_seconds() / 4, 0.5)
        try:
            while not stop.wait(interval):
                try:
                    services.round_heartbeat(round_id=round_id)
                except DatabaseError as exc:
                    # A busy database (SQLite's one writer, say, during a large import) must
                    # not end the heartbeat: the next beat tries again.
                    log.warning("round %s: heartbeat not written (%s)", round_id, exc)
        finally:
            connection.close()  # this thread's own connection

    def run_forever(self, *, poll_seconds: float = 2.0,
                    stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        log.info("learner worker %s started", self.name)
        while not stop.is_set():
            # A long-lived process must drop connections the server has closed meanwhile.
            close_old_connections()
            try:
                ran = self.run_once()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the worker
                log.exception("learner loop error; retrying")
                ran = False
            if not ran:
                # Idle: look for new labels to refresh on more often than for rounds.
                deadline = time.monotonic() + poll_seconds
                while not stop.wait(max(min(self.refresh_poll_seconds,
                                            deadline - time.monotonic()), 0)):
                    if time.monotonic() >= deadline:
                        break
                    close_old_connections()
                    self.refresh_scores()
