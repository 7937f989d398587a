"""Replay a fully labeled dataset through the active-learning loop (ASReview's simulate).

The labels are hidden and revealed only for the documents the queue hands out; the model
is refit and evaluated on a held-out split as labels come in. The result is a learning
curve per strategy and seed, and a summary of how many labels each strategy needs to reach
95% of the macro-F1 the same model gets from the whole training split.

Three modes:

- ``loop`` (``loop.py``): the product's own loop, through the worker's functions: the
  k-means cold start, the fast refresh every few labels, a fine-tuning round (the ladder)
  at each of ``--rounds-at``, each round's model evaluated: what a lead exports.
- ``fast`` (``learners.py``): the frozen encoder embeds every text once (cached on disk),
  and the fast refresh's head is refit after each batch. Seconds per step.
- ``full`` (``learners.py``): a ``TextClassifier`` fine-tuned from the base model at every
  evaluation point. Minutes per step on CPU.

Outputs in ``--out``: ``learning_curve.csv``, ``summary.json``, ``summary.csv``,
``learning_curve.png`` and ``learning_curve.svg``.

    python -m learner.ml.simulate --data reuters_r8.jsonl --split-field split --out runs/r8
    python -m learner.ml.simulate --data rotten.jsonl --group-field movie --mode loop
"""

from learner.ml.simulate.cli import SimulationResult, add_arguments, build_parser, main, run
from learner.ml.simulate.data import (
    Dataset,
    cached_embeddings,
    load_dataset,
    read_jsonl,
    split_rows,
)
from learner.ml.simulate.learners import eval_points
from learner.ml.simulate.report import (
    TARGET_FRACTION,
    CurvePoint,
    StrategySummary,
    format_table,
    score,
    summarize,
    write_outputs,
)

__all__ = [
    "TARGET_FRACTION",
    "CurvePoint",
    "Dataset",
    "SimulationResult",
    "StrategySummary",
    "add_arguments",
    "build_parser",
    "cached_embeddings",
    "eval_points",
    "format_table",
    "load_dataset",
    "main",
    "read_jsonl",
    "run",
    "score",
    "split_rows",
    "summarize",
    "write_outputs",
]
