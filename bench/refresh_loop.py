"""Seconds from a new label to a re-scored 20,000-document pool, through the database.

bench/refresh.py times the head alone on arrays; this times what the worker does between
rounds: notice the new label (learner.refresh.refresh_due), read the round's embedding
cache, fit the head on every current label, score the pool and rewrite its Prediction
rows, on SQLite or PostgreSQL. The embeddings are synthetic 384-dim clustered vectors
written by the real score_pool (a stand-in classifier replaces the encoder, which would
take ten minutes to embed 20,000 texts here).

Baseline, same run: the same rows written with Django's bulk_update (batches of 2,000).

    .venv/bin/python bench/refresh_loop.py [--db sqlite|postgres] [--pool 20000]
        [--labelled 1000] [--repeats 5]

Target: under 2 s from the label to the re-scored pool (plus up to the worker's 0.5 s
idle poll before it looks).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench._django import setup_django  # noqa: E402

TARGET_SECONDS = 2.0
DIM, K = 384, 4





class SyntheticEncoder:
    """score_pool's view of a classifier: uniform probabilities, and per-document
    embeddings drawn around one of K centres chosen from the text's number."""

    def __init__(self) -> None:
        import numpy as np

        self.np = np
        self.centres = np.random.default_rng(0).normal(size=(K, DIM))
        from learner.ml.tasks import SINGLE_LABEL

        self.config = type("Config", (), {"task": SINGLE_LABEL})()
        self.thresholds_ = None

    def topic(self, text: str) -> int:
        return int(text.split()[1]) % K

    def proba_and_embed(self, texts: list[str], **_):  # type: ignore[no-untyped-def]
        np = self.np
        rng = np.random.default_rng(len(texts))
        topics = np.array([self.topic(t) for t in texts])
        x = self.centres[topics] + rng.normal(scale=1.5, size=(len(texts), DIM))
        return np.full((len(texts), K), 1 / K, dtype=np.float32), x.astype(np.float32)


def build(pool: int, labelled: int):  # type: ignore[no-untyped-def]
    import random

    from django.contrib.auth import get_user_model

    from annotate import services
    from annotate.models import Document, text_hash
    from learner import services as learner_services
    from learner.models import LearnerSettings, Round
    from learner.pipeline import artifact_dir, score_pool

    user = get_user_model().objects.create_user("bench", password="x")
    project = services.project_create(name="Refresh bench", created_by=user,
                                      labels=[f"topic{i}" for i in range(K)])
    label_ids = list(project.labels.values_list("id", flat=True))
    rng = random.Random(0)
    docs = []
    for i in range(pool + labelled):
        text = f"doc {i} " + " ".join(rng.choice("abcdefgh") for _ in range(20))
        final = [label_ids[i % K]] if i < labelled else None
        docs.append(Document(project=project, text=text, text_hash=text_hash(text),
                             rand=rng.random(), final_labels=final,
                             n_annotations=int(final is not None),
                             slots_taken=int(final is not None)))
    Document.objects.bulk_create(docs, batch_size=2000)
    LearnerSettings.objects.create(project=project, train_every_labels=0)
    round = learner_services.round_request(project=project)
    Round.objects.filter(pk=round.pk).update(status=Round.Status.RUNNING)
    round.refresh_from_db()
    score_pool(round, SyntheticEncoder(), label_ids=label_ids,
               progress=lambda *a, **k: None)
    learner_services.round_finish(round=round, n_train=labelled,
                                  artifact_path=str(artifact_dir(round)))
    return project, user, label_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pool", type=int, default=20_000)
    parser.add_argument("--labelled", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    setup_django(args.db, name="labelwise_bench_refresh")

    from annotate import services
    from annotate.models import Document
    from learner.models import Prediction
    from learner.refresh import labels_state, latest_done_round, refresh_project

    started = time.perf_counter()
    project, user, label_ids = build(args.pool, args.labelled)
    print(f"{args.db}: {args.pool:,} unlabelled + {args.labelled:,} labelled documents, "
          f"{DIM}-dim float16 cache (set up in {time.perf_counter() - started:.0f} s)")

    refresh_project(project)  # the first refresh replaces the round's own scores
    times, phases = [], []
    unlabelled = Document.objects.filter(project=project, final_labels__isnull=True)
    for r in range(args.repeats):
        document = unlabelled.order_by("id")[r]
        services.document_adjudicate(document=document, user=user,
                                     label_ids=[label_ids[r % K]], reason="bench")
        # What the worker does: notice the change (refresh_due's state check), refresh.
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        round = latest_done_round(project.pk)
        assert labels_state(round) != (round.n_train, 0)
        timings["notice_s"] = time.perf_counter() - t0
        n = refresh_project(project, timings=timings)
        times.append(time.perf_counter() - t0)
        assert n == args.pool - r - 1, n
        phases.append(timings)

    median = statistics.median(times)
    print(f"new label -> re-scored pool: median {median:.2f} s, "
          f"max {max(times):.2f} s over {args.repeats} labels")
    for phase in phases[0]:
        unit = "rows" if phase == "written" else "s"
        print(f"  {phase:8s} median {statistics.median(p[phase] for p in phases):.3f} {unit}")

    rows = list(Prediction.objects.filter(round__project=project, score__isnull=False))
    for row in rows:
        row.score = (row.score or 0) + 1e-6
    t0 = time.perf_counter()
    Prediction.objects.bulk_update(rows, ["labels", "probs", "confidence", "score"],
                                   batch_size=2000)
    baseline = time.perf_counter() - t0
    print(f"baseline: Django bulk_update of the same {len(rows):,} rows alone: {baseline:.2f} s"
          f" (the refresh's score-and-write phase: "
          f"{statistics.median(p['score_write_s'] for p in phases):.2f} s)")
    print(f"target < {TARGET_SECONDS} s: {'met' if median < TARGET_SECONDS else 'NOT met'}")


if __name__ == "__main__":
    main()
