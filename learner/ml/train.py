"""Train a text classifier on labeled texts, in the scikit-learn shape.

``TextClassifier(config, labels).fit(texts, y)`` reads top to bottom: seed, data (tokenize
once, a validation split that is stable per document), the model (the checkpoint's
encoder and its own pooling, ``learner.ml.model``), the linear probe (a logistic
regression on the frozen pooled vectors, its strength cross-validated), then each
fine-tuning rung the mode asks for (AdamW with no weight decay on biases and LayerNorm,
layer-wise learning-rate decay, linear warmup then decay, early stopping on the
validation split), the pick, and calibration (a temperature fitted on held-out logits).
``save()`` writes a folder that sentence-transformers reads as the encoder and
``TextClassifier.load`` reads whole, with ``labelwise.json`` beside.

The rungs (``TrainConfig`` explains when each is fitted):

- ``head``: the encoder is frozen; the head is an L2-regularised logistic regression on
  the pooled vectors (scikit-learn, L-BFGS), ``C`` chosen by stratified k-fold
  cross-validation. Seconds, deterministic, and the frozen-embedding baseline itself.
- ``full``: every weight trains, starting from the probe's head (LP-FT: Kumar et al., ICLR
  2022: a random head distorts the pretrained features in the first steps).
- ``gradual``: ULMFiT-style unfreezing: epoch 0 trains the head, each later epoch
  unfreezes one more encoder layer from the top, the embeddings last.
- ``lora``: low-rank adapters (peft, its per-architecture target modules) plus the head;
  merged into the weights after training, so the saved encoder is plain.

The shared steps (``build_model``, ``build_loss``, ``train_epoch``, ``forward_logits``,
``score_logits``) are what the Ray Train loop runs too (``learner.ml.backends.ray``).
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from learner.ml.artifact import data_fingerprint, read_meta, text_ids, write_meta
from learner.ml.calibration import ece_of, fit_temperature, nll
from learner.ml.config import RUNGS, TrainConfig
from learner.ml.encoder import bucketed_batches, default_model_path, pad_batch, pick_device
from learner.ml.encoder import tokenize as tokenize_texts
from learner.ml.evaluate import evaluate
from learner.ml.model import PooledClassifier
from learner.ml.pooling import Pooling
from learner.ml.tasks import Task

__all__ = [
    "HEAD_C_GRID",
    "EncoderTrainer",
    "FitData",
    "LinearHead",
    "ProgressFn",
    "TextClassifier",
    "build_loss",
    "build_model",
    "data_fingerprint",
    "fine_tune",
    "fit_linear_head",
    "forward_logits",
    "param_groups",
    "plan_epochs",
    "score_logits",
    "seed_everything",
    "train_epoch",
    "validation_split",
]

ProgressFn = Callable[[str, int, int], None]
"""``progress(phase, step, total)``; phases: "features", "head", "train", "validate"."""

# Inverse L2 strengths the linear probe's cross-validation tries (sklearn's C). The pooled
# vectors of a sentence encoder are often unit length, so useful values run high.
HEAD_C_GRID: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
HEAD_FOLDS = 5
# The probe's strength as a starting point for fine-tuning is capped here (see _init_head).
LP_INIT_MAX_C = 1.0
HEAD_FILE = "labelwise_head.safetensors"

_LAYER_RE = re.compile(r"\.layers?\.(\d+)\.")


# --------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a fit is repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _unit_hash(seed: int, key: str) -> float:
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def validation_split(
    keys: Sequence[str], targets: np.ndarray, *, fraction: float, seed: int, min_examples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation); an empty validation split when the data is small.

    A document is in the validation split when a hash of (seed, its key) falls below
    ``fraction``, so the split is stable as labels accumulate: a document validated on
    in one round is never trained on by an earlier one, which keeps a warm-started round's
    early stopping and rung choice honest. Single-label: a class whose every example
    hashed into validation keeps its last one in training.
    """
    n = len(targets)
    everything = np.arange(n)
    if fraction <= 0 or n < min_examples:
        return everything, everything[:0]
    u = np.array([_unit_hash(seed, str(k)) for k in keys])
    is_val = u < fraction
    if targets.ndim == 1:
        for c in np.unique(targets):
            members = np.flatnonzero(targets == c)
            if is_val[members].all():
                is_val[members[np.argmax(u[members])]] = False
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def validation_noise(score: float, n: int) -> float:
    """One standard error of an accuracy-like score measured on ``n`` held-out examples
    (a binomial proportion's, the score clipped to [0.05, 0.95]): two validation samples
    of this size differ about this much. 0 without examples."""
    if n <= 0:
        return 0.0
    p = min(max(score, 0.05), 0.95)
    return math.sqrt(p * (1.0 - p) / n)


def refit_steps(history: list[dict[str, float]], n_train: int, n_all: int) -> int:
    """Optimizer steps for training again on ``n_all`` labels: as many epochs as the
    validation run's kept epoch had done on ``n_train``. 0 when that run kept its
    starting point (fine-tuning never beat the probe it started from)."""
    kept = [h["steps"] for h in history if h.get("kept") and "steps" in h]
    if not kept or kept[-1] <= 0 or n_train <= 0:
        return 0
    return max(1, math.ceil(kept[-1] * n_all / n_train))


def refits(config: TrainConfig, n_labels: int) -> bool:
    """Whether a fit of ``n_labels`` labels trains its picked fine-tuning rung again on
    every label (``TrainConfig.refit_max_labels``)."""
    return 0 < n_labels <= config.refit_max_labels


def crossfits(config: TrainConfig, n_labels: int, *, warm: bool = False) -> bool:
    """Whether a fit of ``n_labels`` labels cross-fits its fine-tuning rungs
    (``TrainConfig.crossfit_max_labels``) rather than scoring them on one validation
    split. Not from a warm start: the previous round's encoder has seen every fold."""
    return (config.mode != "head" and refits(config, n_labels) and not warm
            and config.crossfit_max_labels > 0
            and config.min_examples_for_validation <= n_labels <= config.crossfit_max_labels)


