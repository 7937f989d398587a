"""The whole loop on the demo corpus: simulated annotators label what the queue hands them,
the learner trains a round every --batch labels, and the holdout macro-F1 is recorded per
round. The same loop with random ordering runs in the same process as the baseline.

    python bench/loop.py [--rounds 4] [--batch 40] [--mode full|auto|head|lora|gradual]
                         [--epochs 2] [--max-length 128]

``--epochs 0`` leaves the epochs to the label count (LearnerSettings.epochs None: enough
for TrainConfig.min_steps optimizer steps, early-stopped on validation), which is what a
project gets by default; on CPU that is many more steps than the default 2 epochs.

Prints, per round and ordering: labels, seconds (train / score / total) and holdout
macro-F1 and accuracy. Runs on a throwaway SQLite database under a temp folder.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench._django import setup_django  # noqa: E402


def make_project(  # type: ignore[no-untyped-def]
    name: str, *, strategy: str, random_share: float, args: argparse.Namespace
):
    from django.contrib.auth import get_user_model

    from annotate import services
    from annotate.io.importer import documents_import
    from learner.management.commands.demo_setup import LABELS, corpus_jsonl
    from learner.models import LearnerSettings

    lead, _ = get_user_model().objects.get_or_create(username="bench-lead")
    project = services.project_create(name=name, created_by=lead)
    for label, description in LABELS.items():
        services.label_create(project=project, name=label, description=description)
    data, _ = corpus_jsonl(seed=args.seed)
    documents_import(project=project, file=io.BytesIO(data), fmt="jsonl", user=lead)
    # The import labelled 15% of the corpus: 2/3 of it is the holdout, the rest the seed set.
    services.holdout_reserve(project=project, fraction=2 / 3, seed=args.seed)
    LearnerSettings.objects.create(
        project=project, mode=args.mode, strategy=strategy, random_share=random_share,
        epochs=args.epochs or None, max_length=args.max_length, train_every_labels=0,
        seed=args.seed,
    )
    return project, lead


def label_batch(project, user, n: int) -> int:  # type: ignore[no-untyped-def]
    """A simulated annotator answers the next n documents the queue hands out with the
    corpus's gold label."""
    from annotate import services

    by_name = {label.name: label.pk for label in project.labels.all()}
    done = 0
    while done < n:
        document = services.assignment_next(user=user, project=project)
        if document is None:
            break
        services.annotation_submit(user=user, project=project, document_id=document.pk,
                                   label_ids=[by_name[document.meta["_gold"]]])
        done += 1
    return done


def run_loop(
    name: str, strategy: str, random_share: float, args: argparse.Namespace
) -> list[dict]:
    from learner import services
    from learner.models import Round
    from learner.worker import Worker

    project, lead = make_project(name, strategy=strategy, random_share=random_share, args=args)
    worker = Worker(name="bench")
    rows = []
    for number in range(1, args.rounds + 1):
        if number > 1:
            label_batch(project, lead, args.batch)
        services.round_request(project=project)
        started = time.perf_counter()
        worker.run_once()
        seconds = time.perf_counter() - started
        done = Round.objects.get(project=project, number=number)
        if done.status != "done":
            raise SystemExit(f"round {number} {done.status}: {done.error}\n{done.traceback}")
        metrics = done.metrics or {}
        row = {
            "ordering": name, "round": number, "labels": done.n_train,
            "train_s": done.timings.get("train_s", 0.0),
            "score_s": done.timings.get("score_s", 0.0), "total_s": seconds,
            "macro_f1": metrics.get("macro_f1", float("nan")),
            "accuracy": metrics.get("accuracy", float("nan")),
        }
        rows.append(row)
        print(f"  {name:<10} round {number}: {row['labels']:>4} labels  "
              f"train {row['train_s']:6.1f} s  score {row['score_s']:6.1f} s  "
              f"total {seconds:6.1f} s  macro-F1 {row['macro_f1']:.3f}  "
              f"accuracy {row['accuracy']:.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=40, help="labels between rounds")
    parser.add_argument("--mode", default="full",
                        choices=["full", "auto", "head", "gradual", "lora"],
                        help="LearnerSettings.mode (auto: the ladder, head then fine-tuning "
                             "when it wins on validation)")
    parser.add_argument("--strategy", default="least_confidence")
    parser.add_argument("--epochs", type=int, default=2,
                        help="0: from the label count (LearnerSettings.epochs None)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup_django("sqlite")
    epochs = f"{args.epochs} epochs" if args.epochs else "epochs from the label count"
    print(f"BBC News demo corpus, mode {args.mode}, {epochs}, "
          f"max_length {args.max_length}, {args.batch} labels between rounds")
    learned = run_loop(args.strategy, args.strategy, 0.0, args)
    baseline = run_loop("random", "random", 1.0, args)
    print("\nlabels  " + f"{args.strategy + ' F1':>12}  {'random F1':>10}  (holdout macro-F1)")
    for ours, theirs in zip(learned, baseline, strict=True):
        print(f"{ours['labels']:>6}  {ours['macro_f1']:>12.3f}  {theirs['macro_f1']:>10.3f}")


if __name__ == "__main__":
    main()
