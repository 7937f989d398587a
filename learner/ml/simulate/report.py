"""Learning curves and their summary: areas under them, labels to reach the target, tables,
plots and the files a simulation writes."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from learner.ml.evaluate import area_under_curve, evaluate, labels_to_reach
from learner.ml.simulate.data import Dataset

TARGET_FRACTION = 0.95  # "reaches the full-data score" means 95% of its macro-F1


@dataclass(frozen=True)
class CurvePoint:
    strategy: str
    seed: int
    n_labels: int
    macro_f1: float
    accuracy: float
    seconds: float  # wall time since the start of this (strategy, seed) run
    ece: float | None = None  # loop mode: the round model's calibration error
    rung: str | None = None  # loop mode: the rung the round's ladder kept




def score(data: Dataset, probs: np.ndarray) -> dict[str, float]:
    """Macro-F1 and accuracy of holdout probabilities (n_test, k)."""
    result = evaluate(data.y[data.test_idx], probs, data.classes, task=data.task)
    return {"macro_f1": float(result["macro_f1"]), "accuracy": float(result["accuracy"])}


@dataclass
class StrategySummary:
    strategy: str
    seeds: list[int]
    auc_mean: float
    auc_std: float
    final_macro_f1_mean: float
    labels_to_target: list[float | None]  # per seed; None = not reached within the budget
    labels_to_target_mean: float | None  # over seeds that reached it; None if any did not
    reached: int  # seeds that reached the target
    extra: dict[str, Any] = field(default_factory=dict)


def summarize(curves: Sequence[CurvePoint], target: float | None) -> list[StrategySummary]:
    """Per strategy: normalised area under the macro-F1 curve, labels to reach ``target``."""
    out = []
    for name in dict.fromkeys(p.strategy for p in curves):
        seeds = sorted({p.seed for p in curves if p.strategy == name})
        aucs, finals, reach = [], [], []
        for s in seeds:
            pts = sorted((p for p in curves if p.strategy == name and p.seed == s),
                         key=lambda p: p.n_labels)
            xs = [p.n_labels for p in pts]
            ys = [p.macro_f1 for p in pts]
            aucs.append(area_under_curve(xs, ys) if len(xs) > 1 else ys[0])
            finals.append(ys[-1])
            hit = labels_to_reach(xs, ys, target) if target is not None else None
            reach.append(None if hit is None else float(hit))
        reached = [r for r in reach if r is not None]
        out.append(StrategySummary(
            strategy=name, seeds=seeds, auc_mean=float(np.mean(aucs)),
            auc_std=float(np.std(aucs)), final_macro_f1_mean=float(np.mean(finals)),
            labels_to_target=reach,
            labels_to_target_mean=float(np.mean(reached)) if len(reached) == len(reach) else None,
            reached=len(reached),
        ))
    return out


def write_outputs(
    out: Path,
    curves: Sequence[CurvePoint],
    summaries: Sequence[StrategySummary],
    *,
    full_score: dict[str, float] | None,
    target: float | None,
    settings: dict[str, Any],
) -> None:
    """learning_curve.csv, summary.json, summary.csv, learning_curve.png/.svg."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "learning_curve.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["strategy", "seed", "n_labels", "macro_f1", "accuracy", "seconds", "ece",
                    "rung"])
        for p in curves:
            w.writerow([p.strategy, p.seed, p.n_labels, f"{p.macro_f1:.6f}",
                        f"{p.accuracy:.6f}", f"{p.seconds:.2f}",
                        "" if p.ece is None else f"{p.ece:.4f}", p.rung or ""])
    full_f1 = None if full_score is None else full_score["macro_f1"]
    (out / "summary.json").write_text(json.dumps({
        "settings": settings,
        "full_data": full_score,
        "target_fraction": TARGET_FRACTION,
        "target_macro_f1": target,
        "strategies": [asdict(s) for s in summaries],
    }, indent=2, default=str), encoding="utf-8")
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["strategy", "seeds", "auc_mean", "auc_std", "final_macro_f1",
                    "labels_to_95pct_full_mean", "seeds_reached", "full_data_macro_f1"])
        for s in summaries:
            w.writerow([s.strategy, len(s.seeds), f"{s.auc_mean:.4f}", f"{s.auc_std:.4f}",
                        f"{s.final_macro_f1_mean:.4f}",
                        "" if s.labels_to_target_mean is None else f"{s.labels_to_target_mean:.1f}",
                        s.reached, "" if full_f1 is None else f"{full_f1:.4f}"])
    plot_curves(out, curves, target=target, full_f1=full_f1, title=settings.get("data", ""))


def plot_curves(out: Path, curves: Sequence[CurvePoint], *, target: float | None,
                full_f1: float | None, title: str = "") -> None:
    """Mean ± one standard deviation over seeds, per strategy; the target line."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(p.strategy for p in curves):
        xs = sorted({p.n_labels for p in curves if p.strategy == name})
        per_x = [[p.macro_f1 for p in curves if p.strategy == name and p.n_labels == x]
                 for x in xs]
        mean = np.array([np.mean(v) for v in per_x])
        std = np.array([np.std(v) for v in per_x])
        ax.plot(xs, mean, marker="o", markersize=3, label=name)
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
    if full_f1 is not None:
        ax.axhline(full_f1, color="black", linewidth=0.8, label=f"full data ({full_f1:.3f})")
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8,
                   label=f"95% of full ({target:.3f})")
    all_x = [p.n_labels for p in curves]
    if all_x and max(all_x) / max(min(all_x), 1) >= 16:
        ax.set_xscale("log")  # geometric budgets read better on a log axis
    ax.set_xlabel("labeled documents")
    ax.set_ylabel("macro-F1 (holdout)")
    ax.set_title(Path(title).name if title else "learning curve")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=120)
    fig.savefig(out / "learning_curve.svg")
    plt.close(fig)


def format_table(summaries: Sequence[StrategySummary], *, full_f1: float | None,
                 target: float | None) -> str:
    """The summary as an aligned text table, with each strategy's ratio to random."""
    rand = next((s for s in summaries if s.strategy == "random"), None)
    head = f"{'strategy':<18}{'seeds':>6}{'AUC':>8}{'final F1':>10}{'labels to 95%':>16}"
    head += f"{'vs random':>11}"
    lines = []
    if full_f1 is not None and target is not None:
        lines.append(f"full-data macro-F1 {full_f1:.4f}; target (95%) {target:.4f}")
    lines += [head, "-" * len(head)]
    for s in summaries:
        if s.labels_to_target_mean is not None:
            need = f"{s.labels_to_target_mean:.0f}"
        else:
            need = f"n/a ({s.reached}/{len(s.seeds)})"
        ratio = ""
        if rand is not None and rand is not s and s.labels_to_target_mean is not None:
            if rand.labels_to_target_mean is not None:
                ratio = f"{s.labels_to_target_mean / rand.labels_to_target_mean:.2f}x"
            else:
                ratio = "< 1 (random n/a)"
        lines.append(f"{s.strategy:<18}{len(s.seeds):>6}{s.auc_mean:>8.4f}"
                     f"{s.final_macro_f1_mean:>10.4f}{need:>16}{ratio:>11}")
    return "\n".join(lines)
