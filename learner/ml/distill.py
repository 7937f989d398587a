"""Distil a fitted classifier into a smaller one for serving.

``student_from(teacher, layers=...)`` copies the teacher's network and keeps only some of
its encoder's transformer layers (every other one by default, the top one included), with
the teacher's embeddings, pooling, head and temperature: a classifier of the same family
and tokenizer that already predicts something sensible. ``Distiller(config).fit(teacher,
pool_texts, labelled_texts, labels)`` then trains it on the unlabelled pool to give the
teacher's temperature-softened probabilities (KL divergence), plus cross-entropy on the
labelled texts where they are given, and fits the student's own temperature. The result,
``student_``, is an ordinary fitted ``TextClassifier``: it saves, loads, scores and exports
to ONNX as any round's model does.

The layer list is found by reading the model, not by its attribute names: it is the
encoder's ``nn.ModuleList`` whose length is the config's ``num_hidden_layers`` (BERT's
``encoder.layer``, DistilBERT's ``transformer.layer``, ModernBERT's ``layers``), and the
config is told the new count, so ``save_pretrained`` writes a folder ``AutoModel`` loads
as a smaller model of the same architecture.

Layer dropping (DistilBERT's initialisation, Sanh et al. 2019; "every other layer" is
also what Sajjad et al. 2023 found as good as any cleverer choice) was chosen over a
separately installed small encoder because it needs nothing the operator must download:
the student shares the teacher's tokenizer and starts from its weights.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from learner.ml.calibration import fit_temperature, match_temperature
from learner.ml.config import DistillConfig
from learner.ml.encoder import pick_device
from learner.ml.encoder import tokenize as tokenize_texts
from learner.ml.evaluate import evaluate
from learner.ml.tasks import Task
from learner.ml.train import (
    ProgressFn,
    TextClassifier,
    param_groups,
    seed_everything,
    train_epoch,
)

__all__ = ["DistillLoss", "Distiller", "every_other_layer", "layer_list",
           "student_from"]


def every_other_layer(n_layers: int) -> tuple[int, ...]:
    """Indices of every other layer of ``n_layers``, counted down from the top one (which
    is kept: the pooling and the head read its output): 6 -> (1, 3, 5); 1 -> (0,)."""
    return tuple(range(n_layers - 1, -1, -2))[::-1]


def layer_list(encoder: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """(parent module, attribute name, the list) of the encoder's transformer layers: the
    first ``nn.ModuleList`` of ``num_hidden_layers`` modules of one class."""
    n = int(getattr(encoder.config, "num_hidden_layers", 0))
    for name, module in encoder.named_modules():
        if (isinstance(module, nn.ModuleList) and n > 0 and len(module) == n
                and len({type(m) for m in module}) == 1):
            parent_name, _, attr = name.rpartition(".")
            parent = encoder.get_submodule(parent_name) if parent_name else encoder
            return parent, attr, module
    raise ValueError(f"no list of {n} transformer layers found in {type(encoder).__name__}")


def _keep_layers(encoder: nn.Module, keep: Sequence[int]) -> None:
    """Replace the encoder's layer list with the layers ``keep`` (in place), and tell its
    config, and the layers themselves, their new count and positions."""
    parent, attr, layers = layer_list(encoder)
    setattr(parent, attr, nn.ModuleList([layers[i] for i in keep]))
    config: Any = encoder.config
    n_before = int(config.num_hidden_layers)
    config.num_hidden_layers = len(keep)
    # Configs that describe each layer (attention kinds per layer) keep the kept ones.
    for key, value in list(vars(config).items()):
        if isinstance(value, list) and len(value) == n_before and key.startswith("layer"):
            setattr(config, key, [value[i] for i in keep])
    # A layer that knows its position (for caches, or alternating attention) is told
    # the new one.
    for position, layer in enumerate(getattr(parent, attr)):
        for module in layer.modules():
            for name in ("layer_idx", "layer_id"):
                if isinstance(getattr(module, name, None), int):
                    setattr(module, name, position)


def student_from(teacher: TextClassifier, layers: Sequence[int] | None = None
                 ) -> TextClassifier:
    """A copy of the fitted ``teacher`` whose encoder keeps only ``layers`` (0-based
    indices into the teacher's; None: ``every_other_layer``), sharing its tokenizer,
    pooling, head, temperature and thresholds. It is a fitted ``TextClassifier`` (not yet
    trained as a student: see ``Distiller``)."""
    teacher._check_fitted()
    n_layers = int(teacher.model_.encoder.config.num_hidden_layers)
    keep = every_other_layer(n_layers) if layers is None else tuple(int(i) for i in layers)
    if not keep or list(keep) != sorted(set(keep)) or keep[0] < 0 or keep[-1] >= n_layers:
        raise ValueError(f"layers must be increasing indices below {n_layers}, got {keep}")
    model = copy.deepcopy(teacher.model_)
    _keep_layers(model.encoder, keep)
    student = TextClassifier(teacher.config, teacher.labels)
    student.tokenizer_ = teacher.tokenizer_
    student.pooling_ = teacher.pooling_
    student.model_ = model.eval()
    student.temperature_ = float(model.temperature)
    student.thresholds_ = None if teacher.thresholds_ is None else teacher.thresholds_.copy()
    student.rung_ = "distilled"
    student.classes_ = list(teacher.labels)
    student.data_fingerprint_ = teacher.data_fingerprint_
    student.metrics_ = {"distillation": {"teacher_layers": n_layers, "layers": list(keep)}}
    return student


class DistillLoss(nn.Module):
    """Per text: the teacher's softened probabilities against the student's at the same
    temperature (the task's ``soft_loss``: KL for single-label, soft binary cross-entropy
    per label for multi-label), times ``temperature**2``; plus ``hard_weight`` times the
    task's ``hard_loss`` on the text's label where it has one.

    Targets come packed as (b, 2, k): row 0 the teacher's softened probabilities, row 1
    the label (``Task.hard_rows``: one-hot, or the 0/1 indicator row), all -1 for an
    unlabelled text. Packing lets the fine-tuning loop's ``train_epoch`` run it unchanged.
    """

    def __init__(self, temperature: float, hard_weight: float, *, task: Task) -> None:
        super().__init__()
        self.temperature = temperature
        self.hard_weight = hard_weight
        self.task = task

    def forward(self, logits: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        soft, hard = packed[:, 0], packed[:, 1]
        t = self.temperature
        scaled = logits / t
        loss = self.task.soft_loss(scaled, soft) * t * t
        labelled = hard[:, 0] >= 0
        if self.hard_weight > 0 and bool(labelled.any()):
            hard_loss = self.task.hard_loss(logits[labelled], hard[labelled])
            # Per text, so a batch's share of labelled texts weighs its hard term.
            loss = loss + self.hard_weight * hard_loss * labelled.float().mean()
        return loss


class Distiller:
    """Trains a smaller student of a fitted teacher (``DistillConfig``).

    ``fit(teacher, pool_texts, labelled_texts=None, labels=None, *, validation_texts=None,
    validation_labels=None, progress=None)``; learned attributes: ``student_`` (the
    fitted ``TextClassifier``), ``agreement_`` (with the teacher on the held-out part of
    the pool), ``history_`` (loss per epoch). ``labels`` as ``TextClassifier.fit`` takes
    them. With ``validation_*`` the student's temperature is fitted on those labels, else
    to the teacher's calibrated probabilities on the held-out pool. ``progress(phase,
    step, total)`` hears "teacher" (batches of the teacher's pass), "epoch" (i of n, as
    each starts), "train" (optimizer steps over all epochs) and "calibrate".
    """

    def __init__(self, config: DistillConfig | None = None) -> None:
        self.config = config or DistillConfig()

    def fit(
        self,
        teacher: TextClassifier,
        pool_texts: Sequence[str],
        labelled_texts: Sequence[str] | None = None,
        labels: Any = None,
        *,
        validation_texts: Sequence[str] | None = None,
        validation_labels: Any = None,
        progress: ProgressFn | None = None,
    ) -> Distiller:
        cfg = self.config
        report: ProgressFn = progress or (lambda phase, step, total: None)
        started = time.perf_counter()
        seed_everything(cfg.seed)
        task, k = teacher.config.task, len(teacher.labels)
        labelled = list(labelled_texts or [])
        hard = teacher._targets(labels) if labelled else None
        if hard is not None and len(hard) != len(labelled):
            raise ValueError(f"{len(labelled)} labelled texts but {len(hard)} labels")

        # Data: a held-out slice of the pool (temperature and agreement), the rest to
        # train on with the labelled texts.
        pool = list(pool_texts)
        order = np.random.default_rng(cfg.seed).permutation(len(pool))
        n_hold = min(cfg.max_holdout, int(round(cfg.holdout_fraction * len(pool))))
        hold_texts = [pool[i] for i in order[:n_hold]]
        texts = [pool[i] for i in order[n_hold:]] + labelled
        if not texts:
            raise ValueError("nothing to distil on: the pool and the labelled texts are empty")

        # The teacher's raw logits, once: the targets, and the reference on the holdout.
        teacher_logits = teacher.logits(texts + hold_texts,
                                        report=lambda b, n: report("teacher", b, n))
        teacher_hold = teacher_logits[len(texts):]
        packed = np.full((len(texts), 2, k), -1.0, dtype=np.float32)
        packed[:, 0] = task.activate(teacher_logits[:len(texts)] / cfg.temperature)
        if hard is not None:
            packed[len(texts) - len(labelled):, 1] = task.hard_rows(hard, k)

        # The model: the teacher's network with fewer layers, on this device.
        device = pick_device(cfg.device)
        student = student_from(teacher, cfg.layers)
        model = student.model_.to(device)
        ids = tokenize_texts(texts, student.tokenizer_, student.config.max_length)
        pad_id = student._pad_id
        rates = replace(teacher.config, learning_rate=cfg.learning_rate,
                        head_learning_rate=cfg.head_learning_rate,
                        layer_lr_decay=cfg.layer_lr_decay, weight_decay=cfg.weight_decay)
        optimizer = torch.optim.AdamW(param_groups(model, rates))
        per_epoch = math.ceil(len(texts) / cfg.batch_size)
        total = cfg.epochs * per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        from transformers import get_linear_schedule_with_warmup

        scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total),
                                                    total)
        loss_fn = DistillLoss(cfg.temperature, cfg.hard_weight, task=task)
        targets = torch.as_tensor(packed)
        rows = np.arange(len(texts))
        history: list[dict[str, float]] = []
        step = 0

        def on_step() -> None:
            nonlocal step
            step += 1
            report("train", step, total)

        # ("epoch", i, n) before each pass, so a job can say which epoch of how many it is
        # in; the "train" reports count steps over all of them.
        epochs = min(cfg.epochs, math.ceil(total / per_epoch)) if per_epoch else 0
        for epoch in range(cfg.epochs):
            if step >= total:
                break
            report("epoch", epoch + 1, epochs)
            loss, _ = train_epoch(model, optimizer, scheduler, ids, targets, rows, loss_fn,
                                  pad_id=pad_id, batch_size=cfg.batch_size,
                                  max_grad_norm=cfg.max_grad_norm, seed=cfg.seed + epoch,
                                  steps_left=total - step, on_step=on_step)
            history.append({"epoch": float(epoch), "train_loss": loss, "steps": float(step)})
        model.eval()

        # The student's own temperature: on labels when given, else matched to the
        # teacher's calibrated probabilities on texts the student never trained on.
        report("calibrate", 0, 1)
        calibration: dict[str, Any] = {"temperature": student.temperature_, "on": "teacher"}
        validation = None
        hold_logits = student.logits(hold_texts) if hold_texts else np.zeros((0, k))
        val_texts = list(validation_texts or [])
        val_targets = teacher._targets(validation_labels) if val_texts else None
        if cfg.calibrate and val_targets is not None:
            val_logits = student.logits(val_texts)
            temperature = fit_temperature(val_logits, val_targets, task=task)
            calibration = {"temperature": round(temperature, 5), "on": "validation",
                           "n": len(val_targets)}
        elif cfg.calibrate and len(hold_texts) >= 2:
            temperature = match_temperature(hold_logits, teacher.activate(teacher_hold),
                                            task=task)
            calibration = {"temperature": round(temperature, 5), "on": "teacher, held-out pool",
                           "n": len(hold_texts)}
        else:
            temperature = student.temperature_
        model.temperature.fill_(temperature)
        student.temperature_ = float(model.temperature)
        if val_targets is not None:
            validation = evaluate(val_targets, student.predict_proba(val_texts),
                                  student.labels, task=task,
                                  thresholds=student.thresholds_)
        agree = task.agreement(student.activate(hold_logits), teacher.activate(teacher_hold),
                               teacher.thresholds_)
        report("calibrate", 1, 1)

        student.metrics_ = {
            "n_train": len(texts),
            "n_validation": len(hold_texts),
            "validation": validation,
            "history": history,
            "calibration": calibration,
            "distillation": {
                **student.metrics_["distillation"],
                "config": cfg.to_dict(),
                "n_pool": len(texts) - len(labelled), "n_labelled": len(labelled),
                "n_holdout": len(hold_texts), "steps": step,
                "agreement": None if math.isnan(agree) else round(agree, 4),
                "teacher_fingerprint": teacher.data_fingerprint_,
            },
            "fit_seconds": round(time.perf_counter() - started, 3),
            "device": str(device),
        }
        self.student_ = student
        self.agreement_ = agree
        self.history_ = history
        return self
