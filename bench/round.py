"""Seconds per round as labels grow, and what the time savers cost in quality.

Successive rounds on the same growing set of random labels (``--labels 200,400,800``), each
fitted three ways in the same run and scored on a fixed test sample:

- cold: Labelwise's default (mode auto: the ladder, the full rung from the base encoder);
- warm: the same with ``warm_start`` (the full rung starts from the previous warm round's
  encoder, with ``warm_start_step_fraction`` of the steps);
- head: the ladder's cheapest rung alone (the frozen encoder and a linear probe).

The step cap (``max_steps``) is what keeps a cold round's time from growing with the
labels: ``--no-cap`` runs the cold rounds without it as the baseline. Then the pool: the
last round's model scores ``--pool`` texts in chunks (probabilities and embeddings from one
pass), and the strategy picks a batch.

    .venv/bin/python bench/round.py                          # 200, 400, 800 labels
    .venv/bin/python bench/round.py --labels 100,200 --pool 1000 --test 300   # quick

Data: rotten_tomatoes_sentiment from the shared datasets, or ``--data`` (JSON Lines with
``text`` and ``label``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from learner.ml.backends.local import LocalBackend  # noqa: E402
from learner.ml.config import ScoreConfig, TrainConfig  # noqa: E402
from learner.ml.evaluate import evaluate  # noqa: E402
from learner.ml.train import TextClassifier  # noqa: E402

DATASETS = Path(os.environ.get("LABELWISE_DATASETS", REPO.parent / "shared" / "datasets"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", default="200,400,800", help="label counts of the rounds")
    parser.add_argument("--pool", type=int, default=5000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=DATASETS / "rotten_tomatoes_sentiment.jsonl")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--no-cap", action="store_true",
                        help="also fit the cold rounds without the step cap (the baseline)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with args.data.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    counts = [int(n) for n in args.labels.split(",")]
    order = np.random.default_rng(args.seed).permutation(len(rows))
    if len(rows) < max(counts) + args.pool + args.test:
        raise SystemExit(f"{args.data} has {len(rows)} rows, fewer than labels + pool + test")
    labelled = [rows[i] for i in order[: max(counts)]]
    test = [rows[i] for i in order[max(counts): max(counts) + args.test]]
    pool = [rows[i] for i in order[max(counts) + args.test:][: args.pool]]
    names = sorted({r["label"] for r in rows})
    truth = np.array([names.index(r["label"]) for r in test])
    config = TrainConfig(max_length=args.max_length, seed=args.seed)
    print(f"rounds at {counts} labels; {len(test)} test texts; torch threads "
          f"{torch.get_num_threads()}; step cap {config.max_steps}, warm fraction "
          f"{config.warm_start_step_fraction}")

    def fit(cfg: TrainConfig, n: int, warm: str | None = None) -> tuple[TextClassifier, float,
                                                                        float]:
        started = time.perf_counter()
        clf = TextClassifier(cfg, names).fit(
            [r["text"] for r in labelled[:n]], [r["label"] for r in labelled[:n]],
            doc_ids=[str(i) for i in range(n)], warm_start=warm)
        seconds = time.perf_counter() - started
        f1 = evaluate(truth, clf.predict_proba([r["text"] for r in test]), names,
                      task=cfg.task)["macro_f1"]
        return clf, seconds, float(f1)

    ways = {"cold": config, "warm": replace(config, warm_start=True),
            "head": replace(config, mode="head")}
    if args.no_cap:
        ways["cold, no cap"] = replace(config, max_steps=None)
    results: dict[str, list[tuple[float, float, str]]] = {w: [] for w in ways}
    folder = Path(tempfile.mkdtemp(prefix="labelwise-bench-round-"))
    last: TextClassifier | None = None
    for i, n in enumerate(counts):
        for way, cfg in ways.items():
            previous = str(folder / f"warm-{i - 1}") if way == "warm" and i else None
            clf, seconds, f1 = fit(cfg, n, previous)
            if way == "warm":
                clf.save(folder / f"warm-{i}")
            if way == "cold":
                last = clf
            results[way].append((seconds, f1, clf.rung_))
            print(f"  {n:>5} labels  {way:<13} {seconds:7.1f} s  macro-F1 {f1:.3f}  "
                  f"({clf.rung_})", flush=True)

    print(f"\n{'labels':>7}" + "".join(f"{w:>24}" for w in ways))
    for i, n in enumerate(counts):
        print(f"{n:>7}" + "".join(
            f"{results[w][i][0]:>9.0f} s  F1 {results[w][i][1]:.3f}" for w in ways))
    total = {w: sum(s for s, _, _ in r) for w, r in results.items()}
    print("all rounds: " + ", ".join(f"{w} {t:.0f} s" for w, t in total.items()))
    if "warm" in total and total["cold"]:
        mean_gap = np.mean([w[1] - c[1] for w, c in zip(results["warm"], results["cold"],
                                                         strict=True)])
        print(f"warm start: {total['warm'] / total['cold']:.2f}x the cold rounds' time, "
              f"macro-F1 {mean_gap:+.3f} on average")

    assert last is not None
    backend = LocalBackend(ScoreConfig())

    def chunks() -> Iterator[tuple[list[int], list[str]]]:
        for start in range(0, len(pool), 2000):
            part = pool[start:start + 2000]
            yield list(range(start, start + len(part))), [r["text"] for r in part]

    started = time.perf_counter()
    parts = list(backend.score_chunks(last, chunks(), total=len(pool)))
    forward_s = time.perf_counter() - started
    probs = np.concatenate([p for _, p, _ in parts])
    embeddings = np.concatenate([e for _, _, e in parts])
    from learner.ml.queue import select_batch
    from learner.ml.strategies import DEFAULT_STRATEGY, get_strategy

    started = time.perf_counter()
    picked = select_batch(get_strategy(DEFAULT_STRATEGY), list(range(len(pool))), embeddings,
                          k=50, seed=0, probs=probs)
    select_s = time.perf_counter() - started
    print(f"pool: {len(pool)} texts scored in {forward_s:.1f} s ({len(pool) / forward_s:.0f} "
          f"texts/s, probabilities and embeddings in one pass); batch of "
          f"{len(picked.ids)} selected in {select_s:.2f} s")


if __name__ == "__main__":
    main()
