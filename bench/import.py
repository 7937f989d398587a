"""Import benchmark: 100,000 JSON Lines documents into a fresh project, against baselines
from the same run.

    .venv/bin/python bench/import.py                       # SQLite in a temporary folder
    .venv/bin/python bench/import.py --database-url postgres://postgres@127.0.0.1:5432/labelwise

With PostgreSQL a scratch database (<name>_bench_<pid>) is created on that server and
dropped afterwards, so the named database is never touched. It prints documents/second
and memory for:

- a naive importer (one Document.objects.create per row, with its duplicate check and
  label) on a 2,000-document sample: the speed baseline;
- documents_import on 10,000 and on 100,000 documents: memory must not grow with the
  file, so the 100k import's tracemalloc peak should be close to the 10k one's;
- the 100,000 documents imported into three new projects one after another (--successive):
  each import's duplicate check must probe the (project, text hash) unique index whatever
  the planner's statistics say of the new project, so the second and third imports must
  take no longer than the first (a check that scanned the project's rows made them
  quadratic, the second never finishing on PostgreSQL).

- a small write transaction (what an annotator's submit is) every 20 ms beside an import
  of the --documents file: its p95 and longest wait, and the writes that failed with
  "database is locked", for documents_import (short batches) and, as the baseline, the
  same import inside one transaction (the importer before batching). On SQLite, one
  writer at a time, the baseline's writes wait for the whole import (past the busy
  timeout at a million rows); PostgreSQL's row locks keep both short.

Timed runs are separate from the tracemalloc runs because tracing slows Python down.
`--only-successive` runs the successive imports alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LABELS = ["business", "sport", "tech", "politics"]
_VOCABULARY = (
    "the a of to and in on for with as by at from market shares profit growth match goal "
    "season player team coach phone chip software network data model election minister "
    "vote policy parliament court report quarter year week said after before during over "
    "under new old big small first last record strong weak rise fall win loss deal plan "
    "company bank firm league cup final government budget tax price rate launch device "
    "users online security update research study results fans crowd stadium striker"
)
WORDS = _VOCABULARY.split()


def make_corpus(path: Path, n: int, *, seed: int = 0) -> dict[str, int]:
    """n JSON Lines documents: sentence-like texts whose word counts follow a log-normal
    (median ~22 words, a tail of long paragraphs), ~10% labelled, ~2% exact duplicates (up
    to case and spacing) of earlier texts, and a few metadata fields."""
    rng = random.Random(seed)
    recent: list[str] = []
    labelled = duplicates = 0
    with path.open("w", encoding="utf-8") as file:
        for i in range(n):
            if recent and rng.random() < 0.02:
                text = rng.choice(recent).upper().replace(" ", "  ", 1)
                duplicates += 1
            else:
                words = max(3, min(400, int(rng.lognormvariate(3.1, 0.7))))
                text = " ".join(rng.choice(WORDS) for _ in range(words)).capitalize()
                text += f" ({i})."  # unique unless duplicated on purpose
                recent = (recent + [text])[-1000:]
            record: dict[str, Any] = {
                "id": f"doc-{i}",
                "text": text,
                "source": rng.choice(["wire", "web", "rss"]),
                "published": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            }
            if rng.random() < 0.10:
                record["label"] = rng.choice(LABELS)
                labelled += 1
            file.write(json.dumps(record) + "\n")
    return {"documents": n, "labelled": labelled, "duplicates": duplicates}


def setup_django(database_url: str | None, data_dir: Path) -> str | None:
    """Points Django at a throwaway database; returns the scratch PostgreSQL URL to drop."""
    sys.path.insert(0, str(REPO))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["LABELWISE_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    scratch = None
    if database_url:
        import psycopg

        base, _, name = database_url.rpartition("/")
        scratch_name = f"{name or 'labelwise'}_bench_{os.getpid()}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{scratch_name}"')
        scratch = f"{base}/{scratch_name}"
        os.environ["DATABASE_URL"] = scratch
    else:
        os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return scratch


def drop_scratch(scratch: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    base, _, name = scratch.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def fresh_project(name: str) -> Any:
    from django.contrib.auth import get_user_model

    from annotate import services

    user, _ = get_user_model().objects.get_or_create(username="bench-lead")
    return services.project_create(
        name=name, created_by=user, labels=LABELS, guidelines="Pick the main topic."
    ), user


def naive_import(path: Path, limit: int) -> dict[str, float]:
    """What an importer written row by row looks like: per document a duplicate query, an
    INSERT, and for labelled rows an annotation INSERT, each committed on its own."""
    from annotate import selectors
    from annotate.models import Annotation, Document, text_hash

    project, user = fresh_project("naive")
    labels = dict(project.labels.values_list("name", "id"))
    guideline = selectors.guideline_current(project)
    started, cpu_started = time.perf_counter(), time.process_time()
    created = 0
    with path.open("rb") as file:
        for i, line in enumerate(file):
            if i >= limit:
                break
            record = json.loads(line)
            digest = text_hash(record["text"])
            if Document.objects.filter(project=project, text_hash=digest).exists():
                continue
            label = record.get("label")
            document = Document.objects.create(
                project=project, text=record["text"], text_hash=digest,
                external_id=record["id"], rand=random.random(),
                meta={k: v for k, v in record.items() if k not in {"id", "text", "label"}},
                n_annotations=1 if label else 0, slots_taken=1 if label else 0,
                final_labels=[labels[label]] if label else None,
            )
            if label:
                Annotation.objects.create(
                    document=document, annotator=user, labels=[labels[label]],
                    guideline_version=guideline, source=Annotation.Source.IMPORT,
                )
            created += 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"documents": created, "seconds": seconds, "cpu_seconds": cpu,
            "per_second": created / seconds}


def real_import(path: Path, name: str, *, trace: bool) -> dict[str, float]:
    from annotate.io.importer import documents_import
    from annotate.models import Document

    project, user = fresh_project(name)
    if trace:
        tracemalloc.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    with path.open("rb") as file:
        report = documents_import(project=project, file=file, fmt="jsonl", user=user)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak = 0.0
    if trace:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    assert Document.objects.filter(project=project).count() == report.created
    return {
        "documents": report.created,
        "labelled": report.labelled,
        "duplicates": report.duplicates,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "per_second": report.created / seconds,
        "traced_peak_mb": peak,
        "maxrss_mb": maxrss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: SQLite)")
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=2_000)
    parser.add_argument("--successive", type=int, default=3,
                        help="new projects that import the --documents file one after another")
    parser.add_argument("--only-successive", action="store_true",
                        help="skip the baseline, memory and export runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="labelwise-bench-") as tmp:
        tmp_path = Path(tmp)
        big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
        corpus = make_corpus(big, args.documents)
        make_corpus(small, args.small, seed=1)
        size_mb = big.stat().st_size / 2**20
        scratch = setup_django(args.database_url, tmp_path / "data")
        try:
            from django.db import connection

            print(
                f"database: {connection.vendor}; python {sys.version.split()[0]}; "
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            )
            print(
                f"corpus: {corpus['documents']:,} documents, {size_mb:.1f} MB, "
                f"{corpus['labelled']:,} labelled, {corpus['duplicates']:,} duplicates"
            )
            print(f"rss after setup: {maxrss_mb():.0f} MB")
            if not args.only_successive:
                baselines_and_memory(args, big, small)
                for one_transaction in (False, True):
                    writes_beside_import(big, one_transaction=one_transaction)
            successive_imports(big, args.successive)
        finally:
            if scratch:
                drop_scratch(scratch)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def writes_beside_import(path: Path, *, one_transaction: bool) -> dict[str, float]:
    """Latency of a one-row write transaction, every 20 ms, while `path` is imported on
    another thread (its own connection); `one_transaction` wraps the import in one
    transaction, the importer's behaviour before it committed in batches."""
    from django.db import OperationalError, connection, transaction

    from annotate.io.importer import documents_import
    from annotate.models import Project

    name = "beside-one-transaction" if one_transaction else "beside-batched"
    project, user = fresh_project(name)
    probe, _ = fresh_project(f"{name}-probe")
    finished = threading.Event()

    def run() -> None:
        try:
            with path.open("rb") as file:
                if one_transaction:
                    with transaction.atomic():
                        documents_import(project=project, file=file, fmt="jsonl", user=user)
                else:
                    documents_import(project=project, file=file, fmt="jsonl", user=user)
        finally:
            finished.set()
            connection.close()

    thread = threading.Thread(target=run)
    started = time.perf_counter()
    thread.start()
    waits, locked = [], 0
    while not finished.is_set():
        before = time.perf_counter()
        try:
            with transaction.atomic():
                Project.objects.filter(pk=probe.pk).update(description=f"{before:.3f}")
        except OperationalError:
            locked += 1
        waits.append(time.perf_counter() - before)
        time.sleep(0.02)
    thread.join()
    seconds = time.perf_counter() - started
    result = {"seconds": seconds, "writes": len(waits), "locked": locked,
              "p95_ms": percentile(waits, 95) * 1000, "max_ms": max(waits) * 1000}
    title = ("baseline, the import in one transaction" if one_transaction
             else "documents_import (batched)")
    print(
        f"writes beside an import, {title}: import {seconds:.1f} s; {len(waits)} writes, "
        f"p95 {result['p95_ms']:,.0f} ms, longest {result['max_ms']:,.0f} ms, "
        f"{locked} failed 'database is locked'"
    )
    return result


