"""Fine-tune a transformer text classifier, in the scikit-learn shape.

``TextClassifier(config, labels).fit(texts, y)`` reads top to bottom: seed, data
(tokenize once, length-bucketed dynamic-padding batches), model, optimizer (AdamW; no
weight decay on biases and LayerNorm; layer-wise learning-rate decay; a separate head
learning rate), linear warmup then linear decay, train with early stopping on a
validation split, evaluate under ``torch.inference_mode()`` with ``model.eval()``.
``save()`` writes a folder plain ``transformers`` can load, with ``labelwise.json`` beside.

Modes (``TrainConfig.mode``):

- ``full``: every weight trains.
- ``head``: the encoder is frozen, so features are computed once and only the final
  linear layer trains, on the cached features: an L2-regularised logistic regression
  fitted by full-batch L-BFGS (seconds instead of minutes on CPU).
- ``gradual``: ULMFiT-style unfreezing: epoch 0 trains the head (pooler + classifier),
  each later epoch unfreezes one more encoder layer from the top, the embeddings last.
- ``lora``: low-rank adapters on attention query/value (peft) plus a trainable head;
  the adapters are merged into the weights after training, so the saved model is plain.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from learner.ml.artifact import data_fingerprint, read_meta, text_ids, write_meta
from learner.ml.config import TrainConfig
from learner.ml.encoder import bucketed_batches, default_model_path, pad_batch, pick_device
from learner.ml.encoder import tokenize as tokenize_texts
from learner.ml.evaluate import evaluate

__all__ = [
    "ProgressFn",
    "TextClassifier",
    "class_weights",
    "data_fingerprint",
    "pos_weights",
    "param_groups",
    "seed_everything",
    "train_validation_split",
    "tune_thresholds",
    "warmup_linear_decay",
]

ProgressFn = Callable[[str, int, int], None]
"""``progress(phase, step, total)``; phases: "features", "train", "validate"."""

_LAYER_RE = re.compile(r"\.layers?\.(\d+)\.")


# --------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a fit is repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced single-label weights ``n / (k * count_c)``, float32 (k,).

    Classes absent from ``y`` get 1.0 (no example carries them, so the value is unused).
    Cross-entropy with ``weight=`` and mean reduction divides by the summed weights, so
    only the ratios matter.
    """
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    weights = np.ones(n_classes, dtype=np.float64)
    present = counts > 0
    weights[present] = counts.sum() / (n_classes * counts[present])
    return weights.astype(np.float32)


def pos_weights(Y: np.ndarray, max_weight: float = 100.0) -> np.ndarray:
    """Multi-label BCE ``pos_weight`` per label: ``negatives / positives``, float32 (k,).

    Labels with no positive (or no negative) example get 1.0; the cap keeps one rare
    label from dominating the loss.
    """
    Y = np.asarray(Y, dtype=np.float64)
    pos = Y.sum(axis=0)
    neg = len(Y) - pos
    weights = np.ones(Y.shape[1], dtype=np.float64)
    ok = (pos > 0) & (neg > 0)
    weights[ok] = np.minimum(neg[ok] / pos[ok], max_weight)
    return weights.astype(np.float32)


