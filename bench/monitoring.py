"""What recording predictions costs the predictions endpoint: p95 with recording on and off.

Sets up a throwaway Labelwise (SQLite in a temporary folder, or --postgres), imports a few
hundred real labelled texts, trains one round on the real all-MiniLM-L6-v2 (mode head:
the model's size is what matters here, not its quality), then times POST
/api/projects/<id>/predict/ through the whole Django stack in process, alternating
recording on and off request by request so both see the same machine load. Recording
writes one row per text in one statement (learner.services.served_predictions_record),
the project's recording settings read with the round.

On a loaded machine the endpoint's p95 moves by more than recording costs, so the
recording itself is also timed apart, call by call, beside the way it was written before
(a settings read, then BEGIN, SET LOCAL synchronous_commit, INSERT, COMMIT), alternating.

    .venv/bin/python bench/monitoring.py                 # ~1 min
    .venv/bin/python bench/monitoring.py --postgres --texts 8

Target: recording adds under 5% to the p95.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from predict import DATASETS, percentile  # noqa: E402  (bench/predict.py: same data, same p95)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATASETS / "bbc_news.jsonl")
    parser.add_argument("--n", type=int, default=200, help="labelled texts to train on")
    parser.add_argument("--requests", type=int, default=300, help="requests per setting")
    parser.add_argument("--texts", type=int, default=1, help="texts per request")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)

    from _django import setup_django

    os.environ["LABELWISE_DATA_DIR"] = tempfile.mkdtemp(prefix="labelwise-bench-monitor-")
    setup_django("postgres" if args.postgres else "sqlite", name="labelwise_bench_monitoring")
    import torch
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils.timezone import now as django_now

    from annotate import services as annotate_services
    from annotate.models import Document, text_hash
    from api.authentication import token_create
    from learner import services as learner_services
    from learner.models import LearnerSettings, Round, ServedPrediction
    from learner.worker import Worker

    torch.set_num_threads(args.threads)
    settings.LABELWISE_PREDICT_RATE = "1000000/min"
    rows = [json.loads(line) for line in args.data.open(encoding="utf-8")]
    rng = random.Random(0)
    rng.shuffle(rows)
    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    labels = sorted({str(r["label"]) for r in rows})
    project = annotate_services.project_create(name="bench", created_by=user, labels=labels)
    ids = {label.name: label.pk for label in project.labels.all()}
    Document.objects.bulk_create(
        Document(project=project, text=r["text"], text_hash=text_hash(r["text"]),
                 rand=rng.random(), final_labels=[ids[str(r["label"])]], n_annotations=1,
                 slots_taken=1)
        for r in rows[: args.n]
    )
    annotate_services.holdout_reserve(project=project, fraction=0.2)
    LearnerSettings.objects.create(project=project, mode="head", max_length=128,
                                   train_every_labels=0)
    started = time.perf_counter()
    learner_services.round_request(project=project)
    Worker(name="bench", refresh=False).run_once()
    round = Round.objects.get(project=project)
    assert round.status == Round.Status.DONE, round.traceback
    train_s = time.perf_counter() - started

    client = Client(HTTP_HOST="testserver")
    _token, key = token_create(user=user, name="bench")
    headers = {"HTTP_AUTHORIZATION": f"Token {key}"}
    texts = [r["text"] for r in rows[args.n: args.n + 2000]]
    url = f"/api/projects/{project.pk}/predict/"

    def post() -> float:
        batch = rng.sample(texts, args.texts)
        start = time.perf_counter()
        response = client.post(url, {"texts": batch}, content_type="application/json",
                               **headers)
        took = time.perf_counter() - start
        assert response.status_code == 200, response.content[:500]
        return took

    def recording(on: bool) -> None:
        LearnerSettings.objects.filter(project=project).update(record_predictions=on)

    for _ in range(10):  # the model into the cache, the code paths warm
        post()
    timings: dict[bool, list[float]] = {True: [], False: []}
    order = [True, False] * args.requests
    for on in order:
        recording(on)
        timings[on].append(post())
    recorded = ServedPrediction.objects.count()
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"Labelwise predictions endpoint, recording on and off ({database}; "
          f"all-MiniLM-L6-v2, head trained on {round.n_train} {args.data.stem} texts in "
          f"{train_s:.0f} s; {args.texts} text(s) per request, {args.requests} requests each, "
          f"alternating; torch threads {torch.get_num_threads()})")
    print(f"{'':22} {'p50 ms':>8} {'p95 ms':>8}")
    for on, name in ((False, "recording off"), (True, "recording on")):
        print(f"{name:22} {1000 * percentile(timings[on], 0.5):8.1f} "
              f"{1000 * percentile(timings[on], 0.95):8.1f}")
    off95, on95 = percentile(timings[False], 0.95), percentile(timings[True], 0.95)
    off50, on50 = percentile(timings[False], 0.5), percentile(timings[True], 0.5)
    print(f"recording costs {100 * (on95 - off95) / off95:+.1f}% at p95, "
          f"{100 * (on50 - off50) / off50:+.1f}% at p50 (target: under 5%); "
          f"{recorded} rows recorded")

    # The recording alone, as the endpoint calls it now and as it did before.
    import numpy as np
    from django.db import connection, transaction

    from learner import selectors as learner_selectors
    from learner.ml.monitoring import top_label

    recording(True)
    served = learner_selectors.round_for_serving(project, None)
    names = list(round.config.get("labels") or labels)
    probs = np.random.default_rng(0).dirichlet(np.ones(len(names)), size=args.texts)

    def now_path() -> float:
        start = time.perf_counter()
        learner_services.served_predictions_record(
            round=served, labels=names, probabilities=probs, texts=texts[:args.texts],
            recording=learner_selectors.recording_of(served))
        return time.perf_counter() - start

    def before_path() -> float:
        start = time.perf_counter()
        record, with_texts = (LearnerSettings.objects.filter(project_id=round.project_id)
                              .values_list("record_predictions", "record_texts").first())
        index, confidence = top_label(probs)
        stamp = django_now()
        rows = [ServedPrediction(project_id=round.project_id, round=round, label=names[j],
                                 confidence=float(c), text="", created_at=stamp)
                for j, c in zip(index.tolist(), confidence.tolist(), strict=True)]
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            ServedPrediction.objects.bulk_create(rows)
        return time.perf_counter() - start

    alone: dict[str, list[float]] = {"now": [], "before": []}
    for _ in range(args.requests):
        alone["before"].append(before_path())
        alone["now"].append(now_path())
    print(f"{'recording alone':22} {'p50 ms':>8} {'p95 ms':>8}")
    for key, name in (("before", "before (read+4 trips)"), ("now", "now (one statement)")):
        print(f"{name:22} {1000 * percentile(alone[key], 0.5):8.2f} "
              f"{1000 * percentile(alone[key], 0.95):8.2f}")


if __name__ == "__main__":
    main()
