"""What a model costs to serve, measured on this machine: texts per second in batches,
the median latency of one text, and its size.

``measure_serving(model, texts)`` takes a fitted ``TextClassifier``, an
``OnnxTextClassifier``, an ``.onnx`` file inside a model folder (the folder holds the
tokenizer and ``labelwise.json``) or a saved model folder, and times its
``predict_proba`` on samples of ``texts``. ``write_onnx(folder)`` writes the folder's
float ONNX graph and its int8 copy beside it (``learner.ml.exporting``).

Times include tokenization, as a serving call's do. Each figure is a median over
repeats, so one stall of a busy machine does not move it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from learner.ml.exporting import MODEL_DIRS, MODEL_FILES, OnnxTextClassifier

ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"


@dataclass(frozen=True)
class ServingFigures:
    """``texts_per_second``: ``batch_size`` texts per call, over the median call;
    ``p50_ms``: the median of single-text calls; ``size_bytes``: the weights on disk
    (the ONNX file, or the model folder's weight files; the tokenizer not counted)."""

    texts_per_second: float
    p50_ms: float
    size_bytes: int
    batch_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_onnx(folder: str | Path, *, int8: bool = True) -> dict[str, Path]:
    """``model.onnx`` (float) and, with ``int8``, ``model.int8.onnx`` (dynamic int8
    quantization) in a saved ``TextClassifier`` folder; ``{"float": ..., "int8": ...}``."""
    from learner.ml.exporting import onnx_quantize, onnx_write

    folder = Path(folder)
    paths = {"float": folder / ONNX_FILE}
    onnx_write(folder, paths["float"])
    if int8:
        paths["int8"] = folder / ONNX_INT8_FILE
        onnx_quantize(paths["float"], paths["int8"])
    return paths


def folder_size(folder: str | Path) -> int:
    """Bytes of a model folder's weight files (safetensors), tokenizer files excluded."""
    folder = Path(folder)
    names = [folder / name for name in MODEL_FILES if name.endswith(".safetensors")]
    names += [p for d in MODEL_DIRS for p in (folder / d).glob("*.safetensors")]
    return sum(p.stat().st_size for p in names if p.is_file())


def _parameter_bytes(model: Any) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return int(sum(t.numel() * t.element_size() for t in tensors))


def _load(model: Any, threads: int | None) -> tuple[Any, int]:
    """(something with ``predict_proba``, its size in bytes)."""
    from learner.ml.train import TextClassifier

    if isinstance(model, TextClassifier):
        return model, _parameter_bytes(model.model_)
    if isinstance(model, OnnxTextClassifier):
        return model, model.path.stat().st_size
    path = Path(model)
    if path.suffix == ".onnx":
        return OnnxTextClassifier(path.parent, path.name, threads=threads), path.stat().st_size
    if path.is_dir():
        return TextClassifier.load(path, device="cpu"), folder_size(path)
    raise ValueError(f"not a model: {model!r} (a TextClassifier, an .onnx file or a folder)")


def measure_serving(
    model: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    batches: int = 5,
    singles: int = 50,
    threads: int | None = None,
    seed: int = 0,
) -> ServingFigures:
    """Time ``predict_proba``: ``batches`` calls of ``batch_size`` texts and ``singles``
    calls of one text, each drawn at random from ``texts`` (seeded), after one untimed
    call of each kind. ``threads``: onnxruntime's intra-op threads when ``model`` is a
    path to an ONNX file (PyTorch's are the caller's ``torch.set_num_threads``)."""
    if not texts:
        raise ValueError("measure_serving needs texts to time")
    predictor, size = _load(model, threads)
    rng = np.random.default_rng(seed)
    pool = list(texts)

    def call(n: int) -> float:
        sample = [pool[i] for i in rng.integers(0, len(pool), size=n)]
        start = time.perf_counter()
        if hasattr(predictor, "proba_and_embed"):
            predictor.proba_and_embed(sample, batch_size=batch_size)
        else:
            predictor.predict_proba(sample, batch_size=batch_size)
        return time.perf_counter() - start

    call(batch_size), call(1)  # warm-up: first calls allocate and pick kernels
    batch_s = statistics.median(call(batch_size) for _ in range(max(1, batches)))
    single_s = statistics.median(call(1) for _ in range(max(1, singles)))
    return ServingFigures(texts_per_second=batch_size / batch_s, p50_ms=1000 * single_s,
                          size_bytes=int(size), batch_size=batch_size)
