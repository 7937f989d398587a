"""Seconds from a new label to a re-scored 20,000-document pool with the fast refresh.

The fast refresh (``learner.ml.refresh``) refits a logistic-regression head on the cached
embeddings of every labeled document, predicts the pool, scores it with the query
strategy and picks the next batch. Target: under 2 s for 20,000 documents on the 2-core
machines.

Baselines from the same run:
- re-scoring with the model itself (what the pool costs without the fast refresh): a
  MiniLM forward pass over a slice of real texts, extrapolated to the pool size;
- one fine-tuning step (batch 16) of MiniLM, extrapolated to one epoch over the labels.

The pool's embeddings are synthetic (384-dim clustered Gaussians, float32) because the
timing of the head does not depend on where they came from, and embedding 20,000 texts
here would take ten minutes. The baselines use real texts from shared/datasets when
present (else generated sentences).

    .venv/bin/python bench/refresh.py [--pool 20000] [--labeled 100,500,2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from learner.ml.refresh import EmbeddingHead, refresh_scores  # noqa: E402
from learner.ml.strategies import DEFAULT_STRATEGY, get_strategy  # noqa: E402

TARGET_SECONDS = 2.0


def synthetic_pool(n: int, h: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, h) float32 embeddings in k overlapping clusters, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, h))
    y = rng.integers(0, k, n)
    x = centres[y] + rng.normal(scale=1.5, size=(n, h))
    return x.astype(np.float32), y


def time_refresh(pool: np.ndarray, labeled_x: np.ndarray, labeled_y: np.ndarray,
                 strategy_name: str, k: int, repeats: int) -> list[float]:
    """Wall seconds of fit + predict + score + select, per repeat."""
    strategy = get_strategy(strategy_name)
    ids = list(range(len(pool)))
    classes = sorted(set(labeled_y.tolist()))
    # Warm-up: the first call pays scikit-learn's import (seconds), not the refresh.
    refresh_scores(EmbeddingHead(classes=classes).fit(labeled_x, labeled_y.tolist()),
                   pool[:100], get_strategy("margin"))
    times = []
    for r in range(repeats):
        started = time.perf_counter()
        head = EmbeddingHead(classes=classes).fit(labeled_x, labeled_y.tolist())
        probs = head.predict_proba(pool)
        # select() scores the pool itself: one scoring pass, as in the worker.
        strategy.select(ids, k, probs=probs, embeddings=pool, labeled_embeddings=labeled_x,
                        labeled_probs=head.predict_proba(labeled_x), seed=r)
        times.append(time.perf_counter() - started)
    return times


def sample_texts(n: int) -> list[str]:
    folder = Path(os.environ.get("LABELWISE_DATASETS", REPO.parent / "shared" / "datasets"))
    file = folder / "reuters_r8.jsonl"
    if file.exists():
        with open(file, encoding="utf-8") as fh:
            return [json.loads(line)["text"] for _, line in zip(range(n), fh, strict=False)]
    words = ["market", "rose", "as", "shares", "gained", "after", "a", "strong", "quarter"]
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, 60)) for _ in range(n)]


def baselines(pool: int, labeled: int, max_length: int) -> dict[str, float]:
    """Seconds per text of a MiniLM forward pass and per fine-tuning step (batch 16)."""
    import torch

    from learner.ml.config import TrainConfig
    from learner.ml.encoder import default_model_path, embed, load_encoder
    from learner.ml.pooling import Pooling
    from learner.ml.train import build_model

    texts = sample_texts(256)
    tokenizer, model = load_encoder(None, device="cpu")
    pooling = Pooling.of_checkpoint(default_model_path())
    embed(texts[:16], tokenizer=tokenizer, model=model, pooling=pooling,
          max_length=max_length)  # warm up
    started = time.perf_counter()
    embed(texts, tokenizer=tokenizer, model=model, pooling=pooling, max_length=max_length,
          batch_size=64)
    per_text = (time.perf_counter() - started) / len(texts)

    # The model every fine-tuning rung trains: encoder, its pooling, a linear head.
    clf, _ = build_model(TrainConfig(max_length=max_length), 8)
    clf.train()
    opt = torch.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=5e-5)
    batch = tokenizer(texts[:16], truncation=True, max_length=max_length, padding=True,
                      return_tensors="pt")
    labels = torch.zeros(16, dtype=torch.long)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = []
    for _ in range(3):
        started = time.perf_counter()
        loss = loss_fn(clf(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]), labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        steps.append(time.perf_counter() - started)
    per_step = statistics.median(steps[1:])
    return {
        "forward_per_text_s": per_text,
        "rescore_pool_s": per_text * pool,
        "train_step_s": per_step,
        "finetune_epoch_s": per_step * max(1, labeled // 16),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=20000)
    parser.add_argument("--labeled", default="100,500,2000")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=25, help="documents picked per refresh")
    parser.add_argument("--strategies", default=f"{DEFAULT_STRATEGY},margin,entropy,badge,cal")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.labeled.split(",")]
    x, y = synthetic_pool(args.pool + max(sizes), args.dim, args.classes)
    pool = x[: args.pool]
    print(f"fast refresh: fit head on the labeled set + predict + score + pick {args.batch} "
          f"from a {args.pool:,}-document pool ({args.dim}-dim), median of {args.repeats}")
    print(f"{'strategy':<18}{'labeled':>9}{'median s':>10}{'max s':>8}"
          f"  target < {TARGET_SECONDS} s")
    worst = 0.0
    for name in args.strategies.split(","):
        for n in sizes:
            lx, ly = x[args.pool: args.pool + n], y[args.pool: args.pool + n]
            times = time_refresh(pool, lx, ly, name, args.batch, args.repeats)
            med = statistics.median(times)
            worst = max(worst, med)
            ok = "ok" if med < TARGET_SECONDS else "MISSED"
            print(f"{name:<18}{n:>9}{med:>10.3f}{max(times):>8.3f}  {ok}", flush=True)

    if not args.no_baseline:
        b = baselines(args.pool, max(sizes), args.max_length)
        print("\nbaselines (same run, MiniLM on CPU, max_length "
              f"{args.max_length}, real texts):")
        print(f"  re-scoring the pool with the model: {b['forward_per_text_s'] * 1000:.1f} ms/text"
              f" -> {b['rescore_pool_s']:.0f} s for {args.pool:,} documents")
        print(f"  one fine-tuning step (batch 16): {b['train_step_s']:.2f} s -> "
              f"{b['finetune_epoch_s']:.0f} s per epoch over {max(sizes):,} labels")
        print(f"  fast refresh (worst median above) is {b['rescore_pool_s'] / worst:.0f}x faster "
              "than re-scoring alone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
