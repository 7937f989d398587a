"""The final model's hyperparameter search as Ray Tune trials (``LEARNER_BACKEND=ray``).

``learner.ml.search.HyperparameterSearch`` hands its trials here instead of running them
one after another: Ray Tune's random search draws from the same ``SearchSpace`` (seeded,
the default configuration evaluated first), each trial runs the same cross-validation
(``_Objective.folds_of``) in its own Ray worker and reports its running mean after every
fold, and the ASHA scheduler stops trials that trail their rung's best (successive
halving, one fold per rung). ``time_budget_s`` is the search's budget: no trial starts
after it. The finished trial's out-of-fold logits come back as a checkpoint, so the driver
calibrates the final model as the local search does.

The cluster is the Ray backend's (``RAY_ADDRESS``; ``LABELWISE_RAY_USE_GPU``: a GPU per
trial); each worker loads the base model from its own disk, as the scorers do.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from learner.ml.train import ProgressFn

if TYPE_CHECKING:
    from learner.ml.search import HyperparameterSearch, Trial, _Objective

OOF_FILE = "oof.npy"


def _trainable(params: dict[str, Any], *, inputs: dict[str, Any]) -> None:
    """One Ray Tune trial: the cross-validation of ``params``, reported fold by fold."""
    import torch
    from ray import tune

    from learner.ml.search import _Objective

    torch.set_num_threads(1)  # a trial per CPU: threads would only contend
    objective = _Objective(**inputs)
    n, k, folds = len(objective.targets), len(objective.labels), len(objective.folds)
    oof = np.zeros((n, k))
    scores: list[float] = []
    for score, _ in objective.folds_of(params, oof):
        scores.append(score)
        metrics = {"score": float(np.mean(scores)), "fold": len(scores), "fold_score": score}
        if len(scores) < folds:
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory(prefix="labelwise-trial-") as tmp:
            np.save(Path(tmp) / OOF_FILE, oof)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def run_tune(search: HyperparameterSearch, objective: _Objective,
             drawn: list[dict[str, Any]], report: ProgressFn, started: float
             ) -> tuple[list[Trial], dict[int, np.ndarray], str]:
    """Runs the trials on Ray Tune; returns them as ``HyperparameterSearch._run_local``
    does: every trial in the order Tune created them, the out-of-fold logits of each
    finished one, and why the search stopped."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from learner.ml.backends.ray import RayBackend
    from learner.ml.search import Trial

    backend = RayBackend.from_env()
    backend._ray()
    settings = search.search
    folds = len(objective.folds)
    total = len(drawn) * folds
    inputs = {"base_config": objective.base_config, "rung": objective.rung,
              "labels": objective.labels, "texts": objective.texts,
              "targets": objective.targets, "folds": objective.folds}

    class Progress(tune.Callback):
        """Reports every fold any trial finishes as the search's progress (driver side)."""

        done = 0

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                            result: dict[str, Any], **info: Any) -> None:
            self.done += 1
            report(f"trial {trials.index(trial) + 1}/{len(drawn)}, fold "
                   f"{result.get('fold', 0)}/{folds}", min(self.done, total), total)

    storage = tempfile.mkdtemp(prefix="labelwise-tune-")
    defaults = drawn[:1] if settings.include_default else []
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, inputs=inputs),
        {"cpu": 1, "gpu": 1 if backend.use_gpu else 0})
    try:
        tuner = tune.Tuner(
            trainable,
            param_space=search.space.to_tune(),
            tune_config=tune.TuneConfig(
                metric="score", mode="max", num_samples=len(drawn),
                search_alg=BasicVariantGenerator(points_to_evaluate=defaults,
                                                 random_state=settings.seed),
                scheduler=ASHAScheduler(time_attr="fold", max_t=folds, grace_period=1,
                                        reduction_factor=2),
                time_budget_s=settings.budget_seconds,
            ),
            run_config=tune.RunConfig(storage_path=backend.storage_path or storage,
                                      name="final-model", verbose=0, callbacks=[Progress()]),
        )
        grid = tuner.fit()
        trials: list[Trial] = []
        oof: dict[int, np.ndarray] = {}
        for index in range(len(grid)):
            result = grid[index]
            if result.error is not None or not result.metrics or result.config is None:
                continue
            config = result.config
            params = {d.name: config[d.name] for d in search.space.dimensions}
            history = result.metrics_dataframe
            scores = [float(s) for s in history["fold_score"]] if history is not None else []
            trial = Trial(len(trials), params, fold_scores=scores,
                          default=bool(defaults) and params == defaults[0],
                          seconds=float(result.metrics.get("time_total_s", 0.0)))
            if len(scores) == folds and result.checkpoint is not None:
                trial.mean = float(np.mean(scores))
                with result.checkpoint.as_directory() as folder:
                    oof[trial.number] = np.load(Path(folder) / OOF_FILE)
            else:
                trial.pruned = True
            trials.append(trial)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    stopped = ("all trials ran" if len(trials) >= len(drawn) else
               f"time budget of {settings.budget_seconds:.0f} s spent")
    return trials, oof, stopped