def warmup_linear_decay(step: int, *, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier: 0 -> 1 linearly over the warmup, then 1 -> 0 at the end."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    remaining = total_steps - step
    return max(0.0, remaining / max(1, total_steps - warmup_steps))


def _warmup_scheduler(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_linear_decay(step, warmup_steps=warmup, total_steps=total_steps),
    )


def train_validation_split(
    y: np.ndarray, *, fraction: float, seed: int, min_examples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation). Empty validation when the data is too small.

    Single-label (1-D ``y``) is stratified: each class gives ``round(fraction * count)``
    examples, always keeping at least one in training. Multi-label (2-D) splits at
    random: iterative stratification is not worth its complexity at these sizes.
    """
    n = len(y)
    everything = np.arange(n)
    if fraction <= 0 or n < min_examples:
        return everything, everything[:0]
    rng = np.random.default_rng(seed)
    if y.ndim == 2:
        perm = rng.permutation(n)
        n_val = max(1, int(round(fraction * n)))
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    val: list[int] = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        val.extend(members[: min(int(round(fraction * len(members))), len(members) - 1)])
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(everything, val_idx), val_idx


def tune_thresholds(
    Y: np.ndarray, probs: np.ndarray, grid: np.ndarray | None = None
) -> np.ndarray:
    """Per-label decision threshold maximising that label's F1 on (Y, probs), (k,).

    Ties go to the threshold nearest 0.5; labels without a positive example keep 0.5.
    """
    grid = np.linspace(0.05, 0.95, 19) if grid is None else grid
    thresholds = np.full(Y.shape[1], 0.5)
    for j in range(Y.shape[1]):
        truth = Y[:, j] > 0.5
        if not truth.any():
            continue
        pred = probs[:, j][None, :] >= grid[:, None]  # (g, n)
        tp = (pred & truth).sum(axis=1)
        f1 = 2 * tp / np.maximum(pred.sum(axis=1) + truth.sum(), 1)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        thresholds[j] = grid[best[np.argmin(np.abs(grid[best] - 0.5))]]
    return thresholds


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


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups: (depth x decay/no-decay), each with its own lr.

    Head (pooler + classifier): ``head_learning_rate``. Encoder layer ``i`` of ``L``
    (1-based): ``base * layer_lr_decay ** (L - i)``; embeddings ``base * decay ** L``.
    ``base`` is ``learning_rate``, or ``lora_learning_rate`` for LoRA (the adapters start
    at zero, so no layer decay there). Frozen parameters are included on purpose so
    gradual unfreezing needs no new optimizer; AdamW skips parameters without gradient.
    Each group carries a ``name`` like ``"layer_3/no_decay"`` for logs and tests.
    """
    n_layers = int(getattr(_unwrap(model).config, "num_hidden_layers", 0))
    lora = config.mode == "lora"
    base = config.lora_learning_rate if lora else config.learning_rate
    decay = 1.0 if lora else config.layer_lr_decay
    buckets: dict[tuple[int, bool], list[torch.Tensor]] = {}
    for name, param in model.named_parameters():
        if lora and not param.requires_grad:
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


def _unwrap(model: nn.Module) -> Any:
    """The transformers model inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _final_linear(model: nn.Module) -> nn.Module:
    """The last linear layer of the classification head: its input is the pooled text.

    Matched by its ``in_features`` attribute rather than by class, so a dynamically
    quantized ``Linear`` (not an ``nn.Linear`` subclass) is found too.
    """
    head = _unwrap(model).classifier
    if hasattr(head, "in_features"):
        return head
    linears = [m for m in head.modules() if hasattr(m, "in_features")]
    if not linears:
        raise TypeError(f"no nn.Linear in the classification head {type(head).__name__}")
    return linears[-1]


def _set_gradual_trainable(model: nn.Module, epoch: int) -> None:
    """ULMFiT schedule: head always; top ``epoch`` encoder layers; embeddings last."""
    n_layers = int(_unwrap(model).config.num_hidden_layers)
    for name, param in model.named_parameters():
        depth = _layer_of(name, n_layers)
        if depth == n_layers + 1:
            param.requires_grad_(True)
        elif depth == 0:
            param.requires_grad_(epoch > n_layers)
        else:
            param.requires_grad_(depth > n_layers - epoch)


# --------------------------------------------------------------------------- classifier


class TextClassifier:
    """A fine-tuned transformer classifier with the scikit-learn shape.

    ``y`` for ``fit``: single-label, a sequence of label indices (or label names);
    multi-label, an (n, k) 0/1 array, or a list with one sequence of label indices
    (or names) per text. Learned attributes end in ``_``.
    """

    def __init__(self, config: TrainConfig, labels: Sequence[str]) -> None:
        self.config = config
        self.labels = list(labels)

    # -- fit ----------------------------------------------------------------

    def fit(
        self,
        texts: Sequence[str],
        y: Any,
        *,
        doc_ids: Sequence[Any] | None = None,
        progress: ProgressFn | None = None,
    ) -> TextClassifier:
        cfg, k = self.config, len(self.labels)
        started = time.perf_counter()
        report: ProgressFn = progress or (lambda phase, step, total: None)
        if len(self.labels) < 2 and not cfg.multi_label:
            raise ValueError("single-label classification needs at least two labels")

        # Seed before the model is built: the new classifier layer's init is random.
        seed_everything(cfg.seed)

        # Data: targets, one tokenization, a validation split carved from the labels.
        targets = self._targets(y)
        if len(targets) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(targets)} targets")
        device = pick_device(cfg.device)
        path = cfg.model_name_or_path or default_model_path()
        tokenizer = AutoTokenizer.from_pretrained(path)
        ids = tokenize_texts(texts, tokenizer, cfg.max_length)
        train_idx, val_idx = train_validation_split(
            targets, fraction=cfg.validation_fraction, seed=cfg.seed,
            min_examples=cfg.min_examples_for_validation,
        )
        # Class weights come from the training split only: the validation split must
        # not shape the loss it is used to judge.
        weight: torch.Tensor | None = None
        if cfg.multi_label:
            if cfg.class_weighting:
                weight = torch.as_tensor(pos_weights(targets[train_idx]))
            loss_fn: nn.Module = nn.BCEWithLogitsLoss(pos_weight=weight)
            target_tensor = torch.as_tensor(targets, dtype=torch.float32)
        else:
            if cfg.class_weighting:
                weight = torch.as_tensor(class_weights(targets[train_idx], k))
            loss_fn = nn.CrossEntropyLoss(weight=weight)
            target_tensor = torch.as_tensor(targets, dtype=torch.long)
        loss_fn.to(device)

        # Model: the pretrained encoder plus a new classification head.
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=k,
            id2label=dict(enumerate(self.labels)),
            label2id={label: i for i, label in enumerate(self.labels)},
            problem_type=(
                "multi_label_classification" if cfg.multi_label else "single_label_classification"
            ),
        ).to(device)
        self.tokenizer_ = tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        if cfg.mode == "head":
            history = self._fit_head(model, ids, pad_id, target_tensor, train_idx, val_idx,
                                     loss_fn, device, report)
        else:
            model, history = self._fit_encoder(model, ids, pad_id, target_tensor, train_idx,
                                               val_idx, loss_fn, device, report)
        model.eval()
        self.model_ = model

        # Evaluate on the validation split with the final (best) weights.
        self.thresholds_: np.ndarray | None = None
        validation: dict[str, Any] | None = None
        if len(val_idx):
            val_probs = self._proba_ids([ids[i] for i in val_idx])[0]
            val_true = targets[val_idx]
            if cfg.multi_label:
                self.thresholds_ = tune_thresholds(val_true, val_probs)
            validation = evaluate(val_true, val_probs, self.labels, multi_label=cfg.multi_label,
                                  thresholds=self.thresholds_)
        elif cfg.multi_label:
            self.thresholds_ = np.full(k, 0.5)

        names = self._label_names(targets)
        self.classes_ = list(self.labels)
        self.data_fingerprint_ = data_fingerprint(
            list(doc_ids) if doc_ids is not None else text_ids(texts), names
        )
        self.metrics_: dict[str, Any] = {
            "n_train": int(len(train_idx)),
            "n_validation": int(len(val_idx)),
            "validation": validation,
            "history": history,
            "fit_seconds": round(time.perf_counter() - started, 3),
            "device": str(device),
        }
        return self

    def _fit_encoder(
        self,
        model: nn.Module,
        ids: list[list[int]],
        pad_id: int,
        targets: torch.Tensor,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        loss_fn: nn.Module,
        device: torch.device,
        report: ProgressFn,
    ) -> tuple[nn.Module, list[dict[str, float]]]:
        """full / gradual / lora: backprop through the encoder, early-stop per epoch."""
        cfg = self.config
        if cfg.mode == "lora":
            from peft import LoraConfig, TaskType, get_peft_model

            model = get_peft_model(model, LoraConfig(
                task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout, target_modules=["query", "value"],
                modules_to_save=["classifier", "pooler"],
            ))
        optimizer = torch.optim.AdamW(param_groups(model, cfg))
        steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        scheduler = _warmup_scheduler(optimizer, total_steps=total, warmup_ratio=cfg.warmup_ratio)
        train_lengths = [len(ids[i]) for i in train_idx]

        history: list[dict[str, float]] = []
        best: tuple[float, float] | None = None
        best_state: dict[str, torch.Tensor] | None = None
        stale, step = 0, 0
        for epoch in range(cfg.epochs):
            if cfg.mode == "gradual":
                _set_gradual_trainable(model, epoch)
            model.train()
            running = 0.0
            for batch_pos in bucketed_batches(train_lengths, cfg.batch_size, shuffle=True,
                                              seed=cfg.seed + epoch):
                rows = train_idx[batch_pos]
                batch = pad_batch([ids[i] for i in rows], pad_id, device)
                logits = model(**batch).logits
                loss = loss_fn(logits, targets[rows].to(device))
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                running += float(loss.detach())
                step += 1
                report("train", step, total)
            record = {"epoch": float(epoch), "train_loss": running / max(1, steps_per_epoch)}

            if len(val_idx):
                score, val_loss = self._validation_score(model, ids, pad_id, targets, val_idx,
                                                         loss_fn, device)
                record.update(val_score=score, val_loss=val_loss)
                report("validate", epoch + 1, cfg.epochs)
                if best is None or (score, -val_loss) > best:
                    best, stale = (score, -val_loss), 0
                    best_state = {n: t.detach().to("cpu", copy=True)
                                  for n, t in model.state_dict().items()}
                else:
                    stale += 1
            history.append(record)
            if len(val_idx) and stale >= cfg.early_stopping_patience:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        if cfg.mode == "gradual":
            for param in model.parameters():
                param.requires_grad_(True)
        if cfg.mode == "lora":
            model = model.merge_and_unload()  # type: ignore[operator]
        return model, history

    def _fit_head(
        self,
        model: nn.Module,
        ids: list[list[int]],
        pad_id: int,
        targets: torch.Tensor,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        loss_fn: nn.Module,
        device: torch.device,
        report: ProgressFn,
    ) -> list[dict[str, float]]:
        """Frozen encoder: featurize once, then train only the final linear layer."""
        cfg = self.config
        for param in model.parameters():
            param.requires_grad_(False)
        head = _final_linear(model)
        if not isinstance(head, nn.Linear):
            raise TypeError(f"head mode needs an nn.Linear classifier, got {type(head)}")
        for param in head.parameters():
            param.requires_grad_(True)
        features = torch.as_tensor(self._forward(model, ids, pad_id, report=report)[1],
                                   device=device)
        targets = targets.to(device)
        train_rows = torch.as_tensor(train_idx, device=device)
        x, y = features[train_rows], targets[train_rows]

        # On frozen features the head is a (multinomial or per-label) logistic regression:
        # a convex problem, so full-batch L-BFGS reaches its optimum in well under a
        # second with no learning rate, epochs or early stopping to tune, and the fit is
        # deterministic. L2 on the weights (not the bias) with sklearn's meaning of C:
        # minimise mean loss + ||W||^2 / (2 C n).
        l2 = 1.0 / (cfg.head_c * max(1, len(train_rows)))
        optimizer = torch.optim.LBFGS(
            [head.weight, head.bias], lr=1.0, max_iter=cfg.head_max_iter, history_size=20,
            tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe",
        )
        evaluations, last_loss = 0, float("nan")

        def closure() -> torch.Tensor:
            nonlocal evaluations, last_loss
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(head(x), y) + 0.5 * l2 * head.weight.pow(2).sum()
            loss.backward()
            evaluations, last_loss = evaluations + 1, float(loss.detach())
            report("train", min(evaluations, cfg.head_max_iter), cfg.head_max_iter)
            return loss

        optimizer.step(closure)
        report("train", cfg.head_max_iter, cfg.head_max_iter)
        record = {"epoch": 0.0, "train_loss": last_loss, "lbfgs_evaluations": float(evaluations)}
        if len(val_idx):
            with torch.inference_mode():
                logits = head(features[torch.as_tensor(val_idx, device=device)])
                record["val_loss"] = float(loss_fn(logits, targets[val_idx]))
                probs = self._activate(logits).float().cpu().numpy()
            record["val_score"] = self._score(targets[val_idx].cpu().numpy(), probs)
        return [record]

    def _validation_score(
        self,
        model: nn.Module,
        ids: list[list[int]],
        pad_id: int,
        targets: torch.Tensor,
        val_idx: np.ndarray,
        loss_fn: nn.Module,
        device: torch.device,
    ) -> tuple[float, float]:
        """(score, loss) on the validation split; score is macro-F1 (micro for multi)."""
        logits = self._forward(model, [ids[i] for i in val_idx], pad_id, logits_only=True)[0]
        logits_t = torch.as_tensor(logits, device=device)
        with torch.inference_mode():
            val_loss = float(loss_fn(logits_t, targets[val_idx].to(device)))
            probs = self._activate(logits_t).float().cpu().numpy()
        return self._score(targets[val_idx].cpu().numpy(), probs), val_loss

    def _score(self, truth: np.ndarray, probs: np.ndarray) -> float:
        # Macro-F1 rather than accuracy: on imbalanced labels accuracy rewards ignoring
        # the rare classes, which are the ones active learning is trying to find.
        result = evaluate(truth, probs, self.labels, multi_label=self.config.multi_label)
        return float(result["micro_f1"] if self.config.multi_label else result["macro_f1"])

    # -- inference ------------------------------------------------------------

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.config.multi_label else torch.softmax(logits, dim=-1)

    def _forward(
        self,
        model: nn.Module,
        ids: list[list[int]],
        pad_id: int,
        *,
        logits_only: bool = False,
        dropout: bool = False,
        report: ProgressFn | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(logits (n, k), features (n, d)) in input order, one pass over the model.

        Features are the input of the head's final linear layer (for BERT: the pooler
        output), caught with a forward hook so any ``...ForSequenceClassification``
        works. ``dropout=True`` keeps dropout active (MC dropout); gradients are off.
        """
        head: Any = _final_linear(model)  # nn.Linear, or a quantized Linear
        device = next(model.parameters()).device
        n, k = len(ids), len(self.labels)
        logits_out = np.zeros((n, k), dtype=np.float32)
        width = 0 if logits_only else int(head.in_features)
        feats_out = np.zeros((n, width), dtype=np.float32)
        caught: list[torch.Tensor] = []
        hook = None if logits_only else head.register_forward_hook(
            lambda module, inputs, output: caught.append(inputs[0])
        )
        was_training = model.training
        model.train(dropout)
        batches = list(bucketed_batches([len(x) for x in ids],
                                        batch_size or self.config.eval_batch_size))
        try:
            with torch.inference_mode():
                for b, idx in enumerate(batches):
                    batch = pad_batch([ids[i] for i in idx], pad_id, device)
                    logits_out[idx] = model(**batch).logits.float().cpu().numpy()
                    if hook is not None:
                        feats_out[idx] = caught.pop().float().cpu().numpy()
                    if report is not None:
                        report("features", b + 1, len(batches))
        finally:
            if hook is not None:
                hook.remove()
            model.train(was_training)
        return logits_out, feats_out

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("this TextClassifier is not fitted: call fit() or load()")

    def _ids(self, texts: Sequence[str], max_length: int | None = None
             ) -> tuple[list[list[int]], int]:
        self._check_fitted()
        pad_id = self.tokenizer_.pad_token_id
        ids = tokenize_texts(texts, self.tokenizer_, max_length or self.config.max_length)
        return ids, pad_id or 0

    def _proba_ids(self, ids: list[list[int]], batch_size: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        pad_id = self.tokenizer_.pad_token_id or 0
        logits, feats = self._forward(self.model_, ids, pad_id, batch_size=batch_size)
        return self._activate(torch.from_numpy(logits)).numpy(), feats

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, k) float32: softmax rows (single-label) or per-label sigmoids (multi)."""
        return self.proba_and_embed(texts)[0]

    def proba_and_embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        max_length: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(predict_proba(texts), embed(texts))`` from a single forward pass.

        ``batch_size`` / ``max_length`` override the config's ``eval_batch_size`` /
        ``max_length`` (a scorer may batch wider than training did).
        """
        ids, _ = self._ids(texts, max_length)
        return self._proba_ids(ids, batch_size)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Single-label: (n,) label indices. Multi-label: (n, k) 0/1 via ``thresholds_``."""
        probs = self.predict_proba(texts)
        if self.config.multi_label:
            thresholds = self.thresholds_ if self.thresholds_ is not None else 0.5
            return (probs >= thresholds).astype(np.int64)
        return probs.argmax(axis=1)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) float32: the pooled representation the fine-tuned head classifies."""
        return self.proba_and_embed(texts)[1]

    def mc_dropout_proba(
        self, texts: Sequence[str], n_samples: int = 10, seed: int = 0
    ) -> np.ndarray:
        """(n_samples, n, k) probabilities with dropout left on (for BALD).

        The global torch RNG is forked, so calling this does not disturb other code's
        random streams, and the same ``seed`` gives the same samples.
        """
        ids, pad_id = self._ids(texts)
        out = np.zeros((n_samples, len(ids), len(self.labels)), dtype=np.float32)
        devices = [d for d in [next(self.model_.parameters()).device] if d.type == "cuda"]
        with torch.random.fork_rng(devices=devices):
            for t in range(n_samples):
                torch.manual_seed(seed + t)
                logits, _ = self._forward(self.model_, ids, pad_id, logits_only=True,
                                          dropout=True)
                out[t] = self._activate(torch.from_numpy(logits)).numpy()
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
        """(n,) int64 for single-label; (n, k) float32 indicator matrix for multi-label."""
        k = len(self.labels)
        if not self.config.multi_label:
            return np.asarray([self._label_index(v) for v in y], dtype=np.int64)
        if isinstance(y, np.ndarray) and y.ndim == 2:
            if y.shape[1] != k:
                raise ValueError(f"y has {y.shape[1]} columns for {k} labels")
            return (y > 0).astype(np.float32)
        matrix = np.zeros((len(y), k), dtype=np.float32)
        for row, members in enumerate(y):
            for value in members:
                matrix[row, self._label_index(value)] = 1.0
        return matrix

    def _label_names(self, targets: np.ndarray) -> list[Any]:
        if targets.ndim == 1:
            return [self.labels[i] for i in targets]
        return [[self.labels[j] for j in np.flatnonzero(row)] for row in targets]

    # -- artifact -----------------------------------------------------------------

    def save(self, path: str | Path, *, metrics: dict[str, Any] | None = None) -> Path:
        """Write a folder that ``AutoModelForSequenceClassification`` loads as is.

        Safetensors weights + ``config.json`` (with ``id2label``), the tokenizer, and
        ``labelwise.json`` (labels, TrainConfig, metrics, thresholds, data fingerprint).
        ``metrics`` (e.g. a holdout evaluation) are stored beside the fit's own.
        """
        self._check_fitted()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(out, safe_serialization=True)
        self.tokenizer_.save_pretrained(out)
        write_meta(out, {
            "labels": self.labels,
            "label2id": {label: i for i, label in enumerate(self.labels)},
            "multi_label": self.config.multi_label,
            "config": self.config.to_dict(),
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
        meta = read_meta(path)
        config = TrainConfig.from_dict(meta["config"])
        clf = cls(config, meta["labels"])
        clf.tokenizer_ = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForSequenceClassification.from_pretrained(str(path))
        clf.model_ = model.to(pick_device(device or config.device)).eval()
        thresholds = meta.get("thresholds")
        clf.thresholds_ = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        clf.metrics_ = meta.get("metrics", {})
        clf.data_fingerprint_ = meta["data_fingerprint"]
        clf.classes_ = list(clf.labels)
        return clf