def plan_epochs(n_train: int, config: TrainConfig, *, warm: bool = False
                ) -> tuple[int, int, int]:
    """(epochs, steps per epoch, total steps) for ``n_train`` training examples.

    A fixed number of epochs gives a hundred labels a few dozen optimizer steps, which is
    not enough to move a pretrained encoder (Mosbach et al., ICLR 2021): without fixed
    ``epochs`` the plan asks for ``min_steps`` steps (at least 2 epochs, at most
    ``max_epochs``), and ``max_steps`` caps the whole so round time stays bounded as the
    labels grow. Early stopping may end training sooner, never before ``min_steps``. A
    warm start (from the previous round's encoder) plans ``warm_start_step_fraction`` of
    both.
    """
    per_epoch = max(1, math.ceil(n_train / config.batch_size))
    scale = config.warm_start_step_fraction if warm else 1.0
    if config.epochs is not None:
        epochs = config.epochs
    else:
        min_steps = config.min_steps * scale
        epochs = min(config.max_epochs, max(2, math.ceil(min_steps / per_epoch)))
    total = epochs * per_epoch
    cap = None if config.max_steps is None else max(1, int(config.max_steps * scale))
    if cap is not None and total > cap:
        total = cap
        epochs = math.ceil(total / per_epoch)
    return epochs, per_epoch, total


def _layer_of(name: str, n_layers: int) -> int:
    """Depth of a parameter: 0 embeddings, 1..L encoder layers, L+1 the head."""
    if "embeddings" in name:
        return 0
    match = _LAYER_RE.search(name)
    if match and ("encoder" in name or "transformer" in name):
        return int(match.group(1)) + 1
    return n_layers + 1


def _no_decay(name: str, param: torch.Tensor) -> bool:
    # Decaying biases or LayerNorm gains pulls them towards 0, which is not a prior we
    # want: they are offsets and scales, not feature weights.
    return param.ndim < 2 or name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def _n_layers(model: nn.Module) -> int:
    return int(getattr(model.config, "num_hidden_layers", 0))


def param_groups(model: PooledClassifier, config: TrainConfig, *, lora: bool = False
                 ) -> list[dict[str, Any]]:
    """AdamW parameter groups: (depth x decay/no-decay), each with its own lr.

    Head: ``head_learning_rate``. Encoder layer ``i`` of ``L`` (1-based): ``base *
    layer_lr_decay ** (L - i)``; embeddings ``base * decay ** L``. ``base`` is
    ``learning_rate``, or ``lora_learning_rate`` for LoRA (the adapters start at zero, so
    no layer decay there). Frozen parameters are included on purpose so gradual
    unfreezing needs no new optimizer; AdamW skips parameters without gradient. Each
    group carries a ``name`` like ``"layer_3/no_decay"`` for logs and tests.
    """
    n_layers = _n_layers(model)
    base = config.lora_learning_rate if lora else config.learning_rate
    decay = 1.0 if lora else config.layer_lr_decay
    unused = {id(p) for p in unused_parameters(model)}
    buckets: dict[tuple[int, bool], list[torch.Tensor]] = {}
    for name, param in model.named_parameters():
        if id(param) in unused or (lora and not param.requires_grad):
            continue  # the frozen base weights of a LoRA model never train
        key = (_layer_of(name, n_layers), _no_decay(name, param))
        buckets.setdefault(key, []).append(param)
    groups = []
    for (depth, no_decay), params in sorted(buckets.items()):
        is_head = depth == n_layers + 1
        lr = config.head_learning_rate if is_head else base * decay ** (n_layers - depth)
        label = "head" if is_head else ("embeddings" if depth == 0 else f"layer_{depth - 1}")
        groups.append({
            "params": params,
            "lr": lr,
            "weight_decay": 0.0 if no_decay else config.weight_decay,
            "name": f"{label}/{'no_decay' if no_decay else 'decay'}",
        })
    return groups


def _with_lora(encoder: nn.Module, config: TrainConfig) -> nn.Module:
    """The encoder with low-rank adapters: on peft's default modules for its architecture
    (query/value for BERT and RoBERTa, query_proj/value_proj for DeBERTa), or on every
    linear layer where peft has no default (DistilBERT, ModernBERT): no parameter names
    are assumed here."""
    from peft import LoraConfig, get_peft_model
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = str(getattr(getattr(encoder, "config", None), "model_type", ""))
    targets = None if model_type in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING else (
        "all-linear")
    return get_peft_model(encoder, LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=targets,
    ))


def unused_parameters(model: PooledClassifier) -> list[torch.Tensor]:
    """Encoder parameters the pooled classifier never uses (BERT's pooler: the head reads
    the checkpoint's own pooling instead). They stay frozen and out of the optimizer, and
    are saved untouched so the folder still loads as the same architecture."""
    pooler = getattr(model.encoder, "pooler", None)
    return list(pooler.parameters()) if isinstance(pooler, nn.Module) else []


def _set_gradual_trainable(model: PooledClassifier, epoch: int) -> None:
    """ULMFiT schedule: head always; top ``epoch`` encoder layers; embeddings last."""
    n_layers = _n_layers(model)
    unused = {id(p) for p in unused_parameters(model)}
    for name, param in model.named_parameters():
        depth = _layer_of(name, n_layers)
        if id(param) in unused:
            param.requires_grad_(False)
        elif depth == n_layers + 1:
            param.requires_grad_(True)
        elif depth == 0:
            param.requires_grad_(epoch > n_layers)
        else:
            param.requires_grad_(depth > n_layers - epoch)


# --------------------------------------------------------------------------- shared steps


def build_model(config: TrainConfig, n_labels: int, *, path: str | None = None
                ) -> tuple[PooledClassifier, PreTrainedTokenizerBase]:
    """The checkpoint's encoder with its own pooling and a new linear head, and its
    tokenizer (always from the same folder: another vocabulary gives garbage)."""
    source = path or config.model_name_or_path or default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = PooledClassifier.from_pretrained(
        source, Pooling.of_checkpoint(source), n_labels, dropout=config.dropout
    )
    for param in unused_parameters(model):
        param.requires_grad_(False)
    return model, tokenizer


