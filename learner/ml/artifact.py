"""The self-describing model folder and the data fingerprint.

A saved classifier is a folder holding the encoder as transformers and
sentence-transformers read it (safetensors weights, ``config.json``, the tokenizer,
``modules.json`` and ``1_Pooling`` naming its pooling), the linear head with its
temperature (``labelwise_head.safetensors``), and ``labelwise.json``: the label list, the
``TrainConfig``, the pooling, calibration, metrics, multi-label thresholds and a
fingerprint of the training data.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

META_FILE = "labelwise.json"
# 2: the pooled classifier (the checkpoint's pooling + a linear head + a temperature);
# 1 was BERT's pooler output through AutoModelForSequenceClassification.
FORMAT_VERSION = 2

LabelValue = str | int | Sequence[str] | Sequence[int]


def _canonical_label(label: Any) -> list[str]:
    """A document's labels as a sorted list of strings.

    A single label ``"a"`` and a one-element set ``["a"]`` describe the same labeled
    document, so they hash alike: callers may pass either form.
    """
    if isinstance(label, str | int):
        return [str(label)]
    return sorted(str(x) for x in label)


def data_fingerprint(doc_ids: Sequence[Any], labels: Sequence[Any]) -> str:
    """sha256 hex over the sorted (doc_id, label) pairs plus their count.

    Order-independent (the same labeled set in any order gives the same value) and
    changes when any document's label changes, a document is added or one is removed.
    ``labels`` are label names (or indices), one per document or a collection per
    document (multi-label); ``"a"`` and ``["a"]`` count as the same.
    """
    if len(doc_ids) != len(labels):
        raise ValueError(f"{len(doc_ids)} doc_ids but {len(labels)} labels")
    pairs = sorted(
        (json.dumps(str(d)), json.dumps(_canonical_label(lab)))
        for d, lab in zip(doc_ids, labels, strict=True)
    )
    digest = hashlib.sha256()
    digest.update(f"n={len(pairs)}\n".encode())
    for doc, lab in pairs:
        digest.update(f"{doc}\t{lab}\n".encode())
    return digest.hexdigest()


def text_ids(texts: Sequence[str]) -> list[str]:
    """Stable stand-in document ids (sha1 of the text) when the caller has none."""
    return [hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]


def write_meta(path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``labelwise.json`` into ``path`` with format and environment stamps added."""
    import torch
    import transformers

    full = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        **meta,
    }
    out = Path(path) / META_FILE
    out.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def read_meta(path: str | Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((Path(path) / META_FILE).read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"labelwise.json format {meta.get('format_version')!r}, this version of "
            f"Labelwise reads {FORMAT_VERSION}: the model was saved by another version; "
            "train a new round to get one this version serves"
        )
    return meta
