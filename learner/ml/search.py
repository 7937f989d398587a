"""A hyperparameter search for a final model: the ladder's best rung, tuned.

``HyperparameterSearch(config, labels, space=..., search=...).fit(texts, y)`` draws trial
configurations from a typed ``SearchSpace`` over ``TrainConfig`` fields (learning rate
log-uniform, epochs, layer-wise learning-rate decay, max length), scores each by k-fold
cross-validation on the labels it is given (stratified, the folds the ladder's own
cross-fitting uses), prunes a trial that trails the best after a fold, stops starting
trials once the time budget is spent, then trains the best configuration on every label.

The caller passes only training labels: a project's holdout never reaches this module,
so the holdout metrics of the final model are as honest as any round's.

Every fold runs the steps an ordinary fit runs (``build_model``, ``fit_linear_head`` for
the LP-FT starting head, ``fine_tune``, ``forward_logits``, ``score_logits``), for the
trial's fixed number of epochs with no early stopping (the epochs are what is searched).
The final model is calibrated on the best trial's out-of-fold logits, as a cross-fitted
ladder fit is (``TextClassifier._fit_crossfitted``), and is an ordinary fitted
``TextClassifier``: it saves, loads and scores like any round's.

Two executors, one search space and one objective: trials run one after another in this
process (``backend="local"``), or as Ray Tune trials (``backend="ray"``) with Ray's
random search over the same space and its ASHA scheduler pruning by fold.

Trial 0 is the ladder's default configuration (``SearchConfig.include_default``), so the
pick is never worse than the default by the search's own cross-validation.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import numpy as np

from learner.ml.config import BOUNDS, RUNGS, Mode, TrainConfig
from learner.ml.encoder import pick_device
from learner.ml.encoder import tokenize as tokenize_texts
from learner.ml.train import (
    LP_INIT_MAX_C,
    FitData,
    ProgressFn,
    TextClassifier,
    _folds,
    _set_head,
    build_model,
    fine_tune,
    fit_linear_head,
    forward_logits,
    plan_epochs,
    score_logits,
    seed_everything,
    validation_noise,
)

__all__ = ["Dimension", "HyperparameterSearch", "SearchConfig", "SearchSpace", "Trial",
           "search_rung"]


@dataclass(frozen=True)
class Dimension:
    """One searched ``TrainConfig`` field: a range (``log``: log-uniform; ``integer``:
    whole numbers, both ends included) or a tuple of ``choices``."""

    name: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: tuple[int | float, ...] | None = None

    def __post_init__(self) -> None:
        if self.name not in TrainConfig.__dataclass_fields__:
            raise ValueError(f"{self.name!r} is not a TrainConfig field")
        if self.choices is not None:
            if not self.choices:
                raise ValueError(f"{self.name}: choices must not be empty")
        elif not self.low <= self.high or (self.log and self.low <= 0):
            raise ValueError(f"{self.name}: bad range [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator) -> int | float:
        if self.choices is not None:
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.integer:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def to_tune(self) -> Any:
        """The same dimension as a Ray Tune sampler."""
        from ray import tune

        if self.choices is not None:
            return tune.choice(list(self.choices))
        if self.integer:
            return tune.randint(int(self.low), int(self.high) + 1)  # upper end exclusive
        return (tune.loguniform if self.log else tune.uniform)(self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"name": self.name, "choices": list(self.choices)}
        kind = "integer" if self.integer else ("log-uniform" if self.log else "uniform")
        return {"name": self.name, "low": self.low, "high": self.high, "kind": kind}


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions a search draws from; ``sample`` is reproducible from its generator."""

    dimensions: tuple[Dimension, ...]

    def sample(self, rng: np.random.Generator) -> dict[str, int | float]:
        return {d.name: d.sample(rng) for d in self.dimensions}

    def to_tune(self) -> dict[str, Any]:
        return {d.name: d.to_tune() for d in self.dimensions}

    def to_dict(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.dimensions]

    @classmethod
    def for_rung(cls, rung: str, base: TrainConfig) -> SearchSpace:
        """The default space around ``base`` for fine-tuning rung ``rung``.

        Learning rate: log-uniform over a factor of five either side of the default (LoRA
        searches its own adapter rate, and no layer decay: its adapters start at zero).
        Epochs: 2 to 8; a few hundred labels need a few dozen steps per epoch, and the
        ladder's default plan lands inside this range. Layer decay: 0.7 to 1.0 (1.0: one
        rate for every layer). Max length: half, the same and twice the base's, inside
        what the model accepts."""
        if rung == "lora":
            lr = Dimension("lora_learning_rate", base.lora_learning_rate / 5,
                           base.lora_learning_rate * 5, log=True)
        else:
            lr = Dimension("learning_rate", base.learning_rate / 5, base.learning_rate * 5,
                           log=True)
        dims = [lr, Dimension("epochs", 2, 8, integer=True)]
        if rung != "lora":
            dims.append(Dimension("layer_lr_decay", 0.7, 1.0))
        low, high = BOUNDS["max_length"].offered
        lengths = sorted({int(min(max(n, low), high)) for n in
                          (base.max_length // 2, base.max_length, base.max_length * 2)})
        dims.append(Dimension("max_length", choices=tuple(lengths)))
        return cls(tuple(dims))


@dataclass(frozen=True)
class SearchConfig:
    """How a search runs.

    ``trials``: configurations to try (the default one included); ``folds``: the
    cross-validation's; ``budget_seconds``: no trial starts after this much time (the
    first always runs; None: no budget); a trial is pruned after a fold when its mean
    score so far trails the best finished trial's mean over the same folds by more than
    ``prune_margin`` or the noise of those folds' labels, whichever is larger
    (``validation_noise``: a margin of one standard error keeps noise from pruning a
    good trial); ``seed`` draws the trials and splits the folds.
    """

    trials: int = 12
    folds: int = 3
    budget_seconds: float | None = 3600.0
    prune_margin: float = 0.02
    seed: int = 0
    include_default: bool = True

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError("trials must be >= 1")
        if self.folds < 2:
            raise ValueError("folds must be >= 2")
        if self.budget_seconds is not None and self.budget_seconds < 0:
            raise ValueError("budget_seconds must be >= 0 (or None: no budget)")
        if self.prune_margin < 0:
            raise ValueError("prune_margin must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trial:
    """One configuration's cross-validation: its searched values, each finished fold's
    macro-F1 (micro for multi-label), their mean (None when pruned), and seconds."""

    number: int
    params: dict[str, Any]
    fold_scores: list[float] = field(default_factory=list)
    mean: float | None = None
    pruned: bool = False
    seconds: float = 0.0
    default: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "params": self.params,
                "fold_scores": [round(s, 4) for s in self.fold_scores],
                "mean": None if self.mean is None else round(self.mean, 4),
                "pruned": self.pruned, "seconds": round(self.seconds, 2),
                "default": self.default}


def search_rung(pick: str, ladder: Sequence[str]) -> str:
    """The rung a final model tunes: the ladder's pick when it fine-tuned; when it kept the
    linear head, the deepest fine-tuning rung it may climb to (the search's
    cross-validation then says whether tuned fine-tuning does better)."""
    if pick in RUNGS and pick != "head":
        return pick
    return [r for r in RUNGS if r in ladder][-1] if ladder else "full"


def _params_of(config: TrainConfig, space: SearchSpace) -> dict[str, Any]:
    return {d.name: getattr(config, d.name) for d in space.dimensions}


class _Objective:
    """The cross-validation of one configuration on the labelled texts: the base encoder
    loaded once, each max length's tokens and frozen vectors computed once."""

    def __init__(self, base_config: TrainConfig, rung: str, labels: Sequence[str],
                 texts: Sequence[str], targets: np.ndarray, folds: list[tuple[np.ndarray,
                                                                            np.ndarray]]
                 ) -> None:
        self.base_config, self.labels = base_config, list(labels)
        self.rung = cast(Mode, rung)
        self.texts, self.targets, self.folds = list(texts), targets, folds
        self.device = pick_device(base_config.device)
        self.model, self.tokenizer = build_model(base_config, len(self.labels))
        self.model.to(self.device)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self._ids: dict[int, list[list[int]]] = {}
        self._frozen: dict[int, np.ndarray] = {}

    def ids(self, max_length: int) -> list[list[int]]:
        if max_length not in self._ids:
            self._ids[max_length] = tokenize_texts(self.texts, self.tokenizer, max_length)
        return self._ids[max_length]

    def frozen(self, max_length: int) -> np.ndarray:
        if max_length not in self._frozen:
            self._frozen[max_length] = forward_logits(
                self.model, self.ids(max_length), pad_id=self.pad_id,
                batch_size=self.base_config.eval_batch_size)[1]
        return self._frozen[max_length]

    def configure(self, params: dict[str, Any]) -> TrainConfig:
        """The trial's full configuration: the base with the searched values, the rung
        forced, and the epochs meaning epochs (no step cap)."""
        return replace(self.base_config, mode=self.rung, max_steps=None, **params)

    def train(self, config: TrainConfig, rows: np.ndarray, report: ProgressFn) -> Any:
        """The rung fine-tuned on ``rows`` from the base encoder and an LP-FT head, for
        the configuration's epochs (no validation split: nothing stops it early)."""
        cfg, k = config, len(self.labels)
        seed_everything(cfg.seed)
        ids = self.ids(cfg.max_length)
        model = copy.deepcopy(self.model)
        if cfg.lp_init:
            # LP_INIT_MAX_C, not a cross-validated C: choosing it on the fold's own
            # validation rows would let them shape the model they then score.
            init = fit_linear_head(
                self.frozen(cfg.max_length)[rows], self.targets[rows], n_labels=k,
                labels=self.labels, task=cfg.task,
                class_weighting=cfg.class_weighting, C=LP_INIT_MAX_C, seed=cfg.seed,
                out_of_fold=False)
            _set_head(model, init.weight, init.bias)
        data = FitData(ids, self.targets, rows, rows[:0], self.pad_id)
        model, _ = fine_tune(model, self.rung, data=data, config=cfg, labels=self.labels,
                             report=report)
        return model

    def folds_of(self, params: dict[str, Any], oof: np.ndarray | None = None,
                 report: Callable[[int, int, int], None] | None = None
                 ) -> Iterator[tuple[float, int]]:
        """Yields (score, validation rows) fold after fold; fills ``oof`` (n, k) with the
        out-of-fold logits when given. ``report(fold, step, total)`` per training step."""
        cfg = self.configure(params)
        ids = self.ids(cfg.max_length)
        for i, (train_rows, val_rows) in enumerate(self.folds):
            def on_step(phase: str, step: int, total: int, i: int = i) -> None:
                if report is not None and phase == "train":
                    report(i, step, total)

            model = self.train(cfg, train_rows, on_step)
            logits, _ = forward_logits(model, [ids[j] for j in val_rows], pad_id=self.pad_id,
                                       batch_size=cfg.eval_batch_size, features=False)
            del model
            if oof is not None:
                oof[val_rows] = logits
            score, _ = score_logits(self.targets[val_rows], logits, self.labels,
                                    task=cfg.task)
            yield score, len(val_rows)


class HyperparameterSearch:
    """A final model: the search, then the best configuration trained on every label.

    ``fit(texts, y)`` leaves ``trials_`` (every ``Trial``, in the order they ran),
    ``best_`` (the chosen one), ``config_`` (its full ``TrainConfig``), ``classifier_``
    (the fitted ``TextClassifier``) and ``report_`` (a JSON-able record: space, settings,
    trials, pick, how many ran and why the search stopped). The record is also in the
    classifier's ``metrics_["search"]``, so it is saved with the model.
    """

    def __init__(self, config: TrainConfig, labels: Sequence[str], *, rung: str,
                 space: SearchSpace | None = None, search: SearchConfig | None = None,
                 backend: str = "local", clock: Callable[[], float] = time.perf_counter
                 ) -> None:
        if rung not in RUNGS or rung == "head":
            raise ValueError(f"a search tunes a fine-tuning rung ({RUNGS[1:]}), not {rung!r}")
        self.config = config
        self.labels = list(labels)
        self.rung = cast(Mode, rung)
        self.space = space or SearchSpace.for_rung(rung, config)
        self.search = search or SearchConfig()
        self.backend = backend
        self.clock = clock

    # -- the trials ------------------------------------------------------------

    def draw(self, n_fit: int) -> list[dict[str, Any]]:
        """The trial configurations, reproducible from the search's seed: the default
        first (its epochs as the ladder would plan them for ``n_fit`` labels), then draws
        from the space."""
        rng = np.random.default_rng(self.search.seed)
        drawn: list[dict[str, Any]] = []
        if self.search.include_default:
            default = _params_of(self.config, self.space)
            if "epochs" in default and default["epochs"] is None:
                default["epochs"] = plan_epochs(n_fit, self.config)[0]
            drawn.append(default)
        while len(drawn) < self.search.trials:
            drawn.append(self.space.sample(rng))
        return drawn

    def fit(self, texts: Sequence[str], y: Any, *, doc_ids: Sequence[Any] | None = None,
            progress: ProgressFn | None = None) -> HyperparameterSearch:
        report: ProgressFn = progress or (lambda phase, step, total: None)
        started = self.clock()
        shaper = TextClassifier(replace(self.config, mode=self.rung), self.labels)
        targets = shaper._targets(y)
        if len(targets) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(targets)} targets")
        folds = _folds(targets, self.search.folds, self.search.seed)
        n_fit = int(np.mean([len(t) for t, _ in folds]))
        base = replace(self.config, mode=self.rung)
        objective = _Objective(base, self.rung, self.labels, texts, targets, folds)
        drawn = self.draw(n_fit)
        if self.backend == "ray":
            trials, oof, stopped = self._run_ray(objective, drawn, report, started)
        else:
            trials, oof, stopped = self._run_local(objective, drawn, report, started)
        finished = [t for t in trials if t.mean is not None]
        self.best_ = max(finished, key=lambda t: (t.mean, -t.number))
        self.trials_ = trials
        self.config_ = objective.configure(self.best_.params)
        search_seconds = self.clock() - started
        self.classifier_ = self._final_fit(objective, texts, targets, oof[self.best_.number],
                                           doc_ids=doc_ids, report=report)
        self.report_ = {
            "rung": self.rung,
            "backend": self.backend,
            "space": self.space.to_dict(),
            "settings": self.search.to_dict(),
            "n_labels": int(len(targets)),
            "folds": len(folds),
            "trials": [t.to_dict() for t in trials],
            "best": self.best_.number,
            "best_params": self.best_.params,
            "best_score": round(float(self.best_.mean or 0.0), 4),
            "default_score": next((round(float(t.mean), 4) for t in trials
                                   if t.default and t.mean is not None), None),
            "trials_run": len(trials),
            "trials_pruned": sum(t.pruned for t in trials),
            "stopped": stopped,
            "search_seconds": round(search_seconds, 2),
            "final_fit_seconds": round(self.clock() - started - search_seconds, 2),
        }
        self.classifier_.metrics_["search"] = self.report_
        return self

    def _prune(self, trial: Trial, best: Trial | None, seen: int) -> bool:
        """Whether ``trial`` (its first folds scored, ``seen`` validation rows) trails the
        best finished trial over the same folds by more than the margin."""
        if best is None or trial.mean is not None:
            return False
        done = len(trial.fold_scores)
        mine = float(np.mean(trial.fold_scores))
        theirs = float(np.mean(best.fold_scores[:done]))
        margin = max(self.search.prune_margin, validation_noise(theirs, seen))
        return mine < theirs - margin

    def _run_local(self, objective: _Objective, drawn: list[dict[str, Any]],
                   report: ProgressFn, started: float
                   ) -> tuple[list[Trial], dict[int, np.ndarray], str]:
        n, k = len(objective.targets), len(self.labels)
        folds = len(objective.folds)
        trials: list[Trial] = []
        oof: dict[int, np.ndarray] = {}
        best: Trial | None = None
        budget = self.search.budget_seconds
        stopped = "all trials ran"
        for number, params in enumerate(drawn):
            if trials and budget is not None and self.clock() - started >= budget:
                stopped = f"time budget of {budget:.0f} s spent"
                break
            trial = Trial(number, params, default=self.search.include_default and number == 0)
            t0 = self.clock()
            logits = np.zeros((n, k))
            seen = 0

            def on_step(fold: int, step: int, total: int, number: int = number) -> None:
                report(f"trial {number + 1}/{len(drawn)}, fold {fold + 1}/{folds}",
                       number * folds + fold, len(drawn) * folds)

            for score, rows in objective.folds_of(params, logits, on_step):
                trial.fold_scores.append(score)
                seen += rows
                if len(trial.fold_scores) == folds:
                    trial.mean = float(np.mean(trial.fold_scores))
                elif self._prune(trial, best, seen):
                    trial.pruned = True
                    break
            trial.seconds = self.clock() - t0
            trials.append(trial)
            if trial.mean is not None:
                oof[number] = logits
                if best is None or trial.mean > (best.mean or -math.inf):
                    best = trial
        return trials, oof, stopped

    def _run_ray(self, objective: _Objective, drawn: list[dict[str, Any]],
                 report: ProgressFn, started: float
                 ) -> tuple[list[Trial], dict[int, np.ndarray], str]:
        from learner.ml.backends.ray_tune import run_tune

        return run_tune(self, objective, drawn, report, started)

    # -- the final model ----------------------------------------------------------

    def _final_fit(self, objective: _Objective, texts: Sequence[str], targets: np.ndarray,
                   oof: np.ndarray, *, doc_ids: Sequence[Any] | None, report: ProgressFn
                   ) -> TextClassifier:
        """The best configuration trained on every label for its epochs, calibrated on
        its trial's out-of-fold logits; the linear probe on every label beside it (the
        frozen-embedding baseline a round is compared with)."""
        started = time.perf_counter()
        cfg = self.config_
        clf = TextClassifier(cfg, self.labels)
        everything = np.arange(len(targets))
        report("final fit", 0, 0)
        frozen = objective.frozen(cfg.max_length)
        probe = fit_linear_head(frozen, targets, n_labels=len(self.labels), labels=self.labels,
                                task=cfg.task,
                                class_weighting=cfg.class_weighting, C=cfg.head_c,
                                seed=cfg.seed)
        model = objective.train(
            cfg, everything,
            lambda phase, step, total: report("final fit", step, total)
            if phase == "train" else None)
        clf.tokenizer_ = objective.tokenizer
        clf.pooling_ = objective.model.pooling
        clf.probe_ = probe
        best = self.best_
        # The same conclusion as the ladder's (temperature on held-out logits, the fit
        # recorded), with the search's pick as the ladder's only candidate.
        clf._conclude(
            model, self.rung, oof, targets, "out-of-fold", targets=targets, texts=texts,
            doc_ids=doc_ids, started=started, device=objective.device, report=report,
            record={"n_train": int(len(targets)), "n_validation": int(len(targets)),
                    "history": [],
                    "ladder": {"mode": self.rung, "pick": self.rung, "refit": None,
                               "folds": len(objective.folds),
                               "candidates": {self.rung: {
                                   "val_score": round(float(best.mean or 0.0), 4),
                                   "seconds": round(best.seconds, 3), "warm": False,
                                   "epochs": cfg.epochs, "folds": len(objective.folds)}}}})
        return clf
