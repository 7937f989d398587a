"""Does task-adaptive pretraining pay for its time? The same rounds with and without it.

For each dataset: the encoder is adapted by masked-language-model training on the training
split's texts (no labels; ``learner.ml.adapt``, the project job's code, --steps steps),
then Labelwise's default model (``TextClassifier``, mode auto) is fitted on the same random
labels from the base encoder and from the adapted one, and scored on the test split.
Printed: macro-F1 of both and the difference per budget, and the adaptation's wall time
beside a round's.

    .venv/bin/python bench/adapt.py                          # rotten tomatoes, 100 and 300
    .venv/bin/python bench/adapt.py --datasets reuters_r8,bbc_news --steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from bench.model_quality import DATASETS, default_datasets_dir, measure, sample  # noqa: E402
from learner.ml import simulate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="rotten_tomatoes_sentiment")
    parser.add_argument("--budgets", default="100,300")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=300, help="adaptation steps (batch 16)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=Path(tempfile.gettempdir()) / "labelwise-bench-adapt")
    args = parser.parse_args(argv)

    import torch

    from learner.ml.adapt import AdaptConfig, adapt_encoder
    from learner.ml.config import TrainConfig
    from learner.ml.train import TextClassifier

    torch.set_num_threads(args.threads)
    rows: list[dict[str, object]] = []
    for name in args.datasets.split(","):
        data = simulate.load_dataset(default_datasets_dir() / f"{name}.jsonl",
                                     **DATASETS[name])  # type: ignore[arg-type]
        folder = args.out / f"{name}-{args.steps}"
        if not (folder / "model.safetensors").exists():
            report = adapt_encoder(None, [data.texts[i] for i in data.train_idx], folder,
                                   config=AdaptConfig(max_steps=args.steps,
                                                      max_length=args.max_length))
            (folder / "adapt.json").write_text(json.dumps(report, indent=2))
        report = json.loads((folder / "adapt.json").read_text())
        print(f"{name}: adapted in {report['seconds']:.0f} s, masked-LM loss "
              f"{report['mlm_loss_before']:.3f} -> {report['mlm_loss_after']:.3f} on "
              f"held-out texts", flush=True)
        for budget in (int(b) for b in args.budgets.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                picked = sample(data, budget, seed)
                texts = [data.texts[i] for i in picked]
                result: dict[str, object] = {"dataset": name, "budget": budget, "seed": seed,
                                             "adapt_seconds": report["seconds"]}
                for label, base in (("base", None), ("adapted", str(folder))):
                    t0 = time.perf_counter()
                    clf = TextClassifier(
                        TrainConfig(model_name_or_path=base, max_length=args.max_length,
                                    seed=seed), data.classes,
                    ).fit(texts, data.y[picked], doc_ids=[int(i) for i in picked])
                    probs = clf.predict_proba([data.texts[i] for i in data.test_idx])
                    result[label] = {**measure(data, probs), "rung": clf.rung_,
                                     "seconds": round(time.perf_counter() - t0, 1)}
                print(json.dumps(result), flush=True)
                rows.append(result)
    print("\nmacro-F1 on the test split, base encoder vs adapted (same labels, same run)")
    print(f"{'dataset':<27}{'labels':>7}{'base':>8}{'adapted':>9}{'gain':>8}"
          f"{'round s':>9}{'adapt s':>9}")
    for r in rows:
        base, adapted = r["base"], r["adapted"]  # type: ignore[index]
        gain = adapted["macro_f1"] - base["macro_f1"]  # type: ignore[index]
        print(f"{r['dataset']:<27}{r['budget']:>7}{base['macro_f1']:>8.3f}"  # type: ignore[index]
              f"{adapted['macro_f1']:>9.3f}{gain:>+8.3f}{base['seconds']:>9.0f}"  # type: ignore[index]
              f"{r['adapt_seconds']:>9.0f}")
    gains = [r["adapted"]["macro_f1"] - r["base"]["macro_f1"] for r in rows]  # type: ignore[index]
    if gains:
        print(f"mean gain {np.mean(gains):+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