def build_loss(config: TrainConfig, train_targets: np.ndarray, n_labels: int) -> nn.Module:
    """The task's loss, class-weighted from the training split only: the validation split
    must not shape the loss it judges."""
    return config.task.loss(train_targets, n_labels, class_weighting=config.class_weighting,
                            label_smoothing=config.label_smoothing)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    ids: Sequence[Sequence[int]],
    targets: torch.Tensor,
    rows: np.ndarray,
    loss_fn: nn.Module,
    *,
    pad_id: int,
    batch_size: int,
    max_grad_norm: float,
    seed: int,
    steps_left: int,
    on_step: Callable[[], None] = lambda: None,
) -> tuple[float, int]:
    """One pass over ``rows`` in shuffled, length-bucketed batches; at most ``steps_left``
    optimizer steps. Returns (mean training loss, steps taken)."""
    device = next(model.parameters()).device
    model.train()
    running, steps = 0.0, 0
    for batch_pos in bucketed_batches([len(ids[i]) for i in rows], batch_size, shuffle=True,
                                      seed=seed):
        if steps >= steps_left:
            break
        batch_rows = rows[batch_pos]
        batch = pad_batch([ids[i] for i in batch_rows], pad_id, device)
        loss = loss_fn(model(**batch), targets[batch_rows].to(device))
        loss.backward()
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                 max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        running += float(loss.detach())
        steps += 1
        on_step()
    return running / max(1, steps), steps