def successive_imports(path: Path, projects: int) -> list[float]:
    """Imports `path` into `projects` new projects one after another; each one's seconds.

    Each import after the first starts into a project the planner's statistics (taken at
    the end of the previous large import) know nothing of, which is when a duplicate check
    that trusts them goes wrong."""
    timings = []
    for n in range(1, projects + 1):
        result = real_import(path, f"successive-{n}", trace=False)
        timings.append(result["seconds"])
        print(
            f"successive import {n} of {projects}: {result['seconds']:.1f} s, "
            f"{result['per_second']:,.0f} docs/s ({result['documents']:,} created)"
        )
    if len(timings) > 1:
        worst = max(timings[1:]) / timings[0]
        verdict = "ok" if worst <= 1.25 else "SLOWER: the duplicate check scans rows"
        print(
            f"summary: successive imports {', '.join(f'{t:.1f}' for t in timings)} s; "
            f"the slowest later one takes {worst:.2f}x the first ({verdict}; up to 1.25x "
            f"is noise)"
        )
    return timings


def baselines_and_memory(args: argparse.Namespace, big: Path, small: Path) -> None:
    naive = naive_import(big, args.naive)
    print(
        f"baseline, naive row-by-row create, {naive['documents']:,} docs: "
        f"{naive['seconds']:.1f} s (CPU {naive['cpu_seconds']:.1f} s), "
        f"{naive['per_second']:,.0f} docs/s"
    )
    runs = [
        (f"documents_import {args.small:,} docs", small, "small", False),
        (f"documents_import {args.documents:,} docs", big, "big", False),
        (f"  traced {args.small:,} docs", small, "small-traced", True),
        (f"  traced {args.documents:,} docs", big, "big-traced", True),
    ]
    results = {}
    for title, path, name, trace in runs:
        result = real_import(path, name, trace=trace)
        results[name] = result
        extra = f", tracemalloc peak {result['traced_peak_mb']:.1f} MB" if trace else ""
        print(
            f"{title}: {result['seconds']:.1f} s (this process's CPU "
            f"{result['cpu_seconds']:.1f} s), {result['per_second']:,.0f} docs/s "
            f"({result['documents']:,} created, {result['labelled']:,} labelled, "
            f"{result['duplicates']:,} duplicates skipped){extra}; "
            f"ru_maxrss so far {result['maxrss_mb']:.0f} MB"
        )
    from annotate.io.exporters import export_jsonl
    from annotate.models import Project

    big_project = Project.objects.get(name="big")
    started = time.perf_counter()
    exported = sum(1 for _ in export_jsonl(big_project, labelled_only=False))
    seconds = time.perf_counter() - started
    print(
        f"export_jsonl of the {exported:,}-document project: {seconds:.1f} s, "
        f"{exported / seconds:,.0f} docs/s; ru_maxrss so far {maxrss_mb():.0f} MB"
    )
    speedup = results["big"]["per_second"] / naive["per_second"]
    growth = results["big-traced"]["traced_peak_mb"] / max(
        results["small-traced"]["traced_peak_mb"], 1e-9
    )
    print(
        f"summary: {results['big']['per_second']:,.0f} docs/s = {speedup:.0f}x the naive "
        f"loop; traced peak {args.documents // args.small}x more documents -> "
        f"{growth:.2f}x the memory"
    )


if __name__ == "__main__":
    main()
