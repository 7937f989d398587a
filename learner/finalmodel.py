"""The final model: a hyperparameter search over a finished round's best rung, run as a
round of its own (trigger "final").

A lead asks for it on a finished round (``final_model_request``): the new round copies
that round's training configuration and names its rung, the number of trials and a time
budget. The learner worker claims it like any round and runs the ordinary round pipeline
(``learner.pipeline.run_round``) with one difference: the model comes from
``learner.ml.search.HyperparameterSearch`` (k-fold cross-validation on the training
labels, pruning, the budget, the best configuration trained on every label) instead of
the ladder. The pipeline reads the training side only, so the holdout never reaches the
search; it then evaluates on the holdout, saves the artifact, scores the pool and picks
the next batch as after any round. The search's record (space, every trial, the pick)
is in ``Round.fit["search"]`` and in the saved model's ``labelwise.json``, so the model
card lists it.

With ``LEARNER_BACKEND=ray`` the trials run as Ray Tune trials on the cluster
(``learner.ml.backends.ray_tune``); otherwise one after another in the worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from learner.models import Round
from learner.services import round_request

# Trials per search: the 10-20 by default, a lead may ask for 2 to 40.
FINAL_TRIALS = 12
FINAL_MIN_TRIALS, FINAL_MAX_TRIALS = 2, 40
# The time budget in minutes (no trial starts after it): at most a day of the worker.
FINAL_BUDGET_MINUTES = 60
FINAL_MIN_BUDGET_MINUTES, FINAL_MAX_BUDGET_MINUTES = 1, 24 * 60
# Folds of the cross-validation each trial is scored by.
FINAL_FOLDS = 3


class FinalModelRefused(ValueError):
    """The round cannot be the start of a final model, or the settings are out of range."""


def final_model_request(*, round: Round, trials: int = FINAL_TRIALS,
                        budget_minutes: int = FINAL_BUDGET_MINUTES,
                        requested_by: AbstractBaseUser | None = None) -> Round:
    """Queues a final model searched from ``round`` (a finished round that trained a
    classifier); FinalModelRefused for another round or settings out of range, RoundBusy
    when the project has a round queued or running."""
    if not FINAL_MIN_TRIALS <= trials <= FINAL_MAX_TRIALS:
        raise FinalModelRefused(
            f"Trials must be between {FINAL_MIN_TRIALS} and {FINAL_MAX_TRIALS}.")
    if not FINAL_MIN_BUDGET_MINUTES <= budget_minutes <= FINAL_MAX_BUDGET_MINUTES:
        raise FinalModelRefused(f"The time budget must be between {FINAL_MIN_BUDGET_MINUTES} "
                                f"and {FINAL_MAX_BUDGET_MINUTES} minutes.")
    if not final_model_allowed(round):
        raise FinalModelRefused(f"Round {round.number} did not finish training a classifier; "
                                "a final model starts from one that did.")
    return round_request(
        project=round.project, trigger=Round.Trigger.FINAL, requested_by=requested_by,
        extra={
            # The source round's configuration, not today's settings: the search tunes
            # the model that round made.
            "train": round.config["train"],
            "final": {"source_round": round.number, "source_rung": round.fit["rung"],
                      "trials": trials, "budget_seconds": budget_minutes * 60,
                      "folds": FINAL_FOLDS},
        })


def final_model_allowed(round: Round) -> bool:
    """Whether a final model can start from ``round``: it finished training a classifier
    (not a cold start, an adaptation, or a round from before configurations were typed)."""
    return (round.status == Round.Status.DONE
            and isinstance((round.config or {}).get("train"), dict)
            and round.trigger not in (Round.Trigger.COLD_START, Round.Trigger.ADAPT)
            and bool((round.fit or {}).get("rung")))


def search_backend() -> str:
    """"ray" when the learner runs on Ray (LEARNER_BACKEND), else "local"."""
    chosen = (os.environ.get("LEARNER_BACKEND", "") or "local").strip().lower()
    return "ray" if chosen == "ray" else "local"


def run_final_model(round: Round, progress: Callable[..., None]) -> dict[str, Any]:
    """The round pipeline with the search as its fit. Progress: "trial i/n, fold f/k" with
    the folds done of all planned, then "final fit" with its training steps; the estimate
    left is the folds still planned at the pace so far (capped by the budget left) plus
    about one trial for the final fit."""
    from learner import pipeline
    from learner.ml.config import TrainConfig
    from learner.ml.search import HyperparameterSearch, SearchConfig, search_rung

    final = round.config["final"]
    started = time.perf_counter()
    budget = float(final["budget_seconds"])
    folds = int(final.get("folds", FINAL_FOLDS))

    fit_started: list[float] = []

    def report(phase: str, step: int, total: int) -> None:
        now = time.perf_counter()
        eta = None
        if phase.startswith("trial") and step > 0:
            per_fold = (now - started) / step
            eta = (min(per_fold * (total - step), max(budget - (now - started), 0.0))
                   + per_fold * folds)
        elif phase == "final fit":
            if not fit_started:
                fit_started.append(now)
            if step > 0:
                eta = (now - fit_started[0]) / step * (total - step)
        progress(phase, step, total, eta)

    def train(config: TrainConfig, labels: Sequence[str], texts: Sequence[str], y: Any, *,
              doc_ids: Sequence[Any], **_: Any) -> Any:
        rung = search_rung(str(final.get("source_rung", "")), config.ladder)
        search = HyperparameterSearch(
            config, labels, rung=rung, backend=search_backend(),
            search=SearchConfig(trials=int(final["trials"]), folds=folds,
                                budget_seconds=budget, seed=config.seed),
        ).fit(texts, y, doc_ids=doc_ids, progress=report)
        return search.classifier_

    return pipeline.run_round(round, progress, train=train)
