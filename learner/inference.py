"""Predictions from a round's saved model, with the loaded models kept in memory.

Loading a MiniLM classifier from disk costs about a second; a prediction for one text a
few milliseconds. So each process keeps the last few rounds' models (an LRU keyed by the
round, the runtime and the file) and every request after the first reuses them.

Runtimes: "pytorch" (the round's artifact, as the learner saved it), or "onnx" /
"onnx-int8", served from that round's finished export of the same format (an export job
builds it; a request never does). A client may also name one finished export (its job
id), of any ONNX format, the distilled student included: `serving_export` checks it and
`predict(..., export=job)` serves it with onnxruntime from its zip.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from learner.models import ExportJob, Round

RUNTIMES = ("pytorch", "onnx", "onnx-int8")
# Export formats onnxruntime serves: the ONNX graphs (an hf folder is for other programs).
SERVABLE_EXPORTS = (ExportJob.Format.ONNX, ExportJob.Format.ONNX_INT8,
                    ExportJob.Format.STUDENT_INT8)


class NoModel(Exception):
    """The round has no model for the asked runtime (not exported yet, files gone)."""


class ExportUnusable(Exception):
    """The export a client named cannot serve predictions (the message says why)."""


def serving_export(job: ExportJob | None, export_id: int) -> ExportJob:
    """`job` (export `export_id` of the project, None when the project has none) if it can
    serve predictions; else ExportUnusable. Another project's export reads as missing, so
    nobody learns what other projects hold."""
    if job is None:
        raise ExportUnusable(f"This project has no export {export_id}.")
    if job.format not in SERVABLE_EXPORTS:
        raise ExportUnusable(
            f"Export {export_id} is a {job.get_format_display()}, which the predictions "
            f"endpoint does not serve; export one of {', '.join(SERVABLE_EXPORTS)}.")
    if job.status != ExportJob.Status.DONE:
        raise ExportUnusable(f"Export {export_id} is {job.status}, not done; try again "
                             "when it is.")
    if not job.path or not Path(job.path).exists():
        raise ExportUnusable(f"Export {export_id}'s file is gone; request the export again.")
    return job


@dataclass(frozen=True)
class Predicted:
    labels: list[str]
    predicted: list[list[str]]  # per text: the predicted label name(s)
    probabilities: np.ndarray  # (n, k), columns in the order of `labels`


class ModelCache:
    """A small thread-safe LRU of loaded TextClassifiers. Loads happen under the lock, so
    two requests for the same cold round load it once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._models: OrderedDict[tuple[int, str], object] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, round: Round, runtime: str = "pytorch",  # type: ignore[no-untyped-def]
            *, export: ExportJob | None = None):
        """The round's model for `runtime`, or (`export` given) that finished export's."""
        if export is not None:
            source, runtime = _unpacked(Path(export.path)), export.format
        else:
            source = _source(round, runtime)
        key = (round.pk, runtime, str(source))
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            model = _load(source, runtime)
            self.loads += 1
            self._models[key] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return model

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


models = ModelCache(getattr(settings, "LABELWISE_PREDICT_CACHE_SIZE", 3))


def _source(round: Round, runtime: str) -> Path:
    """The folder holding the round's model for `runtime`; NoModel if there is none."""
    if runtime == "pytorch":
        folder = Path(round.artifact_path) if round.artifact_path else None
        if folder is None or not folder.exists():
            raise NoModel(f"Round {round.number}'s model is no longer on disk.")
        return folder
    if runtime not in RUNTIMES:
        raise NoModel(f"Unknown runtime {runtime!r}.")
    job = (
        ExportJob.objects.filter(round=round, format=runtime, status=ExportJob.Status.DONE)
        .order_by("-finished_at", "-id").first()
    )
    if job is None or not Path(job.path).exists():
        raise NoModel(f"Round {round.number} has no finished {runtime} export: request one "
                      f"(POST .../rounds/{round.number}/exports/) and try again when done.")
    return _unpacked(Path(job.path))


def _unpacked(archive: Path) -> Path:
    """The export zip unpacked beside it, once (into a temporary folder, then renamed, so
    a half-unpacked folder is never used)."""
    target = archive.with_suffix("")
    if not target.exists():
        work = Path(tempfile.mkdtemp(prefix="unzip-", dir=archive.parent))
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(work)
            (inner,) = [p for p in work.iterdir() if p.is_dir()]
            try:
                inner.rename(target)
            except OSError:
                if not target.exists():  # another process won the race: theirs is as good
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _load(folder: Path, runtime: str):  # type: ignore[no-untyped-def]
    if runtime == "pytorch":
        from learner.ml.train import TextClassifier

        return TextClassifier.load(folder)
    import torch

    from learner.export import ONNX_FILES, OnnxTextClassifier

    # As many threads as PyTorch uses, so the two runtimes compare like for like.
    return OnnxTextClassifier(folder, ONNX_FILES[runtime], threads=torch.get_num_threads())


def predict(
    round: Round, texts: Sequence[str], *, runtime: str = "pytorch",
    export: ExportJob | None = None, cache: bool = True,
) -> Predicted:
    """Labels and probabilities of `texts` from the round's model, or from `export` (a job
    `serving_export` accepted, of this round), in one batched pass (length-bucketed
    batches of 64). `cache=False` loads the model afresh: the benchmark's baseline."""
    if export is not None:
        runtime = export.format
        model = models.get(round, export=export) if cache else _load(
            _unpacked(Path(export.path)), runtime)
    else:
        model = models.get(round, runtime) if cache else _load(_source(round, runtime),
                                                                runtime)
    probs = model.predict_proba(list(texts))
    if runtime == "pytorch":
        labels, task, thresholds = list(model.labels), model.config.task, model.thresholds_
    else:
        labels, task, thresholds = model.labels, model.task, model.thresholds
    chosen = [[labels[j] for j in row] for row in task.predicted_lists(probs, thresholds)]
    return Predicted(labels=labels, predicted=chosen, probabilities=probs)
