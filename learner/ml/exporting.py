"""Model folders that other programs load without Labelwise.

- ``write_setfit_folder``: a sentence-transformers folder (the encoder, its tokenizer and
  its pooling) plus the calibrated head as a scikit-learn logistic regression in SetFit's
  layout (``model_head.pkl``, ``config_setfit.json``), so one call loads the whole model:
  ``SetFitModel.from_pretrained(folder)``; ``predict_proba`` gives Labelwise's calibrated
  probabilities. ``SentenceTransformer(folder)`` alone gives the pooled vectors.
- ``onnx_write``: one ONNX graph from ``input_ids`` and ``attention_mask`` to calibrated
  ``logits`` and ``probabilities``, with the pooling, the head and the temperature inside.
- ``OnnxTextClassifier``: onnxruntime plus the tokenizer, as a ``predict_proba``.

SetFit was chosen over a custom transformers class (``trust_remote_code``) because it is
the well-kept library for exactly this model shape (a sentence encoder plus a linear head),
and its folder is also a plain sentence-transformers model.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from learner.ml.artifact import META_FILE, read_meta
from learner.ml.tasks import Task, task_of

ONNX_OPSET = 17
ONNX_OUTPUTS = ("logits", "probabilities")
SETFIT_HEAD_FILE = "model_head.pkl"
SETFIT_CONFIG_FILE = "config_setfit.json"
# What a model folder keeps from a round's artifact (never the pool's cached embeddings).
MODEL_FILES = (
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.txt", "merges.txt", "vocab.json", "spm.model",
    "sentencepiece.bpe.model", "added_tokens.json", "modules.json",
    "sentence_bert_config.json", "labelwise_head.safetensors", META_FILE,
)
MODEL_DIRS = ("1_Pooling", "2_Normalize")


def copy_model_files(artifact: Path, out: Path) -> None:
    """The model's own files from a round's artifact folder into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (artifact / name).is_file():
            shutil.copyfile(artifact / name, out / name)
    for name in MODEL_DIRS:
        if (artifact / name).is_dir():
            shutil.copytree(artifact / name, out / name, dirs_exist_ok=True)


def sklearn_head(weight: np.ndarray, bias: np.ndarray, temperature: float, *,
                 task: Task) -> Any:
    """The calibrated linear head as a fitted scikit-learn estimator (``Task.sklearn_head``:
    a ``LogisticRegression`` for single-label, a ``OneVsRestClassifier`` of them for
    multi-label), whose ``predict_proba`` equals Labelwise's.

    The estimators are fitted on a few synthetic rows (so every fitted attribute exists in
    the form this scikit-learn version expects), then given the head's coefficients.
    """
    w = np.asarray(weight, dtype=np.float64) / temperature
    b = np.asarray(bias, dtype=np.float64) / temperature
    return task.sklearn_head(w, b)


def write_setfit_folder(artifact: Path, out: Path) -> dict[str, Any]:
    """A folder ``SetFitModel.from_pretrained`` loads as the round's model (and
    ``TextClassifier.load`` too); returns the artifact's ``labelwise.json``."""
    import joblib
    from safetensors.numpy import load_file

    meta = read_meta(artifact)
    copy_model_files(artifact, out)
    head = load_file(str(artifact / "labelwise_head.safetensors"))
    task = task_of(meta)
    estimator = sklearn_head(head["weight"], head["bias"], float(head["temperature"][0]),
                             task=task)
    joblib.dump(estimator, out / SETFIT_HEAD_FILE)
    # Only the keys SetFit itself writes: any other is passed on to its constructor.
    setfit_config = {"normalize_embeddings": False,
                     "labels": task.setfit_labels(list(meta["labels"]))}
    (out / SETFIT_CONFIG_FILE).write_text(json.dumps(setfit_config, indent=2), "utf-8")
    return meta


def onnx_write(folder: Path, out_file: Path) -> None:
    """The model in ``folder`` (a ``TextClassifier`` folder) as one ONNX graph with dynamic
    batch and sequence axes: inputs ``input_ids`` and ``attention_mask`` (int64), outputs
    calibrated ``logits`` and ``probabilities``.

    The TorchScript exporter (dynamo=False) takes about a second where the dynamo one takes
    ten on a tiny BERT; the model runs eager attention, which traces to plain MatMul and
    Softmax with the padding mask kept as a graph input."""
    import torch

    from learner.ml.model import ExportGraph
    from learner.ml.train import TextClassifier

    clf = TextClassifier.load(folder, device="cpu")
    graph = ExportGraph(clf.model_, task=clf.config.task).eval()
    example = clf.tokenizer_(["a short text", "a somewhat longer example text to pad against"],
                             padding=True, return_tensors="pt")
    names = ("input_ids", "attention_mask")
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes.update({name: {0: "batch"} for name in ONNX_OUTPUTS})
    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer's notes (legacy exporter, shape branches turned constant) are expected
        # here: the graph is checked against PyTorch right after it is written.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph, tuple(example[name] for name in names), str(out_file),
            input_names=list(names), output_names=list(ONNX_OUTPUTS), dynamic_axes=axes,
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
    tokenized as Labelwise does (truncation to the round's max_length)."""

    def __init__(self, folder: str | Path, filename: str = "model.onnx",
                 threads: int | None = None) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        folder = Path(folder)
        self.path = folder / filename
        meta = read_meta(folder)
        self.labels: list[str] = list(meta["labels"])
        self.task = task_of(meta)
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
            feed = {name: encoded[name].astype(np.int64)
                    for name in ("input_ids", "attention_mask")}
            out[rows] = self.session.run(["probabilities"], feed)[0]
        return out
