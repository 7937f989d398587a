"""The command line (``labelwise-simulate``, ``manage.py simulate``) and ``run``, which
notebooks call with the same options as an ``argparse.Namespace``."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from learner.ml.simulate.data import cached_embeddings, load_dataset
from learner.ml.simulate.learners import (
    FastLearner,
    FullLearner,
    Learner,
    eval_points,
    simulate_one,
)
from learner.ml.simulate.report import (
    TARGET_FRACTION,
    CurvePoint,
    StrategySummary,
    format_table,
    score,
    summarize,
    write_outputs,
)
from learner.ml.strategies import DEFAULT_STRATEGY, STRATEGIES, get_strategy


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
    parser.add_argument("--mode", choices=["fast", "full", "loop"], default="fast",
                        help="fast: the refresh head alone; full: a fine-tuning at every "
                        "point; loop: the product's loop (cold start, fast refresh, rounds "
                        "with the ladder), evaluating each round's model")
    parser.add_argument("--rounds-at", type=_int_list, default=None,
                        help="loop mode: label counts of the fine-tuning rounds "
                        "(default 50,75,100,150,200,300,...)")
    parser.add_argument("--refresh-every", type=int, default=10,
                        help="loop mode: labels between fast refreshes")
    parser.add_argument("--stop-at-target", action="store_true",
                        help="loop mode: end a run at the first round that reaches 95%% of "
                        "the full-data macro-F1")
    parser.add_argument("--pool-size", type=int, default=None,
                        help="loop mode: a seeded random sample of the training split is the "
                        "pool (the full-data reference still trains on the whole split)")
    parser.add_argument("--train-config", default=None,
                        help='loop/full mode: TrainConfig overrides as JSON, e.g. '
                        '\'{"mode": "full"}\'')
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
    parser.add_argument("--random-share", type=float, default=None,
                        help="share of random picks (default 0; loop mode: 0.1, the "
                        "product's)")
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
        f"{data.n_classes} labels ({data.task.name}), mode {args.mode}")
    t0 = time.perf_counter()
    emb = cached_embeddings(data.texts, model=args.model, max_length=args.max_length,
                            cache_dir=out / ".cache")
    embed_seconds = time.perf_counter() - t0
    log(f"embeddings {emb.shape} in {embed_seconds:.1f} s (cached in {out / '.cache'})")
    random_share = args.random_share if args.random_share is not None else (
        0.1 if args.mode == "loop" else 0.0)
    config = _train_config(args, data.task.name)

    learner: Learner | None = None
    if args.mode == "fast":
        learner = FastLearner(data, emb)
    elif args.mode == "full":
        learner = FullLearner(data, emb, config)

    full_score: dict[str, float] | None = None
    if args.full_data_score is not None:
        full_score = {"macro_f1": float(args.full_data_score)}
    elif args.mode in ("fast", "loop") or args.full_data:
        full_score = _full_data_score(data, learner, config, out, log)
    target = None if full_score is None else TARGET_FRACTION * full_score["macro_f1"]

    pool_data = data
    if args.mode == "loop" and getattr(args, "pool_size", None) and (
            args.pool_size < len(data.train_idx)):
        keep = np.random.default_rng(12345).choice(data.train_idx, args.pool_size, replace=False)
        pool_data = replace(data, train_idx=np.sort(keep))
        log(f"pool: a sample of {args.pool_size} of the {len(data.train_idx)} training texts")
    if args.mode == "loop":
        from learner.ml.simulate.loop import DEFAULT_ROUNDS

        points = sorted({min(r, len(pool_data.train_idx))
                         for r in (args.rounds_at or DEFAULT_ROUNDS)
                         if args.budget is None or r <= args.budget})
    else:
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
                          f"{p.accuracy:.6f},{p.seconds:.2f},{p.ece or ''},{p.rung or ''}\n")
            partial.flush()
            bar.set_postfix_str(f"{p.strategy} seed {p.seed} n={p.n_labels} "
                                f"F1={p.macro_f1:.3f}")
            bar.update(1)

        for name in args.strategies:
            strategy = get_strategy(name, task=data.task)
            for seed in args.seeds:
                if args.mode == "loop":
                    from learner.ml.simulate.loop import LoopSettings, replay

                    curves += replay(pool_data, emb, strategy, seed=seed, on_point=on_point,
                                     settings=LoopSettings(
                                         rounds_at=tuple(points),
                                         refresh_every=args.refresh_every,
                                         random_share=random_share,
                                         batch_size=batch or 50, config=config,
                                         stop_at=target if args.stop_at_target else None))
                    continue
                assert learner is not None
                curves += simulate_one(
                    data, learner, strategy, points=points, seed_size=args.seed_size,
                    batch_size=batch, seed=seed,
                    frozen_embeddings=emb, random_share=random_share,
                    dedup_threshold=dedup, candidate_size=args.candidate_size,
                    on_point=on_point,
                )
    (out / "learning_curve.partial.csv").unlink()  # complete: learning_curve.csv replaces it
    summaries = summarize(curves, target)
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    settings.update(points=points, embed_seconds=round(embed_seconds, 2),
                    n_train=len(data.train_idx), n_test=len(data.test_idx),
                    classes=data.classes, task_type=data.task.name,
                    random_share=random_share, train_config=config.to_dict(),
                    total_seconds=round(time.perf_counter() - t0, 2))
    write_outputs(out, curves, summaries, full_score=full_score, target=target,
                  settings=settings)
    full_f1 = None if full_score is None else full_score["macro_f1"]
    # The table is the point of the command: printed even with --quiet.
    print(format_table(summaries, full_f1=full_f1, target=target))
    print(f"wrote {out}", flush=True)
    return SimulationResult(out, curves, summaries, full_score, target, settings)


def _train_config(args: argparse.Namespace, task_type: str) -> Any:
    from learner.ml.config import TrainConfig

    config = TrainConfig(model_name_or_path=args.model, task_type=task_type,
                         max_length=args.max_length)
    if args.mode == "full":
        config = replace(config, mode="full")
    if args.epochs:
        config = replace(config, epochs=args.epochs)
    if getattr(args, "train_config", None):
        config = replace(config, **json.loads(args.train_config))
    return config


def _full_data_score(data: Any, learner: Learner | None, config: Any, out: Path,
                     log: Callable[[str], None]) -> dict[str, float]:
    """The macro-F1 of the same model trained on the whole training split: the fast
    refresh's head, or (loop and full modes) ``TextClassifier`` with the round's
    configuration, cached on disk by data and configuration (it costs one long fit)."""
    started = time.perf_counter()
    if learner is not None and isinstance(learner, FastLearner):
        learner.fit(data.train_idx, 0)
        result = score(data, learner.test_probs())
    else:
        key = hashlib.sha256(json.dumps([config.to_dict(), data.classes, len(data.texts),
                                         data.train_idx[:50].tolist(),
                                         data.test_idx[:50].tolist()],
                                        sort_keys=True).encode()).hexdigest()[:16]
        cached = out / ".cache" / f"full-data-{key}.json"
        if cached.exists():
            result = json.loads(cached.read_text())
            log(f"full-data macro-F1 {result['macro_f1']:.4f} (cached in {cached})")
            return result
        from learner.ml.train import TextClassifier

        rows = data.train_idx
        y = data.y[rows]
        clf = TextClassifier(replace(config, seed=0), data.classes).fit(
            [data.texts[i] for i in rows], y, doc_ids=[int(i) for i in rows])
        result = score(data, clf.predict_proba([data.texts[i] for i in data.test_idx]))
        result["rung"] = clf.rung_  # type: ignore[assignment]
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(result))
    result["seconds"] = time.perf_counter() - started
    log(f"full-data ({len(data.train_idx)} labels) macro-F1 {result['macro_f1']:.4f} "
        f"in {result['seconds']:.1f} s")
    return result


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
