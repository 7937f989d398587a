"""Final model: the hyperparameter search against the ladder's default fit, on the shared
datasets at 300 and 1,000 labels, in the same run.

For each dataset, label count and seed, a uniform random sample of the training split is
labelled (the sample ``bench/model_quality.py`` draws), and both fit on exactly those texts:

    default   Labelwise's round: TextClassifier with the default TrainConfig (the ladder)
    search    the final model: learner.ml.search.HyperparameterSearch over the ladder's
              pick (its fine-tuning rung when it kept the head), --trials trials of
              --folds-fold cross-validation on the sampled labels, pruned, within --budget
              minutes, the best trained on every sampled label

Macro-F1 is measured on the dataset's fixed test split (never seen by either), with the
gain of the search over the default and both wall times. The test splits are
model_quality's: reuters_r8 its standard split, rotten_tomatoes_sentiment whole movies
held out, bbc_news a seeded 20%.

    .venv/bin/python bench/final_model.py          # 3 datasets x 300, 1,000 x 3 seeds: a day on CPU
    .venv/bin/python bench/final_model.py --datasets rotten_tomatoes_sentiment \\
        --labels 300 --seeds 0 --trials 3          # the smallest run, about an hour on 2 cores

Results are appended to --out (JSON lines) as each cell finishes, and a rerun skips the
cells already there; the table printed at the end (and by --report) is the mean over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from model_quality import DATASETS, default_datasets_dir, sample  # noqa: E402

from learner.ml import simulate  # noqa: E402
from learner.ml.evaluate import evaluate  # noqa: E402


def macro_f1(data: simulate.Dataset, probs: np.ndarray) -> float:
    truth = data.y[data.test_idx]
    return float(evaluate(truth, probs, data.classes, task=data.task)["macro_f1"])


def run_cell(data: simulate.Dataset, rows: np.ndarray, args: argparse.Namespace, seed: int
             ) -> dict[str, Any]:
    """The default fit and the search on the same sampled labels; their test macro-F1 and
    wall seconds."""
    from learner.ml.config import TrainConfig
    from learner.ml.search import HyperparameterSearch, SearchConfig, search_rung
    from learner.ml.train import TextClassifier

    config = TrainConfig(max_length=args.max_length, seed=seed, task_type=data.task.name,
                         model_name_or_path=args.model)
    texts = [data.texts[i] for i in rows]
    doc_ids = [int(i) for i in rows]
    test_texts = [data.texts[i] for i in data.test_idx]

    started = time.perf_counter()
    default = TextClassifier(config, data.classes).fit(texts, data.y[rows], doc_ids=doc_ids)
    default_s = time.perf_counter() - started
    default_f1 = macro_f1(data, default.predict_proba(test_texts))

    rung = search_rung(default.rung_, config.ladder)
    started = time.perf_counter()
    search = HyperparameterSearch(
        config, data.classes, rung=rung,
        search=SearchConfig(trials=args.trials, folds=args.folds,
                            budget_seconds=args.budget * 60, seed=seed),
    ).fit(texts, data.y[rows], doc_ids=doc_ids)
    search_s = time.perf_counter() - started
    search_f1 = macro_f1(data, search.classifier_.predict_proba(test_texts))
    report = search.report_
    return {
        "default_f1": round(default_f1, 4), "search_f1": round(search_f1, 4),
        "gain": round(search_f1 - default_f1, 4),
        "default_s": round(default_s, 1), "search_s": round(search_s, 1),
        "default_rung": default.rung_, "rung": rung,
        "trials_run": report["trials_run"], "trials_pruned": report["trials_pruned"],
        "cv_default": report["default_score"], "cv_best": report["best_score"],
        "best_params": report["best_params"], "stopped": report["stopped"],
    }


def report(results: list[dict[str, Any]]) -> None:
    if not results:
        print("no results yet")
        return
    cells: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        cells[(r["dataset"], r["labels"])].append(r)
    print("\nMean over seeds; macro-F1 on each dataset's test split, wall seconds.")
    print(f"{'dataset':<28}{'labels':>7}{'seeds':>6}{'default':>9}{'search':>9}{'gain':>8}"
          f"{'default s':>11}{'search s':>10}{'trials':>8}{'pruned':>8}")
    for (name, labels), rs in sorted(cells.items()):
        def mean(key: str, rs: list[dict[str, Any]] = rs) -> float:
            return float(np.mean([r[key] for r in rs]))

        print(f"{name:<28}{labels:>7}{len(rs):>6}{mean('default_f1'):>9.3f}"
              f"{mean('search_f1'):>9.3f}{mean('gain'):>+8.3f}{mean('default_s'):>11.0f}"
              f"{mean('search_s'):>10.0f}{mean('trials_run'):>8.1f}{mean('trials_pruned'):>8.1f}")
    print("\nPer cell: cross-validated macro-F1 of the default trial and of the pick, and "
          "the pick's values")
    for r in results:
        print(f"  {r['dataset'][:14]} {r['labels']} s{r['seed']}: {r['rung']} "
              f"cv {r['cv_default']} -> {r['cv_best']}, {r['best_params']} ({r['stopped']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--labels", default="300,1000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=120.0,
                        help="minutes per search; no trial starts after it")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--model", default=None, help="base model folder (default MiniLM)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=Path(tempfile.gettempdir()) / "labelwise-final-model.jsonl")
    parser.add_argument("--report", action="store_true", help="print the table and exit")
    args = parser.parse_args(argv)

    done: list[dict[str, Any]] = []
    if args.out.exists():
        done = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
    settings = {"trials": args.trials, "folds": args.folds, "max_length": args.max_length}
    done = [r for r in done if r.get("settings") == settings]
    if args.report:
        report(done)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    have = {(r["dataset"], r["labels"], r["seed"]) for r in done}
    folder = default_datasets_dir()
    for name in args.datasets.split(","):
        path = folder / f"{name}.jsonl"
        if not path.exists():
            print(f"skip {name}: {path} not found")
            continue
        data = simulate.load_dataset(path, **DATASETS[name])  # type: ignore[arg-type]
        for labels in (int(n) for n in args.labels.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                if (name, labels, seed) in have:
                    continue
                rows = sample(data, labels, seed)
                result = {"dataset": name, "labels": labels, "seed": seed,
                          "settings": settings, **run_cell(data, rows, args, seed)}
                print(json.dumps(result), flush=True)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
                done.append(result)
    report(done)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
