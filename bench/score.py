"""Scoring throughput: Labelwise's scorer against the naive way of running the same model.

Both score the same mixed-length real texts (long BBC articles and short movie-review
snippets, shuffled together) with the same fitted ``PooledClassifier`` in the same run and
return the same calibrated probabilities (softmax of logits / temperature). The scorer's
gain comes from sorting texts by length into batches (little padding), padding each batch
only to its own longest text, and ``torch.inference_mode()``; the naive baseline runs
fixed batches of 64 texts in arrival order, each padded to ``max_length``
(``tokenizer(..., padding="max_length", truncation=True)``), under ``torch.no_grad()``.

Separately: dynamic int8 quantization of the PooledClassifier's Linear layers (encoder and
head; CPU), its throughput and how far its probabilities move from fp32.

    .venv/bin/python bench/score.py                  # 2,000 texts, max_length 128
    .venv/bin/python bench/score.py --n 500 --threads 1
    .venv/bin/python bench/score.py --data some.jsonl  # JSON Lines with a "text" field

Target: scorer >= 1.5x the naive baseline's texts/s (fp32).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from learner.ml.config import TrainConfig  # noqa: E402
from learner.ml.train import TextClassifier  # noqa: E402

T = TypeVar("T")
DATASETS = Path(os.environ.get("LABELWISE_DATASETS", REPO.parent / "shared" / "datasets"))


def load_rows(paths: list[Path], n: int, seed: int) -> list[dict[str, str]]:
    """``n`` rows drawn evenly from the files, shuffled together (seeded)."""
    rng = random.Random(seed)
    per_file = -(-n // len(paths))
    rows: list[dict[str, str]] = []
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            lines = [json.loads(line) for line in handle]
        rows += rng.sample(lines, min(per_file, len(lines)))
    rng.shuffle(rows)
    return rows[:n]


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    """(fn(*args), seconds it took)."""
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="texts to score")
    parser.add_argument("--data", type=Path, action="append",
                        help="JSON Lines file(s): text (and label) fields (default: bbc_news + "
                             "rotten_tomatoes_sentiment from the shared datasets)")
    parser.add_argument("--train", type=int, default=200,
                        help="labeled texts for the quick head-only classifier")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="alternating timed runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    paths = args.data or [DATASETS / "bbc_news.jsonl", DATASETS / "rotten_tomatoes_sentiment.jsonl"]
    rows = load_rows(paths, args.n + args.train, args.seed)
    texts = [r["text"] for r in rows[: args.n]]
    train = rows[args.n :]
    # A real classifier, quickly trained (head-only on the texts' own labels, disjoint
    # from the scored texts), so that its predictions are confident where they should
    # be and the int8 argmax agreement means something.
    y = [str(r.get("label", "")) for r in train]
    labels = sorted(set(y))
    if len(labels) < 2:  # unlabeled --data: any two classes will do for timing
        labels, y = ["a", "b"], ["ab"[i % 2] for i in range(len(train))]
    config = TrainConfig(mode="head", max_length=args.max_length,
                         eval_batch_size=args.batch_size, device="cpu")
    clf = TextClassifier(config, labels).fit([r["text"] for r in train], y)

    model, tokenizer = clf.model_, clf.tokenizer_
    device = next(model.parameters()).device

    def run_naive(batch: list[str]) -> np.ndarray:
        # The naive way: fixed batches in arrival order, every one padded to max_length,
        # under no_grad; the same calibrated probabilities as the scorer.
        model.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(batch), args.batch_size):
                enc = tokenizer(batch[start:start + args.batch_size], padding="max_length",
                                truncation=True, max_length=args.max_length,
                                return_tensors="pt")
                logits = model(input_ids=enc["input_ids"].to(device),
                               attention_mask=enc["attention_mask"].to(device))
                probs = torch.softmax(logits / model.temperature, dim=-1)
                out.append(probs.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    # Warm both paths up (first calls allocate and pick kernels).
    clf.predict_proba(texts[:16])
    run_naive(texts[:16])

    lengths = [len(x) for x in clf.tokenizer_(texts, truncation=True,
                                                max_length=args.max_length)["input_ids"]]
    print(f"{len(texts)} texts, tokens per text: median {int(np.median(lengths))}, "
          f"{np.mean(np.array(lengths) == args.max_length):.0%} truncated at {args.max_length}; "
          f"batch {args.batch_size}; torch threads {torch.get_num_threads()}")

    # Alternate the two, so load from other processes hits both alike; report medians.
    ours_times, base_times = [], []
    for _ in range(args.repeats):
        ours, seconds = timed(clf.predict_proba, texts)
        ours_times.append(seconds)
        base, seconds = timed(run_naive, texts)
        base_times.append(seconds)
    ours_s, base_s = float(np.median(ours_times)), float(np.median(base_times))
    ours_rate, base_rate = len(texts) / ours_s, len(texts) / base_s
    width = 62
    print(f"{'labelwise scorer (bucketed, dynamic padding, inference_mode):':<{width}}"
          f"{ours_rate:7.1f} texts/s ({ours_s:.1f} s)")
    naive = f"naive baseline (batch {args.batch_size}, padded to {args.max_length}, no_grad):"
    print(f"{naive:<{width}}{base_rate:7.1f} texts/s ({base_s:.1f} s)")
    print(f"speed-up: {ours_rate / base_rate:.2f}x (target >= 1.5x); "
          f"max |prob difference| {np.abs(ours - base).max():.2e}")

    if not args.no_int8:
        # torch marks the eager quantization API deprecated in favour of torchao, which
        # is not a dependency; the API still works on 2.13.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        from torch.ao.quantization import quantize_dynamic

        quantized = copy.copy(clf)
        quantized.model_ = quantize_dynamic(copy.deepcopy(clf.model_), {torch.nn.Linear},
                                            dtype=torch.qint8)
        quantized.predict_proba(texts[:16])
        q_probs, q_s = timed(quantized.predict_proba, texts)
        same = q_probs.argmax(1) == ours.argmax(1)
        # Near-ties flip under any perturbation; agreement where fp32 is decided is the
        # figure that says whether int8 changes predictions that matter.
        top2 = np.sort(ours, axis=1)[:, -2:]
        decided = (top2[:, 1] - top2[:, 0]) >= 0.2
        agree = float(same.mean())
        agree_decided = float(same[decided].mean()) if decided.any() else float("nan")
        print(f"{'int8 dynamic (Linear layers):':<{width}}"
              f"{len(texts) / q_s:7.1f} texts/s ({q_s:.1f} s), {ours_s / q_s:.2f}x the fp32 "
              f"scorer; max |prob change| {np.abs(q_probs - ours).max():.4f}, "
              f"argmax agreement {agree:.1%} ({agree_decided:.1%} on the "
              f"{decided.mean():.0%} of texts with fp32 top-2 margin >= 0.2)")


if __name__ == "__main__":
    main()
