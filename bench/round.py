"""Seconds for one active-learning round: train on the labels, score the unlabeled pool.

One round as the worker runs it through ``LocalBackend``: fine-tune on ``--labels``
labeled texts (the default ``TrainConfig``), stream the ``--pool`` unlabeled texts in
chunks through one forward pass each that yields probabilities *and* embeddings, and
rank them with a query strategy. Printed broken down into train / embed+predict (the
forward pass over the pool) / score (the strategy over the probabilities).

Baseline, same run: the pool scored by a plain ``transformers`` pipeline (batch 64,
probabilities only, no embeddings), timed on ``--baseline-sample`` texts and
extrapolated to the whole pool.

    .venv/bin/python bench/round.py                       # 500 labels, 10,000 pool
    .venv/bin/python bench/round.py --labels 100 --pool 1000   # a quick check

Data: rotten_tomatoes_sentiment from the shared datasets (12,752 short reviews), or
``--data`` (JSON Lines with ``text`` and ``label``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from learner.ml.backends.local import LocalBackend  # noqa: E402
from learner.ml.config import ScoreConfig, TrainConfig  # noqa: E402

DATASETS = Path(os.environ.get("LABELWISE_DATASETS", REPO.parent / "shared" / "datasets"))


def entropy_top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """Fallback strategy when learner.ml.strategies is unavailable: max entropy."""
    entropy = -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=1)
    return np.argsort(-entropy)[:k]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=int, default=500)
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--data", type=Path, default=DATASETS / "rotten_tomatoes_sentiment.jsonl")
    parser.add_argument("--mode", default="full", choices=["full", "head", "gradual", "lora"])
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=10, help="texts to query")
    parser.add_argument("--baseline-sample", type=int, default=500)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with args.data.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    order = np.random.default_rng(args.seed).permutation(len(rows))
    if len(rows) < args.labels + args.pool:
        raise SystemExit(f"{args.data} has {len(rows)} rows, fewer than labels + pool")
    labeled = [rows[i] for i in order[: args.labels]]
    pool = [rows[i] for i in order[args.labels : args.labels + args.pool]]
    label_names = sorted({r["label"] for r in rows})

    config = TrainConfig(mode=args.mode)
    backend = LocalBackend(ScoreConfig(chunk_size=args.chunk_size))
    print(f"round: {args.labels} labels, {args.pool} pool texts, mode {args.mode}, "
          f"max_length {config.max_length}, torch threads {torch.get_num_threads()}")

    started = time.perf_counter()
    clf = backend.train(config, label_names, [r["text"] for r in labeled],
                        [r["label"] for r in labeled])
    train_s = time.perf_counter() - started

    def chunks() -> Iterator[tuple[list[int], list[str]]]:
        for start in range(0, len(pool), args.chunk_size):
            part = pool[start : start + args.chunk_size]
            yield list(range(start, start + len(part))), [r["text"] for r in part]

    started = time.perf_counter()
    all_probs, all_embeddings = [], []
    for _ids, probs, embeddings in backend.score_chunks(clf, chunks(), total=len(pool)):
        all_probs.append(probs)
        all_embeddings.append(embeddings)
    forward_s = time.perf_counter() - started

    probs, embeddings = np.concatenate(all_probs), np.concatenate(all_embeddings)
    n_embedded = len(embeddings)
    started = time.perf_counter()
    try:
        from learner.ml.strategies import DEFAULT_STRATEGY, get_strategy

        strategy = get_strategy(DEFAULT_STRATEGY)
        if "mc_probs" in strategy.requires:
            strategy = get_strategy("entropy")
        selection = strategy.select(list(range(len(pool))), args.batch_size, probs=probs,
                                    embeddings=embeddings)
        picked = np.asarray(getattr(selection, "ids", selection))
        strategy_name = f"{strategy.name} (learner.ml.strategies, with dedup on embeddings)"
    except ImportError:  # the strategies module lives beside this bench, owned elsewhere
        picked = entropy_top_k(probs, args.batch_size)
        strategy_name = "entropy (fallback)"
    score_s = time.perf_counter() - started
    total_s = train_s + forward_s + score_s

    print(f"train:          {train_s:8.1f} s  ({clf.metrics_['n_train']} train / "
          f"{clf.metrics_['n_validation']} validation, "
          f"{len(clf.metrics_['history'])} epochs)")
    print(f"embed+predict:  {forward_s:8.1f} s  ({len(pool) / forward_s:.1f} texts/s, "
          f"probs + {n_embedded} embeddings in one pass)")
    print(f"score:          {score_s:8.3f} s  ({strategy_name}, top {len(picked)})")
    print(f"round total:    {total_s:8.1f} s")

    from transformers import pipeline

    pipe = pipeline("text-classification", model=clf.model_, tokenizer=clf.tokenizer_,
                    batch_size=64, top_k=None, device=clf.model_.device)
    sample = [r["text"] for r in pool[: args.baseline_sample]]
    pipe(sample[:16], truncation=True, max_length=config.max_length)
    started = time.perf_counter()
    pipe(sample, truncation=True, max_length=config.max_length)
    base_rate = len(sample) / (time.perf_counter() - started)
    base_forward_s = len(pool) / base_rate
    print(f"baseline: transformers pipeline scoring, {base_rate:.1f} texts/s on "
          f"{len(sample)} texts -> {base_forward_s:.1f} s for the pool (no embeddings); "
          f"round with it {train_s + base_forward_s:.1f} s vs {total_s:.1f} s "
          f"({(train_s + base_forward_s) / total_s:.2f}x)")


if __name__ == "__main__":
    main()