def forward_logits(
    model: PooledClassifier,
    ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int,
    features: bool = True,
    dropout: bool = False,
    report: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(raw logits (n, k), pooled features (n, d)) in input order, one pass.

    ``features=False`` skips copying the features out (an (n, 0) array comes back).
    ``dropout=True`` keeps dropout active (MC dropout); gradients are always off.
    """
    device = next(model.parameters()).device
    n, k = len(ids), model.head.out_features
    logits_out = np.zeros((n, k), dtype=np.float32)
    feats_out = np.zeros((n, model.head.in_features if features else 0), dtype=np.float32)
    was_training = model.training
    model.train(dropout)
    batches = list(bucketed_batches([len(x) for x in ids], batch_size))
    if report is not None:
        report(0, len(batches))  # the start, so a one-batch pass is timed too
    try:
        with torch.inference_mode():
            for b, idx in enumerate(batches):
                batch = pad_batch([ids[i] for i in idx], pad_id, device)
                logits, pooled = model.forward_with_features(**batch)
                logits_out[idx] = logits.float().cpu().numpy()
                if features:
                    feats_out[idx] = pooled.float().cpu().numpy()
                if report is not None:
                    report(b + 1, len(batches))
    finally:
        model.train(was_training)
    return logits_out, feats_out


def score_logits(targets: np.ndarray, logits: np.ndarray, labels: Sequence[str], *,
                 task: Task) -> tuple[float, float]:
    """(score, loss) of held-out logits: the task's ``score_key`` (macro-F1 for
    single-label, micro-F1 for multi-label) and NLL.

    Macro-F1 rather than accuracy: on imbalanced labels accuracy rewards ignoring the
    rare classes, which are the ones active learning is trying to find.
    """
    result = evaluate(targets, task.activate(logits), labels, task=task)
    return float(result[task.score_key]), nll(logits, targets, task=task)


# --------------------------------------------------------------------------- linear probe


@dataclass
class LinearHead:
    """A logistic regression on pooled vectors, as the weights of the linear layer.

    ``weight`` (k, d) and ``bias`` (k,) give logits; ``oof_logits`` are out-of-fold
    logits at the chosen ``C`` for the rows it was fitted on (None without
    cross-validation); ``cv`` maps each tried C to its out-of-fold score.
    """

    weight: np.ndarray
    bias: np.ndarray
    C: float
    cv: dict[str, float] = field(default_factory=dict)
    oof_logits: np.ndarray | None = None

    def logits(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.weight.T + self.bias


def _folds(targets: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(targets)
    if targets.ndim == 1:
        counts = np.bincount(targets)
        splits = max(2, min(n_folds, int(counts[counts > 0].min())))
        if counts[counts > 0].min() >= 2:
            return list(StratifiedKFold(splits, shuffle=True, random_state=seed).split(
                np.zeros(n), targets))
    return list(KFold(max(2, min(n_folds, n // 5)), shuffle=True, random_state=seed).split(
        np.zeros(n)))


def fit_linear_head(
    X: np.ndarray,
    targets: np.ndarray,
    *,
    n_labels: int,
    labels: Sequence[str],
    task: Task,
    class_weighting: bool = True,
    C: float | None = None,
    seed: int = 0,
    out_of_fold: bool = True,
    report: Callable[[int, int], None] | None = None,
) -> LinearHead:
    """The linear probe on pooled vectors ``X`` (n, d).

    ``C`` None: each value of ``HEAD_C_GRID`` is scored by k-fold cross-validation
    (out-of-fold ``task.score_key``; ties within 0.005 go to the lower
    out-of-fold NLL) and the best refitted on all rows. With ``out_of_fold`` the
    out-of-fold logits at the chosen C come back too, for calibration. Fewer than 10 rows:
    no cross-validation, C = 1.
    """
    from learner.ml.strategies import one_blas_thread

    X = np.asarray(X, dtype=np.float64)

    def fit(rows: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
        return task.fit_linear(X[rows], targets[rows], n_labels, C=c,
                               balanced=class_weighting, seed=seed)

    everything = np.arange(len(X))
    can_cv = len(X) >= 10 and task.learnable(targets)
    grid = [C] if C is not None else list(HEAD_C_GRID)
    with one_blas_thread():
        if not can_cv or (C is not None and not out_of_fold):
            w, b = fit(everything, C or 1.0)
            return LinearHead(w, b, C or 1.0)
        folds = _folds(targets, HEAD_FOLDS, seed)
        oof = {c: np.zeros((len(X), n_labels)) for c in grid}
        done, total = 0, len(grid) * len(folds)
        for train_rows, test_rows in folds:
            for c in grid:
                w, b = fit(train_rows, c)
                oof[c][test_rows] = X[test_rows] @ w.T + b
                done += 1
                if report is not None:
                    report(done, total)
        scored = {c: score_logits(targets, oof[c], labels, task=task)
                  for c in grid}
        top = max(s for s, _ in scored.values())
        best = min((c for c in grid if scored[c][0] >= top - 0.005), key=lambda c: scored[c][1])
        w, b = fit(everything, best)
    return LinearHead(w, b, best, cv={str(c): round(s, 4) for c, (s, _) in scored.items()},
                      oof_logits=oof[best] if out_of_fold else None)


# --------------------------------------------------------------------------- fine-tuning


EncoderTrainer = Callable[..., tuple[PooledClassifier, list[dict[str, float]]]]
"""``trainer(model, rung, *, data, config, labels, report) -> (model, history)``: fine-tunes
``model`` in place or returns a new one. ``fine_tune`` is the local one; the Ray backend
passes its data-parallel trainer."""


@dataclass
class FitData:
    """Tokenized labeled data, split once per fit."""

    ids: list[list[int]]
    targets: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    pad_id: int


def fine_tune(
    model: PooledClassifier,
    rung: str,
    *,
    data: FitData,
    config: TrainConfig,
    labels: Sequence[str],
    report: ProgressFn,
    warm: bool = False,
) -> tuple[PooledClassifier, list[dict[str, float]]]:
    """Train the encoder (and head) in mode ``rung`` for the planned steps
    (``plan_epochs``; ``warm``: fewer). With a validation split, keep the latest epoch
    whose score is within noise (``validation_noise``) of the best seen (the starting
    point counts, so a rung that only got worse comes back as it started), and stop
    after ``early_stopping_patience`` epochs below that, once the planned minimum of steps
    is done.

    A later epoch within noise of the best is kept rather than the nominal best: on a
    validation split of a few dozen labels, a one-example difference decides the
    maximum, while the held-out curves of ``bench/model_quality.py`` keep rising or stay
    flat well after the epoch a small split prefers."""
    cfg, k = config, len(labels)
    device = next(model.parameters()).device
    if rung == "lora":
        model.encoder = _with_lora(model.encoder, cfg)  # type: ignore[assignment]
    loss_fn = build_loss(cfg, data.targets[data.train_idx], k).to(device)
    targets = cfg.task.tensor(data.targets)
    optimizer = torch.optim.AdamW(param_groups(model, cfg, lora=rung == "lora"))
    epochs, _, total = plan_epochs(len(data.train_idx), cfg, warm=warm)
    # A small validation split's score is noisy: early on it can stall for a few epochs
    # while the encoder moves away from the probe, so no stop before the minimum.
    min_steps = min(total, int(cfg.min_steps * (cfg.warm_start_step_fraction if warm else 1)))
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    val_ids = [data.ids[i] for i in data.val_idx]
    val_targets = data.targets[data.val_idx]

    def validate() -> tuple[float, float]:
        logits, _ = forward_logits(model, val_ids, pad_id=data.pad_id,
                                   batch_size=cfg.eval_batch_size, features=False)
        return score_logits(val_targets, logits, labels, task=cfg.task)

    history: list[dict[str, float]] = []
    top = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    stale, step = 0, 0

    def keep_best(score: float, loss: float) -> bool:
        nonlocal top, best_state
        top = max(top, score)
        if score >= top - validation_noise(top, len(data.val_idx)):
            best_state = {n: t.detach().to("cpu", copy=True)
                          for n, t in model.state_dict().items()}
            return True
        return False

    if len(data.val_idx) and cfg.lp_init:
        score, loss = validate()
        kept = keep_best(score, loss)
        history.append({"epoch": -1.0, "val_score": score, "val_loss": loss, "steps": 0.0,
                        "kept": float(kept)})

    def on_step() -> None:
        nonlocal step
        step += 1
        report("train", step, total)

    for epoch in range(epochs):
        if step >= total:
            break
        if rung == "gradual":
            _set_gradual_trainable(model, epoch)
        train_loss, _ = train_epoch(
            model, optimizer, scheduler, data.ids, targets, data.train_idx, loss_fn,
            pad_id=data.pad_id, batch_size=cfg.batch_size, max_grad_norm=cfg.max_grad_norm,
            seed=cfg.seed + epoch, steps_left=total - step, on_step=on_step,
        )
        record = {"epoch": float(epoch), "train_loss": train_loss, "steps": float(step)}
        if len(data.val_idx):
            score, loss = validate()
            record.update(val_score=score, val_loss=loss)
            report("validate", epoch + 1, epochs)
            kept = keep_best(score, loss)
            record["kept"] = float(kept)
            stale = 0 if kept else stale + 1
        history.append(record)
        if len(data.val_idx) and stale >= cfg.early_stopping_patience and step >= min_steps:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if rung == "gradual":
        _set_gradual_trainable(model, _n_layers(model) + 1)
    if rung == "lora":
        model.encoder = model.encoder.merge_and_unload()  # type: ignore[operator]
    model.eval()
    return model, history


# --------------------------------------------------------------------------- classifier


class TextClassifier:
    """A text classifier over a pretrained encoder, with the scikit-learn shape.

    ``y`` for ``fit``: single-label, a sequence of label indices (or label names);
    multi-label, an (n, k) 0/1 array, or a list with one sequence of label indices
    (or names) per text. Learned attributes end in ``_``: ``model_``, ``tokenizer_``,
    ``pooling_``, ``temperature_``, ``thresholds_`` (multi-label), ``rung_`` (what the
    ladder kept), ``metrics_``.
    """

    def __init__(self, config: TrainConfig, labels: Sequence[str]) -> None:
        self.config = config
        self.labels = list(labels)

    # -- fit ----------------------------------------------------------------

    def _rungs(self, n_train: int, has_validation: bool) -> list[str]:
        """The fine-tuning rungs to fit, cheapest first."""
        cfg = self.config
        if cfg.mode == "head":
            return []
        if cfg.mode != "auto":
            return [cfg.mode]
        if not has_validation or n_train < cfg.ladder_min_labels:
            return []
        return [r for r in RUNGS if r in cfg.ladder]

    def fit(
        self,
        texts: Sequence[str],
        y: Any,
        *,
        doc_ids: Sequence[Any] | None = None,
        progress: ProgressFn | None = None,
        encoder_trainer: EncoderTrainer | None = None,
        warm_start: str | Path | None = None,
        keep_candidates: bool = False,
    ) -> TextClassifier:
        """Fit on labelled ``texts``.

        ``doc_ids`` key the stable validation split and the data fingerprint (the texts'
        hashes without). ``warm_start``: a folder saved by an earlier fit of the same
        labels' task (the previous round); with ``config.warm_start`` its encoder is the
        fine-tuning rungs' start. ``keep_candidates`` keeps every rung's model in
        ``candidates_`` (benchmarks compare them on test data).
        """
        cfg, k = self.config, len(self.labels)
        started = time.perf_counter()
        report: ProgressFn = progress or (lambda phase, step, total: None)
        cfg.task.check_schema(len(self.labels))

        # Seed before the model is built: the new head's init is random.
        seed_everything(cfg.seed)
        targets = self._targets(y)
        if len(targets) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(targets)} targets")
        keys = [str(d) for d in doc_ids] if doc_ids is not None else text_ids(texts)
        crossfit = crossfits(cfg, len(targets),
                             warm=warm_start is not None and cfg.warm_start)
        if crossfit:
            train_idx = np.arange(len(targets))
            val_idx = train_idx[:0]
        else:
            train_idx, val_idx = validation_split(
                keys, targets, fraction=cfg.validation_fraction, seed=cfg.seed,
                min_examples=cfg.min_examples_for_validation,
            )
        device = pick_device(cfg.device)
        base, tokenizer = build_model(cfg, k)
        base.to(device)
        self.tokenizer_ = tokenizer
        self.pooling_ = base.pooling
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        data = FitData(tokenize_texts(texts, tokenizer, cfg.max_length), targets,
                       train_idx, val_idx, pad_id)

        # The linear probe: the frozen encoder's pooled vectors, once for every label.
        frozen = self._features(base, data, report)
        rungs = self._rungs(len(train_idx), crossfit or len(val_idx) > 0)
        probe_rows = train_idx if (rungs and len(val_idx)) else np.arange(len(targets))
        t0 = time.perf_counter()
        probe = fit_linear_head(
            frozen[probe_rows], targets[probe_rows], n_labels=k, labels=self.labels,
            task=cfg.task, class_weighting=cfg.class_weighting, C=cfg.head_c,
            seed=cfg.seed, report=lambda step, total: report("head", step, total),
        )
        candidates: dict[str, dict[str, Any]] = {"head": {
            "C": probe.C, "cv": probe.cv, "seconds": round(time.perf_counter() - t0, 3),
        }}
        if rungs and len(val_idx):
            candidates["head"].update(self._validation(probe.logits(frozen[val_idx]), data))
        if rungs and crossfit:
            if keep_candidates:
                self.candidates_: dict[str, TextClassifier] = {}  # no single-rung models
            return self._fit_crossfitted(
                rungs, data=data, frozen=frozen, probe=probe, base=base,
                candidates=candidates, trainer=encoder_trainer or fine_tune, report=report,
                doc_ids=doc_ids, texts=texts, started=started, device=device)

        # The fine-tuning rungs, each from a fresh copy of the encoder (or the previous
        # round's, warm) and the probe's head.
        start = None
        if warm_start is not None and cfg.warm_start and rungs:
            start = self._warm_start(str(warm_start), data, probe, device, report)
        warm = start is not None
        init = self._init_head(frozen, data, probe) if rungs and start is None else probe
        tuned: dict[str, PooledClassifier] = {}
        histories: dict[str, list[dict[str, float]]] = {}
        val_logits: dict[str, np.ndarray] = {}
        for rung in rungs:
            t0 = time.perf_counter()
            model = copy.deepcopy(start if start is not None else base)
            if cfg.lp_init and start is None:
                _set_head(model, init.weight, init.bias)
            trainer = encoder_trainer or fine_tune
            extra = {"warm": True} if start is not None else {}
            model, history = trainer(model, rung, data=data, config=cfg, labels=self.labels,
                                     report=report, **extra)
            tuned[rung], histories[rung] = model, history
            candidates[rung] = {"seconds": round(time.perf_counter() - t0, 3), "warm": warm,
                                "epochs": sum(1 for h in history if h["epoch"] >= 0)}
            if len(val_idx):
                val_logits[rung], _ = forward_logits(
                    model, [data.ids[i] for i in val_idx], pad_id=pad_id,
                    batch_size=cfg.eval_batch_size, features=False)
                candidates[rung].update(self._validation(val_logits[rung], data))

        # The pick: a forced mode keeps its rung; auto keeps the deepest rung whose
        # validation score is within noise of the best (a fine-tuning rung is only fitted
        # once the label count warrants it; validation overrules it beyond noise).
        if cfg.mode == "auto":
            order = ["head", *rungs]
            scores = {r: float(candidates[r].get("val_score", -1.0)) for r in order}
            tolerance = validation_noise(max(scores.values()), len(val_idx))
            pick = [r for r in order if scores[r] >= max(scores.values()) - tolerance][-1]
            candidates["head"]["tolerance"] = round(tolerance, 4)
        else:
            pick = rungs[0] if rungs else "head"

        if keep_candidates:
            self.candidates_ = {
                rung: self._finished(m, fit_temperature(
                    val_logits[rung], targets[val_idx], task=cfg.task))
                for rung, m in tuned.items() if rung in val_logits}
        if len(probe_rows) < len(targets):
            # The probe was fitted on the training split to be compared; as the model (or
            # as the baseline beside a fine-tuned one) it keeps every label.
            probe = fit_linear_head(
                frozen, targets, n_labels=k, labels=self.labels,
                task=cfg.task, class_weighting=cfg.class_weighting,
                C=probe.C, seed=cfg.seed, out_of_fold=pick == "head",
            )
        self.probe_ = probe
        refit: dict[str, Any] | None = None
        if pick == "head":
            model = base
            _set_head(model, probe.weight, probe.bias)
            held_logits, held_targets = probe.oof_logits, targets
            calibration_on = "cross-validation"
        else:
            model = tuned[pick]
            held_logits, held_targets = val_logits.get(pick), targets[val_idx]
            calibration_on = "validation"
            steps = refit_steps(histories[pick], len(train_idx), len(targets))
            if refits(cfg, len(targets)) and len(val_idx) and steps:
                del tuned
                t0 = time.perf_counter()
                model = self._refit(pick, steps, start=start, base=base, frozen=frozen,
                                    data=data, probe=probe,
                                    trainer=encoder_trainer or fine_tune, report=report)
                refit = {"steps": steps, "n": int(len(targets)),
                         "seconds": round(time.perf_counter() - t0, 3)}
        tuned = {}
        return self._conclude(
            model, pick, held_logits, held_targets, calibration_on, targets=targets,
            texts=texts, doc_ids=doc_ids, started=started, device=device, report=report,
            record={"n_train": int(len(train_idx)), "n_validation": int(len(val_idx)),
                    "history": histories.get(pick, []),
                    "ladder": {"mode": cfg.mode, "pick": pick, "candidates": candidates,
                               "refit": refit}})

    def _conclude(self, model: PooledClassifier, pick: str, held_logits: np.ndarray | None,
                  held_targets: np.ndarray, calibration_on: str, *, targets: np.ndarray,
                  texts: Sequence[str], doc_ids: Sequence[Any] | None, started: float,
                  device: torch.device, report: ProgressFn, record: dict[str, Any]
                  ) -> TextClassifier:
        """Keeps ``model`` (the ladder's ``pick``), calibrates it on the held-out logits
        and records the fit."""
        self.rung_ = pick
        model.eval()
        self.model_ = model
        calibration, validation = self._calibrate(held_logits, held_targets, report)
        calibration["on"] = calibration_on
        names = self._label_names(targets)
        self.classes_ = list(self.labels)
        self.data_fingerprint_ = data_fingerprint(
            list(doc_ids) if doc_ids is not None else text_ids(texts), names
        )
        self.metrics_: dict[str, Any] = {
            "n_train": record["n_train"],
            "n_validation": record["n_validation"],
            "validation": validation,
            "history": record["history"],
            "ladder": record["ladder"],
            "calibration": calibration,
            "fit_seconds": round(time.perf_counter() - started, 3),
            "device": str(device),
        }
        return self

    def _fit_crossfitted(
        self, rungs: list[str], *, data: FitData, frozen: np.ndarray, probe: LinearHead,
        base: PooledClassifier, candidates: dict[str, dict[str, Any]],
        trainer: EncoderTrainer, report: ProgressFn, doc_ids: Sequence[Any] | None,
        texts: Sequence[str], started: float, device: torch.device,
    ) -> TextClassifier:
        """The ladder on few labels (``crossfits``): each fine-tuning rung is trained once
        per fold and scored on the fold it did not see, so the rung choice and the
        temperature rest on out-of-fold logits of every label; the head is scored on its
        own cross-validated logits. The rung kept is then trained again on every label
        for the mean number of epochs the folds kept."""
        cfg, k, n = self.config, len(self.labels), len(data.targets)
        targets = data.targets
        # The probe was fitted on every label with its out-of-fold logits kept.
        assert probe.oof_logits is not None
        probe_oof: np.ndarray = probe.oof_logits
        folds = _folds(targets, cfg.crossfit_folds, cfg.seed)
        head_score, head_loss = score_logits(targets, probe_oof, self.labels,
                                             task=cfg.task)
        candidates["head"].update(val_score=round(head_score, 4), val_loss=round(head_loss, 4))
        oof: dict[str, np.ndarray] = {}
        kept: dict[str, list[int]] = {}
        histories: dict[str, list[dict[str, float]]] = {}
        n_fit = [len(train_rows) for train_rows, _ in folds]
        for rung in rungs:
            t0 = time.perf_counter()
            oof[rung], kept[rung] = np.zeros((n, k)), []
            epochs = []
            for i, (train_rows, val_rows) in enumerate(folds):
                fold = FitData(data.ids, targets, train_rows, val_rows, data.pad_id)
                model = copy.deepcopy(base)
                if cfg.lp_init:
                    init = fit_linear_head(
                        frozen[train_rows], targets[train_rows], n_labels=k,
                        labels=self.labels, task=cfg.task,
                        class_weighting=cfg.class_weighting, C=min(probe.C, LP_INIT_MAX_C),
                        seed=cfg.seed, out_of_fold=False)
                    _set_head(model, init.weight, init.bias)

                def fold_report(phase: str, step: int, total: int, i: int = i) -> None:
                    if phase == "train":
                        report(phase, i * total + step, len(folds) * total)
                    elif phase != "validate":
                        report(phase, step, total)

                model, history = trainer(model, rung, data=fold, config=cfg,
                                         labels=self.labels, report=fold_report)
                oof[rung][val_rows], _ = forward_logits(
                    model, [data.ids[j] for j in val_rows], pad_id=data.pad_id,
                    batch_size=cfg.eval_batch_size, features=False)
                kept[rung].append(refit_steps(history, 1, 1))
                epochs.append(sum(1 for h in history if h["epoch"] >= 0))
                histories.setdefault(rung, history)
                del model
            score, loss = score_logits(targets, oof[rung], self.labels,
                                       task=cfg.task)
            candidates[rung] = {"seconds": round(time.perf_counter() - t0, 3), "warm": False,
                                "epochs": round(float(np.mean(epochs)), 1),
                                "folds": len(folds), "val_score": round(score, 4),
                                "val_loss": round(loss, 4)}

        # The pick, as on a validation split, but the noise is that of all n labels.
        if cfg.mode == "auto":
            order = ["head", *rungs]
            scores = {r: float(candidates[r]["val_score"]) for r in order}
            tolerance = validation_noise(max(scores.values()), n)
            pick = [r for r in order if scores[r] >= max(scores.values()) - tolerance][-1]
            candidates["head"]["tolerance"] = round(tolerance, 4)
        else:
            pick = rungs[0]
        steps = 0
        if pick != "head":
            steps = math.ceil(float(np.mean(kept[pick])) * n / float(np.mean(n_fit)))
        refit: dict[str, Any] | None = None
        if steps:
            t0 = time.perf_counter()
            model = self._refit(pick, steps, start=None, base=base, frozen=frozen, data=data,
                                probe=probe, trainer=trainer, report=report)
            refit = {"steps": steps, "n": n, "seconds": round(time.perf_counter() - t0, 3)}
            held_logits = oof[pick]
        else:
            # No fold's fine-tuning beat the probe it started from: the probe it is.
            pick, model = "head", base
            _set_head(model, probe.weight, probe.bias)
            held_logits = probe_oof
        self.probe_ = probe
        return self._conclude(
            model, pick, held_logits, targets, "out-of-fold", targets=targets, texts=texts,
            doc_ids=doc_ids, started=started, device=device, report=report,
            record={"n_train": n, "n_validation": n, "history": histories.get(pick, []),
                    "ladder": {"mode": cfg.mode, "pick": pick, "candidates": candidates,
                               "refit": refit, "folds": len(folds)}})

    def probe_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, k) probabilities of the linear probe on the frozen base encoder, fitted on
        the same labels: the frozen-embedding baseline a round is compared with (it is
        the model itself when the ladder kept the head)."""
        self._check_fitted()
        base, _ = build_model(self.config, len(self.labels))
        base.to(next(self.model_.parameters()).device)
        ids = self._ids(texts)
        _, vectors = forward_logits(base, ids, pad_id=self._pad_id,
                                    batch_size=self.config.eval_batch_size)
        return self.config.task.activate(self.probe_.logits(vectors))

    def _features(self, model: PooledClassifier, data: FitData, report: ProgressFn
                  ) -> np.ndarray:
        return forward_logits(
            model, data.ids, pad_id=data.pad_id, batch_size=self.config.eval_batch_size,
            report=lambda step, total: report("features", step, total),
        )[1]

    def _validation(self, logits: np.ndarray, data: FitData) -> dict[str, float]:
        score, loss = score_logits(data.targets[data.val_idx], logits, self.labels,
                                   task=self.config.task)
        return {"val_score": round(score, 4), "val_loss": round(loss, 4)}

    def _init_head(self, frozen: np.ndarray, data: FitData, probe: LinearHead) -> LinearHead:
        """The head fine-tuning starts from: the probe, or, when cross-validation chose a
        weakly regularised probe, one refitted at ``LP_INIT_MAX_C``. A probe that fits its
        training labels perfectly (C of 30 or 100 on a few hundred unit-length vectors)
        leaves the loss near zero, and fine-tuning from it learns almost nothing."""
        if probe.C <= LP_INIT_MAX_C:
            return probe
        cfg = self.config
        return fit_linear_head(
            frozen[data.train_idx], data.targets[data.train_idx], n_labels=len(self.labels),
            labels=self.labels, task=cfg.task,
            class_weighting=cfg.class_weighting, C=LP_INIT_MAX_C, seed=cfg.seed,
            out_of_fold=False)

    def _warm_start(self, folder: str, data: FitData, probe: LinearHead,
                    device: torch.device, report: ProgressFn) -> PooledClassifier | None:
        """The previous round's encoder with a probe fitted on its own vectors of the
        training split (the label set may have changed since), or None when the folder is
        not a model of the same base (then the rungs start cold)."""
        try:
            meta = read_meta(folder)
            if meta["config"].get("model_name_or_path") != self.config.model_name_or_path:
                return None
            model, _ = build_model(self.config, len(self.labels), path=folder)
        except (OSError, ValueError, KeyError):
            return None
        model.to(device)
        vectors = self._features(model, data, report)[data.train_idx]
        warm_probe = fit_linear_head(
            vectors, data.targets[data.train_idx], n_labels=len(self.labels),
            labels=self.labels, task=self.config.task,
            class_weighting=self.config.class_weighting, C=min(probe.C, LP_INIT_MAX_C),
            seed=self.config.seed, out_of_fold=False,
        )
        _set_head(model, warm_probe.weight, warm_probe.bias)
        return model

    def _refit(self, rung: str, steps: int, *, start: PooledClassifier | None,
               base: PooledClassifier, frozen: np.ndarray, data: FitData, probe: LinearHead,
               trainer: EncoderTrainer, report: ProgressFn) -> PooledClassifier:
        """Rung ``rung`` trained again from its starting point on every label for
        ``steps`` optimizer steps, with no validation split left to stop it."""
        cfg = self.config
        everything = np.arange(len(data.targets))
        model = copy.deepcopy(start if start is not None else base)
        if cfg.lp_init and start is None:
            init = probe if probe.C <= LP_INIT_MAX_C else fit_linear_head(
                frozen, data.targets, n_labels=len(self.labels), labels=self.labels,
                task=cfg.task, class_weighting=cfg.class_weighting,
                C=LP_INIT_MAX_C, seed=cfg.seed, out_of_fold=False)
            _set_head(model, init.weight, init.bias)
        fixed = replace(cfg, epochs=None, min_steps=steps, max_steps=steps)
        whole = FitData(data.ids, data.targets, everything, everything[:0], data.pad_id)
        model, _ = trainer(
            model, rung, data=whole, config=fixed, labels=self.labels,
            report=lambda phase, step, total: report(
                "refit" if phase == "train" else phase, step, total))
        return model

    def _calibrate(self, held_logits: np.ndarray | None, held_targets: np.ndarray,
                   report: ProgressFn) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Fits the temperature (and the task's thresholds) on held-out logits; returns
        the calibration record and the held-out metrics after it."""
        cfg, k = self.config, len(self.labels)
        calibration: dict[str, Any] = {"temperature": 1.0}
        self.thresholds_: np.ndarray | None = cfg.task.default_thresholds(k)
        validation: dict[str, Any] | None = None
        if held_logits is not None and len(held_logits):
            report("calibrate", 0, 1)
            temperature = fit_temperature(held_logits, held_targets,
                                          task=cfg.task) if cfg.calibrate else 1.0
            calibrated = held_logits / temperature
            tuned = cfg.task.fit_thresholds(held_targets, cfg.task.activate(calibrated))
            if tuned is not None:
                self.thresholds_ = tuned
            cut = 0.5 if self.thresholds_ is None else self.thresholds_
            calibration.update(
                temperature=round(temperature, 5), n=int(len(held_logits)),
                ece_before=round(ece_of(held_logits, held_targets,
                                        task=cfg.task), 4),
                ece_after=round(ece_of(calibrated, held_targets, task=cfg.task,
                                       thresholds=cut), 4),
            )
            self.model_.temperature.fill_(temperature)
            validation = evaluate(held_targets, cfg.task.activate(calibrated),
                                  self.labels, task=cfg.task,
                                  thresholds=self.thresholds_)
            report("calibrate", 1, 1)
        self.temperature_ = float(self.model_.temperature)
        return calibration, validation

    def _finished(self, model: PooledClassifier, temperature: float) -> TextClassifier:
        """Another rung's model as a fitted classifier, calibrated on the validation split
        (single-label; benchmarks compare rungs with it)."""
        other = copy.copy(self)
        model.eval()
        other.model_, other.temperature_, other.thresholds_ = model, temperature, None
        return other

    # -- inference ------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("this TextClassifier is not fitted: call fit() or load()")

    def _ids(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        self._check_fitted()
        return tokenize_texts(texts, self.tokenizer_, max_length or self.config.max_length)

    @property
    def _pad_id(self) -> int:
        return self.tokenizer_.pad_token_id or 0

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float32) from raw logits."""
        return self.config.task.activate(logits / self.temperature_).astype(np.float32)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, k) float32, calibrated: softmax rows (single-label) or per-label sigmoids."""
        return self.proba_and_embed(texts)[0]

    def proba_and_embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        max_length: int | None = None,
        report: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(predict_proba(texts), embed(texts))`` from a single forward pass.

        ``batch_size`` / ``max_length`` override the config's ``eval_batch_size`` /
        ``max_length`` (a scorer may batch wider than training did); ``report(batch,
        batches)`` after each batch.
        """
        ids = self._ids(texts, max_length)
        logits, feats = forward_logits(self.model_, ids, pad_id=self._pad_id,
                                       batch_size=batch_size or self.config.eval_batch_size,
                                       report=report)
        return self.activate(logits), feats

    def logits(self, texts: Sequence[str], *,
               report: Callable[[int, int], None] | None = None) -> np.ndarray:
        """(n, k) raw logits (before the temperature); ``report(batch, batches)``."""
        ids = self._ids(texts)
        return forward_logits(self.model_, ids, pad_id=self._pad_id,
                              batch_size=self.config.eval_batch_size, features=False,
                              report=report)[0]

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The task's decoded predictions (``Task.decode``; ``thresholds_`` where it has
        them): (n,) label indices for single-label, (n, k) 0/1 for multi-label."""
        return self.config.task.decode(self.predict_proba(texts), self.thresholds_)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) float32: the pooled vector the head classifies."""
        return self.proba_and_embed(texts)[1]

    def mc_dropout_proba(
        self, texts: Sequence[str], n_samples: int = 10, seed: int = 0
    ) -> np.ndarray:
        """(n_samples, n, k) calibrated probabilities with dropout left on (for BALD).

        The global torch RNG is forked, so calling this does not disturb other code's
        random streams, and the same ``seed`` gives the same samples.
        """
        ids = self._ids(texts)
        out = np.zeros((n_samples, len(ids), len(self.labels)), dtype=np.float32)
        device = next(self.model_.parameters()).device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            for t in range(n_samples):
                torch.manual_seed(seed + t)
                logits, _ = forward_logits(self.model_, ids, pad_id=self._pad_id,
                                           batch_size=self.config.eval_batch_size,
                                           features=False, dropout=True)
                out[t] = self.activate(logits)
        return out

    # -- labels -----------------------------------------------------------------

    def _label_index(self, value: Any) -> int:
        if isinstance(value, str):
            return self.labels.index(value)
        index = int(value)
        if not 0 <= index < len(self.labels):
            raise ValueError(f"label index {index} out of range for {len(self.labels)} labels")
        return index

    def _targets(self, y: Any) -> np.ndarray:
        """The task's targets of ``y`` as ``fit`` takes it: per document a label (name or
        index) or a sequence of them, or an (n, k) 0/1 matrix."""
        k = len(self.labels)
        if isinstance(y, np.ndarray) and y.ndim == 2:
            if y.shape[1] != k:
                raise ValueError(f"y has {y.shape[1]} columns for {k} labels")
            lists = [np.flatnonzero(row > 0).tolist() for row in y]
        else:
            lists = [[self._label_index(v) for v in _members(value)] for value in y]
        return self.config.task.targets(lists, k)

    def _label_names(self, targets: np.ndarray) -> list[list[str]]:
        return [[self.labels[j] for j in row] for row in self.config.task.label_lists(targets)]

    # -- artifact -----------------------------------------------------------------

    def save(self, path: str | Path, *, metrics: dict[str, Any] | None = None) -> Path:
        """Write the model folder.

        The encoder (safetensors + ``config.json``) with its tokenizer and the
        sentence-transformers files naming its pooling (``modules.json``, ``1_Pooling``),
        so ``SentenceTransformer(folder)`` gives the vectors the head reads; the head and
        temperature in ``labelwise_head.safetensors``; ``labelwise.json`` (labels,
        TrainConfig, pooling, temperature, thresholds, metrics, data fingerprint).
        ``metrics`` (e.g. a holdout evaluation) are stored beside the fit's own.
        """
        from safetensors.torch import save_file

        self._check_fitted()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.model_.encoder.save_pretrained(out, safe_serialization=True)
        # Truncation at the round's max_length for anything that reads the tokenizer alone.
        self.tokenizer_.model_max_length = self.config.max_length
        self.tokenizer_.save_pretrained(out)
        hidden = int(self.model_.encoder.config.hidden_size)
        self.pooling_.write_sentence_transformers(out, hidden_size=hidden,
                                                  max_length=self.config.max_length)
        head = self.model_.head
        save_file({
            "weight": head.weight.detach().cpu().contiguous(),
            "bias": head.bias.detach().cpu().contiguous(),
            "temperature": self.model_.temperature.detach().cpu().reshape(1),
        }, str(out / HEAD_FILE))
        write_meta(out, {
            "labels": self.labels,
            "label2id": {label: i for i, label in enumerate(self.labels)},
            "task_type": self.config.task_type,
            "config": self.config.to_dict(),
            "pooling": self.pooling_.to_dict(),
            "temperature": self.temperature_,
            "rung": self.rung_,
            "metrics": {**self.metrics_, **(metrics or {})},
            "thresholds": (
                None if self.thresholds_ is None else [float(t) for t in self.thresholds_]
            ),
            "data_fingerprint": self.data_fingerprint_,
        })
        return out

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> TextClassifier:
        """Inverse of ``save``; ``device`` overrides the stored one (None: auto)."""
        from safetensors.torch import load_file

        meta = read_meta(path)
        config = TrainConfig.from_dict(meta["config"])
        clf = cls(config, meta["labels"])
        clf.tokenizer_ = AutoTokenizer.from_pretrained(str(path))
        clf.pooling_ = Pooling.from_dict(meta["pooling"])
        model = PooledClassifier.from_pretrained(str(path), clf.pooling_, len(clf.labels),
                                                 dropout=config.dropout)
        head = load_file(str(Path(path) / HEAD_FILE))
        _set_head(model, head["weight"].numpy(), head["bias"].numpy())
        model.temperature.fill_(float(head["temperature"][0]))
        clf.model_ = model.to(pick_device(device or config.device)).eval()
        clf.temperature_ = float(model.temperature)
        thresholds = meta.get("thresholds")
        clf.thresholds_ = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        clf.rung_ = meta.get("rung", config.mode)
        clf.metrics_ = meta.get("metrics", {})
        clf.data_fingerprint_ = meta["data_fingerprint"]
        clf.classes_ = list(clf.labels)
        return clf


def _members(value: Any) -> list[Any]:
    """One document's labels as a list: a lone name or index is a list of one."""
    if isinstance(value, str) or np.ndim(value) == 0:
        return [value]
    return list(value)


def _set_head(model: PooledClassifier, weight: np.ndarray, bias: np.ndarray) -> None:
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(np.asarray(weight), dtype=torch.float32))
        model.head.bias.copy_(torch.as_tensor(np.asarray(bias), dtype=torch.float32))
