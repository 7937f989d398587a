"""p50/p95 latency of the annotator's submit-and-next request on a 100,000-document project.

Runs the real view (HTMX POST through Django's test client: URL routing, middleware, auth,
the queue's hand-out and the partial's rendering) on a fresh database, for SQLite and for
PostgreSQL. Baselines from the same run: the same request on a 1,000-document project
(the latency must not grow with the pool) and a naive `ORDER BY RANDOM()` pick, which is
what a queue without the random-key index would cost.

    python bench/next_item.py [--docs 100000] [--requests 300] [--database sqlite,postgres]

Target: p95 under 50 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench._django import setup_django  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]





def make_project(name: str, n_docs: int):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    from annotate import services
    from annotate.models import Document, text_hash

    User = get_user_model()
    lead, _ = User.objects.get_or_create(username="bench-lead")
    project = services.project_create(
        name=name, created_by=lead, labels=["business", "sport", "tech", "politics"],
        guidelines="# Bench\n\nLabel the topic.",
    )
    rng = random.Random(0)
    words = ["market", "match", "machine", "vote", "film", "rate", "goal", "chip", "law",
             "song", "bank", "team"]
    batch = []
    for i in range(n_docs):
        text = f"{i} " + " ".join(rng.choice(words) for _ in range(rng.randint(10, 60)))
        batch.append(Document(project=project, text=text, text_hash=text_hash(text),
                              rand=rng.random()))
        if len(batch) == 5000:
            Document.objects.bulk_create(batch)
            batch = []
    Document.objects.bulk_create(batch)
    return project, lead


def time_submit_and_next(project, user, requests: int) -> list[float]:  # type: ignore[no-untyped-def]
    from django.test import Client
    from django.urls import reverse

    from annotate.models import Assignment

    client = Client()
    client.force_login(user)
    assert client.post(reverse("annotate:annotate_next", args=[project.pk])).status_code == 302
    labels = list(project.labels.values_list("pk", flat=True))
    url = reverse("annotate:annotate_submit", args=[project.pk])
    timings = []
    for i in range(requests):
        held = Assignment.objects.get(user=user, project=project, status="active").document_id
        start = time.perf_counter()
        response = client.post(url, {"document": held, "label": labels[i % len(labels)]},
                               HTTP_HX_REQUEST="true")
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.status_code
    return timings


def time_order_by_random(project, requests: int) -> list[float]:  # type: ignore[no-untyped-def]
    from annotate.models import Document

    timings = []
    for _ in range(requests):
        start = time.perf_counter()
        Document.objects.filter(project=project, slots_taken=0).order_by("?").first()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def report(label: str, timings: list[float]) -> None:
    print(f"  {label:<46} p50 {statistics.median(timings):6.1f} ms   "
          f"p95 {percentile(timings, 95):6.1f} ms   (n={len(timings)})")


def run(database: str, docs: int, requests: int) -> float:
    setup_django(database, name="labelwise_bench_next_item")
    from django.db import connection

    print(f"\n{connection.vendor}: building a {docs:,}-document project ...", flush=True)
    big, user = make_project("big", docs)
    small, _ = make_project("small", 1000)
    time_submit_and_next(big, user, 20)  # warm caches and connections
    big_timings = time_submit_and_next(big, user, requests)
    small_timings = time_submit_and_next(small, user, requests)
    report(f"submit-and-next, {docs:,} documents", big_timings)
    report("baseline: submit-and-next, 1,000 documents", small_timings)
    report(f"baseline: ORDER BY RANDOM() pick, {docs:,} docs", time_order_by_random(big, 20))
    p95 = percentile(big_timings, 95)
    print(f"  target p95 < 50 ms: {'met' if p95 < 50 else 'MISSED'} ({p95:.1f} ms)")
    return p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--database", default="sqlite,postgres",
                        help="comma-separated: sqlite, postgres")
    args = parser.parse_args()
    databases = [d.strip() for d in args.database.split(",") if d.strip()]
    if len(databases) > 1:
        # Django is configured once per process: run each database in a child process.
        import subprocess

        for database in databases:
            subprocess.run([sys.executable, __file__, "--docs", str(args.docs), "--requests",
                            str(args.requests), "--database", database], check=True)
        return
    run(databases[0], args.docs, args.requests)


if __name__ == "__main__":
    main()
