"""Weight-space interpolation (WiSE-FT, Wortsman et al., CVPR 2022) between the start of
LP-FT full fine-tuning and its end, on random labels of the shared datasets.

One fine-tuning run on an 80/20 validation split (the split a round uses); then, for each
weight a on the fine-tuned side, the model (1 - a) * start + a * end, its temperature
fitted on the validation split, scored on the dataset's fixed test split: macro-F1 and
ECE on test, macro-F1 on validation (what a round could choose a by). a = 0 is the
frozen encoder with the LP-FT head; a = 1 is the fine-tuned model a round keeps.

    .venv/bin/python bench/interpolation.py --dataset bbc_news --labels 100
    .venv/bin/python bench/interpolation.py --dataset rotten_tomatoes_sentiment \\
        --labels 1000 --config '{"min_steps": 250}'     # longer training, same table

Measured 2026-12-03 (seed 0, 2 busy cores) in the README under "Latest figures": the
best weight differs by dataset (0.25 on bbc_news 100, 1 on rotten 100 and 1,000) and the
validation split did not point at it, so rounds keep a = 1.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from model_quality import DATASETS, default_datasets_dir, sample  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="bbc_news", choices=sorted(DATASETS))
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default="0,0.25,0.5,0.7,0.85,1")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--config", default=None, help="TrainConfig overrides as JSON")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from learner.ml import simulate
    from learner.ml.calibration import ece_of, fit_temperature
    from learner.ml.config import TrainConfig
    from learner.ml.evaluate import evaluate
    from learner.ml.train import (
        FitData,
        TextClassifier,
        _set_head,
        build_model,
        fine_tune,
        fit_linear_head,
        forward_logits,
        tokenize_texts,
        validation_split,
    )

    torch.set_num_threads(args.threads)
    data = simulate.load_dataset(default_datasets_dir() / f"{args.dataset}.jsonl",
                                 **DATASETS[args.dataset])  # type: ignore[arg-type]
    rows = sample(data, args.labels, args.seed)
    config = TrainConfig(mode="full", seed=args.seed, max_length=args.max_length,
                         task_type=data.task.name)
    if args.config:
        config = replace(config, **json.loads(args.config))
    task, k = config.task, len(data.classes)
    clf = TextClassifier(config, data.classes)
    targets = data.y[rows]
    train_idx, val_idx = validation_split(
        [str(int(i)) for i in rows], targets, fraction=config.validation_fraction,
        seed=args.seed, min_examples=config.min_examples_for_validation)
    base, tokenizer = build_model(config, k)
    pad = tokenizer.pad_token_id or 0
    fit_data = FitData(tokenize_texts([data.texts[i] for i in rows], tokenizer,
                                      config.max_length), targets, train_idx, val_idx, pad)

    def quiet(phase: str, step: int, total: int) -> None:
        pass

    started = time.perf_counter()
    frozen = clf._features(base, fit_data, quiet)
    probe = fit_linear_head(frozen[train_idx], targets[train_idx], n_labels=k,
                            labels=data.classes, task=task, seed=args.seed)
    init = clf._init_head(frozen, fit_data, probe)
    start = copy.deepcopy(base)
    _set_head(start, init.weight, init.bias)
    tuned, history = fine_tune(copy.deepcopy(start), "full", data=fit_data, config=config,
                               labels=data.classes, report=quiet)
    print(f"{args.dataset}, {len(rows)} labels ({len(train_idx)} train, {len(val_idx)} "
          f"validation), seed {args.seed}: fine-tuned in {time.perf_counter() - started:.0f} s,"
          f" {sum(1 for h in history if h['epoch'] >= 0)} epochs", flush=True)

    begin = {name: t.clone() for name, t in start.state_dict().items()}
    end = {name: t.clone() for name, t in tuned.state_dict().items()}
    test_ids = tokenize_texts([data.texts[i] for i in data.test_idx], tokenizer,
                              config.max_length)
    val_ids = [fit_data.ids[i] for i in val_idx]
    y_test = data.y[data.test_idx]
    print(f"{'weight':>6}  {'T':>6}  {'val F1':>6}  {'test F1':>7}  {'test ECE':>8}")
    for weight in (float(w) for w in args.weights.split(",")):
        tuned.load_state_dict({
            name: begin[name] * (1 - weight) + t * weight if t.is_floating_point() else t
            for name, t in end.items()})
        tuned.eval()
        val_logits, _ = forward_logits(tuned, val_ids, pad_id=pad, batch_size=64,
                                       features=False)
        temperature = fit_temperature(val_logits, targets[val_idx], task=task)
        test_logits, _ = forward_logits(tuned, test_ids, pad_id=pad, batch_size=64,
                                        features=False)
        val_f1 = evaluate(targets[val_idx], task.activate(val_logits), data.classes,
                          task=task)["macro_f1"]
        test_f1 = evaluate(y_test, task.activate(test_logits / temperature), data.classes,
                           task=task)["macro_f1"]
        ece = ece_of(test_logits / temperature, y_test, task=task)
        print(f"{weight:>6.2f}  {temperature:>6.3f}  {val_f1:>6.3f}  {test_f1:>7.3f}  "
              f"{ece:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
